package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"
)

// The pod watch follows the pods bound to this node, metadata only, with the
// API server's list and watch, and drops a pod's credentials from the cache
// as soon as it is deleted. It keeps no copy of the pods: the cache is the
// only state, and a relist (at start, and when the watch's history has
// expired) forgets the cached pods the list no longer has.

// Accept headers asking for metadata only; plain JSON is the fallback, which
// decodes the same for the fields read here.
const (
	acceptMetadataList = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
	acceptMetadata     = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
)

type objectMeta struct {
	Name            string `json:"name"`
	Namespace       string `json:"namespace"`
	UID             string `json:"uid"`
	ResourceVersion string `json:"resourceVersion"`
}

type podList struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
		Continue        string `json:"continue"`
	} `json:"metadata"`
	Items []struct {
		Metadata objectMeta `json:"metadata"`
	} `json:"items"`
}

// watchPods keeps the cache's pods in step with the node's until ctx ends,
// relisting with backoff after a failure.
func (a *Agent) watchPods(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		rv, err := a.relist(ctx)
		for err == nil && ctx.Err() == nil {
			began := time.Now()
			rv, err = a.watchOnce(ctx, rv)
			failures = 0
			if err == nil && time.Since(began) < time.Second {
				// A server ending watches at once must not make this spin.
				sleep(ctx, time.Second)
			}
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errExpired) {
			continue // relist at once: nothing failed
		}
		failures++
		a.opts.Log.Warn("watching this node's pods failed; retrying", "node", a.opts.Node, "error", err.Error())
		backoff(ctx, failures)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (a *Agent) podsURL(extra url.Values) string {
	q := url.Values{"fieldSelector": {"spec.nodeName=" + a.opts.Node}}
	for k, v := range extra {
		q[k] = v
	}
	return a.opts.APIServer.Host + "/api/v1/pods?" + q.Encode()
}

// relist lists the node's pods, forgets cached pods that are gone, marks the
// watch synced and returns the list's resource version.
func (a *Agent) relist(ctx context.Context) (string, error) {
	started := a.opts.Cache.opts.Now()
	onNode := map[string]bool{}
	var list podList
	cont := ""
	for {
		q := url.Values{"limit": {"500"}}
		if cont != "" {
			q.Set("continue", cont)
		}
		list = podList{}
		if err := a.getJSON(ctx, a.podsURL(q), acceptMetadataList, &list); err != nil {
			return "", fmt.Errorf("listing the node's pods: %w", err)
		}
		for _, item := range list.Items {
			onNode[item.Metadata.UID] = true
		}
		if cont = list.Metadata.Continue; cont == "" {
			break
		}
	}
	if n := a.opts.Cache.ForgetAllBut(onNode, started); n > 0 {
		a.opts.Log.Info("pods left the node while the watch was down; their credentials are no longer renewed", "count", n)
	}
	a.synced.Store(true)
	return list.Metadata.ResourceVersion, nil
}

func (a *Agent) getJSON(ctx context.Context, u, accept string, into any) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return podsHint(a.opts.APIServer.do(ctx, http.MethodGet, u, accept, "", nil, into))
}

// podsHint says what a refusal of the pod list or watch means.
func podsHint(err error) error {
	var ae *apiError
	if errors.As(err, &ae) && ae.code == http.StatusForbidden {
		return fmt.Errorf("%w (the agent's ServiceAccount needs list and watch on pods)", err)
	}
	return err
}

// watchOnce follows one watch from rv until the server ends it (after a few
// minutes, as client-go's reflector asks) and returns the resource version to
// go on from.
func (a *Agent) watchOnce(ctx context.Context, rv string) (string, error) {
	timeout := 300 + rand.N(300)
	q := url.Values{"watch": {"true"}, "resourceVersion": {rv}, "allowWatchBookmarks": {"true"}, "timeoutSeconds": {fmt.Sprint(timeout)}}
	err := a.opts.APIServer.watch(ctx, a.podsURL(q), acceptMetadata, time.Duration(timeout+30)*time.Second, func(ev watchEvent) error {
		var pod struct {
			Metadata objectMeta `json:"metadata"`
		}
		if err := json.Unmarshal(ev.Object, &pod); err != nil {
			return fmt.Errorf("decoding a pod of the watch: %w", err)
		}
		if ev.Type == "DELETED" {
			m := pod.Metadata
			a.opts.Cache.Forget(m.UID)
			a.opts.Log.Info("pod left the node; its credentials are no longer renewed", "namespace", m.Namespace, "pod", m.Name)
		}
		if v := pod.Metadata.ResourceVersion; v != "" {
			rv = v
		}
		return nil
	})
	if err != nil && !errors.Is(err, errExpired) {
		return rv, fmt.Errorf("watching the node's pods: %w", podsHint(err))
	}
	return rv, err
}
