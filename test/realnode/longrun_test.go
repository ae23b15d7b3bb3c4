package realnode

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// inBackground starts check now, in a goroutine, and returns the step that
// reports it: the step waits for the check to end, then logs what it said
// and fails with its error. The checks that wait on the node's clock (the
// kubelet's token rotation, the agent's renewal) run this way, beside the
// other steps rather than ahead of them.
func inBackground(ctx context.Context, check func(ctx context.Context, logf func(string, ...any)) error) func(*testing.T) {
	var (
		mu   sync.Mutex
		logs []string
		done = make(chan error, 1)
	)
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		logs = append(logs, fmt.Sprintf(format, args...))
	}
	go func() { done <- check(ctx, logf) }()
	return func(t *testing.T) {
		var err error
		select {
		case err = <-done:
		case <-t.Context().Done():
			err = t.Context().Err()
		}
		mu.Lock()
		for _, l := range logs {
			t.Log(l)
		}
		mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// watchRotation waits for the kubelet to write the sample pod a new token
// (at about 80 % of its 600 s) and checks that the pod's SDK, sending the
// new token, is served from the agent's cache: no AssumeRole for it. Nothing
// may restart the agent while it watches.
func watchRotation(ctx context.Context, logf func(string, ...any)) error {
	pod, err := sb.WaitDeploymentPod(ctx, "demo", "demo-app")
	if err != nil {
		return err
	}
	// The pod's credentials are in the agent's cache, fetched with the
	// token on disk now.
	if _, err := sb.PodIdentity(ctx, pod); err != nil {
		return err
	}
	first, fi, err := tokenFile(pod)
	if err != nil {
		return err
	}
	logf("token written by the kubelet %s ago; waiting for the next", time.Since(fi.ModTime()).Round(time.Second))
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 12*time.Minute, true, func(context.Context) (bool, error) {
		now, _, err := tokenFile(pod)
		return err == nil && now != first, nil
	}); err != nil {
		return fmt.Errorf("the kubelet did not rotate pod %s's token within 12 minutes: %w", pod.Name, err)
	}
	_, fi, _ = tokenFile(pod)
	calls := assumeRoleCalls(string(pod.UID))
	id, err := sb.PodIdentity(ctx, pod)
	if err != nil {
		return fmt.Errorf("credentials with the rotated token: %w", err)
	}
	if after := assumeRoleCalls(string(pod.UID)); after != calls {
		return fmt.Errorf("serving the rotated token cost %d upstream exchanges, want 0", after-calls)
	}
	logf("the kubelet rotated the token %s after the pod started; the SDK got %s with it from the agent's cache", fi.ModTime().Sub(pod.CreationTimestamp.Time).Round(time.Second), id.AccessKeyID)
	return nil
}

// watchRestrictedRenewal checks that the agent renews, in the background,
// the credentials of a pod whose token the kubelet wrote for user 1000 with
// mode 0600 (runAsUser 1000, fsGroup 2000): the agent reads it from the
// kubelet's pods directory with its capabilities dropped.
func watchRestrictedRenewal(ctx context.Context, logf func(string, ...any)) error {
	pod := restrictedPod
	_, fi, err := tokenFile(pod)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	logf("the kubelet wrote the restricted pod's token with mode %v, owner %d:%d", fi.Mode().Perm(), st.Uid, st.Gid)
	// Credentials last 25 min and are renewed 20 min before expiry: about
	// 5 min after the pod's first exchange.
	deadline := time.Until(pod.CreationTimestamp.Add(8 * time.Minute))
	uid := string(pod.UID)
	if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, max(deadline, time.Minute), true, func(context.Context) (bool, error) {
		return assumeRoleCalls(uid) >= 2, nil
	}); err != nil {
		return fmt.Errorf("the agent did not renew the restricted pod's credentials in the background (%d exchanges for it); agent log:\n%s", assumeRoleCalls(uid), componentLog(ctx, "agent", 30))
	}
	logf("renewed in the background %s after the pod started", time.Since(pod.CreationTimestamp.Time).Round(time.Second))
	return nil
}

// componentLog is the end of the log of each podid pod of component
// (agent, server, rotator), for a failure's message.
func componentLog(ctx context.Context, component string, lines int64) string {
	pods, err := cs.CoreV1().Pods(podidNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=" + component})
	if err != nil || len(pods.Items) == 0 {
		return fmt.Sprintf("no %s pod: %v", component, err)
	}
	var out strings.Builder
	for _, p := range pods.Items {
		data, err := cs.CoreV1().Pods(podidNS).GetLogs(p.Name, &corev1.PodLogOptions{Container: component, TailLines: &lines}).DoRaw(ctx)
		if err != nil {
			data = []byte(err.Error())
		}
		fmt.Fprintf(&out, "--- %s:\n%s\n", p.Name, data)
	}
	return out.String()
}
