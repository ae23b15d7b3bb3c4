package realnode

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// testRotation waits for the kubelet to write the sample pod a new token
// (at about 80 % of its 600 s) and checks that the pod's SDK, sending the
// new token, is served from the agent's cache: no AssumeRole for it.
func testRotation(t *testing.T) {
	ctx := t.Context()
	pod, err := sb.WaitDeploymentPod(ctx, "demo", "demo-app")
	if err != nil {
		t.Fatal(err)
	}
	// The pod's credentials are in the agent's cache, fetched with the
	// token on disk now.
	if _, err := sb.PodIdentity(ctx, pod); err != nil {
		t.Fatal(err)
	}
	first, fi, err := tokenFile(pod)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("token written by the kubelet %s ago; waiting for the next", time.Since(fi.ModTime()).Round(time.Second))
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 12*time.Minute, true, func(context.Context) (bool, error) {
		now, _, err := tokenFile(pod)
		return err == nil && now != first, nil
	}); err != nil {
		t.Fatalf("the kubelet did not rotate pod %s's token within 12 minutes: %v", pod.Name, err)
	}
	_, fi, _ = tokenFile(pod)
	calls := assumeRoleCalls(string(pod.UID))
	id, err := sb.PodIdentity(ctx, pod)
	if err != nil {
		t.Fatalf("credentials with the rotated token: %v", err)
	}
	if after := assumeRoleCalls(string(pod.UID)); after != calls {
		t.Errorf("serving the rotated token cost %d upstream exchanges, want 0", after-calls)
	}
	t.Logf("the kubelet rotated the token %s after the pod started; the SDK got %s with it from the agent's cache", fi.ModTime().Sub(pod.CreationTimestamp.Time).Round(time.Second), id.AccessKeyID)
}

// testRestrictedRenewal checks that the agent renews, in the background,
// the credentials of a pod whose token the kubelet wrote for user 1000 with
// mode 0600 (runAsUser 1000, fsGroup 2000): the agent reads it from the
// kubelet's pods directory with its capabilities dropped.
func testRestrictedRenewal(t *testing.T) {
	ctx := t.Context()
	pod := restrictedPod
	_, fi, err := tokenFile(pod)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	t.Logf("the kubelet wrote the restricted pod's token with mode %v, owner %d:%d", fi.Mode().Perm(), st.Uid, st.Gid)
	// Credentials last 30 min and are renewed 20 min before expiry.
	deadline := time.Until(pod.CreationTimestamp.Add(13 * time.Minute))
	uid := string(pod.UID)
	if err := wait.PollUntilContextTimeout(ctx, 2*time.Second, max(deadline, time.Minute), true, func(context.Context) (bool, error) {
		return assumeRoleCalls(uid) >= 2, nil
	}); err != nil {
		t.Fatalf("the agent did not renew the restricted pod's credentials in the background (%d exchanges for it); agent log:\n%s", assumeRoleCalls(uid), agentLog(ctx))
	}
	t.Logf("renewed in the background %s after the pod started", time.Since(pod.CreationTimestamp.Time).Round(time.Second))
}

func agentLog(ctx context.Context) string {
	pods, err := cs.CoreV1().Pods("podid-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=agent"})
	if err != nil || len(pods.Items) == 0 {
		return fmt.Sprint("no agent pod: ", err)
	}
	lines := int64(30)
	data, err := cs.CoreV1().Pods("podid-system").GetLogs(pods.Items[0].Name, &corev1.PodLogOptions{Container: "agent", TailLines: &lines}).DoRaw(ctx)
	if err != nil {
		return err.Error()
	}
	return string(data)
}
