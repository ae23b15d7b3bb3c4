package realnode

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/podid/podid/internal/server"
)

// loadStats is what the workload's /stats answers.
type loadStats struct {
	Fetches  int64    `json:"fetches"`
	Failures int64    `json:"failures"`
	Errors   []string `json:"errors"`
}

// testFaultsUnderLoad keeps three pods fetching credentials through fresh
// SDK chains every 100 ms while podid's leader server pod is deleted, the
// agent DaemonSet is restarted and the API server is restarted, and counts
// the fetches that failed after the SDK's own retries.
func testFaultsUnderLoad(t *testing.T) {
	ctx := t.Context()
	associate(t, "load", "load")
	d := sb.WorkloadDeployment("load", "load", "load", 3, corev1.EnvVar{Name: "FETCH_INTERVAL", Value: "100ms"})
	if _, err := cs.AppsV1().Deployments("load").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Pods("load").List(ctx, metav1.ListOptions{LabelSelector: "app=load"})
		if err != nil {
			return false, nil
		}
		pods = pods[:0]
		for _, p := range list.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				pods = append(pods, p)
			}
		}
		return len(pods) == 3, nil
	}); err != nil {
		t.Fatalf("the load pods did not run: %v", err)
	}
	stats := func() loadStats {
		var sum loadStats
		for i := range pods {
			var s loadStats
			if err := sb.PodGet(ctx, &pods[i], "/stats", &s); err != nil {
				t.Fatal(err)
			}
			sum.Fetches += s.Fetches
			sum.Failures += s.Failures
			sum.Errors = append(sum.Errors, s.Errors...)
		}
		return sum
	}
	time.Sleep(3 * time.Second) // every pod's first fetch is done
	for _, fault := range []struct {
		name string
		do   func(context.Context) error
	}{
		{"the leader podid server pod deleted", deleteLeader},
		{"the agent DaemonSet restarted (kubectl rollout restart)", restartAgent},
		{"the API server restarted", sb.RealNode().RestartAPIServer},
	} {
		before := stats()
		began := time.Now()
		if err := fault.do(ctx); err != nil {
			t.Fatalf("%s: %v", fault.name, err)
		}
		recovered := time.Since(began)
		// The pods keep fetching for a while after the system is whole.
		time.Sleep(5 * time.Second)
		during := stats()
		time.Sleep(3 * time.Second)
		after := stats()
		fetches, failed := during.Fetches-before.Fetches, during.Failures-before.Failures
		t.Logf("figure: %s (whole again after %.1fs): %d SDK credential fetches, %d failed after the SDK's retries", fault.name, recovered.Seconds(), fetches, failed)
		if failed > 0 {
			t.Logf("  failures: %s", strings.Join(newErrors(before.Errors, during.Errors), "\n  "))
		}
		if fetches == 0 {
			t.Errorf("%s: the pods made no fetches", fault.name)
		}
		if after.Failures != during.Failures || after.Fetches == during.Fetches {
			t.Errorf("%s: fetches still fail %s after podid is whole again: %d more failures in 3s", fault.name, 5*time.Second, after.Failures-during.Failures)
		}
	}
}

func newErrors(before, after []string) []string {
	seen := map[string]bool{}
	for _, e := range before {
		seen[e] = true
	}
	var out []string
	for _, e := range after {
		if !seen[e] {
			out = append(out, e)
		}
	}
	return out
}

// deleteLeader deletes the podid server pod holding the leader Lease and
// waits until a new leader holds it and both replicas are available.
func deleteLeader(ctx context.Context) error {
	lease, err := cs.CoordinationV1().Leases("podid-system").Get(ctx, server.LeaderElectionID, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if lease.Spec.HolderIdentity == nil {
		return fmt.Errorf("lease %s has no holder", server.LeaderElectionID)
	}
	holder := *lease.Spec.HolderIdentity
	leader, _, _ := strings.Cut(holder, "_") // controller-runtime: <hostname>_<uuid>
	if err := cs.CoreV1().Pods("podid-system").Delete(ctx, leader, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("deleting leader pod %s: %w", leader, err)
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		lease, err := cs.CoordinationV1().Leases("podid-system").Get(ctx, server.LeaderElectionID, metav1.GetOptions{})
		if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == holder {
			return false, nil
		}
		d, err := cs.AppsV1().Deployments("podid-system").Get(ctx, "podid-server", metav1.GetOptions{})
		return err == nil && d.Status.AvailableReplicas == 2 && d.Status.UpdatedReplicas == 2 && d.Status.Replicas == 2, nil
	})
}

// restartAgent does what `kubectl rollout restart daemonset/podid-agent`
// does and waits for the rollout.
func restartAgent(ctx context.Context) error {
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339))
	ds, err := cs.AppsV1().DaemonSets("podid-system").Patch(ctx, "podid-agent", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		return err
	}
	gen := ds.Generation
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		ds, err := cs.AppsV1().DaemonSets("podid-system").Get(ctx, "podid-agent", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		s := ds.Status
		return s.ObservedGeneration >= gen && s.UpdatedNumberScheduled == s.DesiredNumberScheduled && s.NumberAvailable == s.DesiredNumberScheduled && s.NumberUnavailable == 0, nil
	})
}
