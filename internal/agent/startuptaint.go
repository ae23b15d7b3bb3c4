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

// StartupTaintKey is the taint a node can be registered with so that no
// pod is scheduled on it before its agent serves (the kubelet's
// --register-with-taints, Karpenter's startupTaints): the agent removes it
// from its own node once it is ready, as CNI plugins do with theirs.
// DaemonSets that tolerate it (the agent's tolerates every taint) still
// start.
const StartupTaintKey = "podid.io/agent-not-ready"

// nodeTaints is the part of a Node the agent reads: its taints as the API
// server has them, so that a patch's test compares them whole.
type nodeTaints struct {
	Spec struct {
		Taints []json.RawMessage `json:"taints"`
	} `json:"spec"`
}

// removeStartupTaint removes the taints with key from the agent's node
// once the agent is ready (its listeners bound and its pod watch synced),
// retrying until it has, and then again whenever the node has it while the
// agent serves: a Node deleted and registered anew with the taint (the
// kubelet's --register-with-taints) while this agent runs, or the taint
// put back. It watches the one node until ctx ends.
func (a *Agent) removeStartupTaint(ctx context.Context, key string) {
	if !a.waitReady(ctx) {
		return
	}
	for failures := 0; ; failures++ {
		removed, err := a.opts.APIServer.RemoveTaints(ctx, a.opts.Node, key)
		if err == nil {
			if removed > 0 {
				a.opts.Log.Info("serving: removed the startup taint from the node, pods may be scheduled here", "node", a.opts.Node, "taint", key)
			}
			break
		}
		if ctx.Err() != nil {
			return
		}
		a.opts.Log.Warn("removing the startup taint from the node failed; retrying (pods stay off this node until it is removed)", "node", a.opts.Node, "taint", key, "error", err.Error())
		backoff(ctx, failures)
	}
	for failures := 0; ctx.Err() == nil; {
		began := time.Now()
		err := a.watchNodeTaint(ctx, key)
		var ae *apiError
		switch {
		case ctx.Err() != nil:
			return
		case errors.As(err, &ae) && ae.code == http.StatusForbidden:
			a.opts.Log.Warn("cannot watch this node, so a startup taint put back while this agent runs stays until it restarts; give the agent's ServiceAccount watch on nodes (the chart does)", "node", a.opts.Node, "error", err.Error())
			return
		case err != nil:
			failures++
			a.opts.Log.Warn("watching this node for the startup taint failed; retrying", "node", a.opts.Node, "taint", key, "error", err.Error())
			backoff(ctx, failures)
		default:
			failures = 0
			if time.Since(began) < time.Second {
				sleep(ctx, time.Second) // a server ending watches at once must not make this spin
			}
		}
	}
}

// watchNodeTaint follows one watch of the agent's node, which starts with
// the node as it is, and removes the taint each time the node has it.
func (a *Agent) watchNodeTaint(ctx context.Context, key string) error {
	timeout := 300 + rand.N(300)
	q := url.Values{"watch": {"true"}, "fieldSelector": {"metadata.name=" + a.opts.Node}, "timeoutSeconds": {fmt.Sprint(timeout)}}
	u := a.opts.APIServer.Host + "/api/v1/nodes?" + q.Encode()
	return a.opts.APIServer.watch(ctx, u, "application/json", time.Duration(timeout+30)*time.Second, func(ev watchEvent) error {
		var n nodeTaints
		if ev.Type != "ADDED" && ev.Type != "MODIFIED" || json.Unmarshal(ev.Object, &n) != nil || !n.has(key) {
			return nil
		}
		removed, err := a.opts.APIServer.RemoveTaints(ctx, a.opts.Node, key)
		if err != nil {
			return err
		}
		if removed > 0 {
			a.opts.Log.Info("the node has the startup taint again (registered anew, or the taint put back) and this agent serves: removed it", "node", a.opts.Node, "taint", key)
		}
		return nil
	})
}

// has says whether the node has a taint with key.
func (n nodeTaints) has(key string) bool {
	for _, raw := range n.Spec.Taints {
		var t struct{ Key string }
		if json.Unmarshal(raw, &t) == nil && t.Key == key {
			return true
		}
	}
	return false
}

// backoff sleeps after the failures-th failure in a row: exponential from
// 1 s to 30 s, with jitter.
func backoff(ctx context.Context, failures int) {
	wait := min(time.Second<<min(failures, 5), 30*time.Second)
	sleep(ctx, wait/2+rand.N(wait/2+1))
}

// RemoveTaints removes every taint with key from node, with a JSON patch
// that first tests each taint it removes, so that a node changed meanwhile
// is read again rather than written over. It reports how many it removed.
func (s *APIServer) RemoveTaints(ctx context.Context, node, key string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for attempt := 0; ; attempt++ {
		var n nodeTaints
		u := s.Host + "/api/v1/nodes/" + url.PathEscape(node)
		if err := s.do(ctx, http.MethodGet, u, "application/json", "", nil, &n); err != nil {
			return 0, fmt.Errorf("reading node %s: %w", node, err)
		}
		var patch []map[string]any
		for i := len(n.Spec.Taints) - 1; i >= 0; i-- { // from the end, so indexes hold
			var t struct{ Key string }
			if json.Unmarshal(n.Spec.Taints[i], &t) == nil && t.Key == key {
				path := fmt.Sprintf("/spec/taints/%d", i)
				patch = append(patch, map[string]any{"op": "test", "path": path, "value": n.Spec.Taints[i]}, map[string]any{"op": "remove", "path": path})
			}
		}
		if len(patch) == 0 {
			return 0, nil
		}
		body, _ := json.Marshal(patch)
		err := s.do(ctx, http.MethodPatch, u, "application/json", "application/json-patch+json", body, nil)
		if err == nil {
			return len(patch) / 2, nil
		}
		var se *apiError
		if !errors.As(err, &se) || (se.code != http.StatusConflict && se.code != http.StatusUnprocessableEntity) || attempt >= 5 {
			return 0, fmt.Errorf("removing taint %s from node %s: %w", key, node, err)
		}
		// Changed meanwhile (a failed test): read it again.
	}
}
