package realnode

import (
	"context"
	"encoding/json"
	"slices"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"k8s.io/utils/ptr"

	"github.com/podid/podid/internal/agent"
)

// testStartupTaint: a node registered with podid's startup taint and pods
// already waiting for it. None of them is scheduled while the node has no
// agent; once the agent serves it removes the taint itself (through the
// chart's RBAC and admission policy), and every pod then runs and gets
// credentials.
func testStartupTaint(t *testing.T) {
	ctx := t.Context()
	const ns = "startup-taint"
	t.Cleanup(func() { cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	associate(t, ns, "app")
	node := sb.RealNode().Name

	// The node as it comes up: no agent yet, the taint it was registered
	// with (--register-with-taints, Karpenter's startupTaints).
	restore := setAgentNodeSelector(t, map[string]string{"podid.io/agent": "not-yet"})
	taint := corev1.Taint{Key: agent.StartupTaintKey, Effect: corev1.TaintEffectNoSchedule}
	patchTaints(t, node, append(taintsOn(t, node), taint))
	t.Cleanup(func() { // whatever happens, the node is left schedulable
		kept := slices.DeleteFunc(taintsOn(t, node), func(tt corev1.Taint) bool { return tt.Key == agent.StartupTaintKey })
		patchTaints(t, node, kept)
	})

	const replicas = 3
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, sb.WorkloadDeployment(ns, "waiting", "app", replicas), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// They wait: unschedulable, for as long as the node has no agent.
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		return len(podsOf(t, ns, func(p corev1.Pod) bool { return unschedulable(p) })) == replicas, nil
	}); err != nil {
		t.Fatalf("the pods were not held back by the taint: %v", err)
	}
	time.Sleep(3 * time.Second) // the scheduler's retry
	if scheduled := podsOf(t, ns, func(p corev1.Pod) bool { return p.Spec.NodeName != "" }); len(scheduled) != 0 {
		t.Fatalf("%d pods were scheduled on a node without an agent", len(scheduled))
	}

	restore() // the agent starts on the node, and is ready when this returns
	agentStarted := agentStartedAt(t)
	var running []corev1.Pod
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		running = podsOf(t, ns, func(p corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" })
		return len(running) == replicas, nil
	}); err != nil {
		t.Fatalf("the waiting pods did not run once the agent served: %v (taints %v)", err, taintsOn(t, node))
	}
	checkStartedAfterAgent(t, node, running, agentStarted)
	t.Logf("figure: %d pods waiting on a node without its agent were all started %s after the agent's container", replicas, lastStart(running).Sub(agentStarted).Round(100*time.Millisecond))
}

// checkStartedAfterAgent: the agent removed the startup taint from node,
// and every pod started after the agent and got credentials through the
// SDK chain.
func checkStartedAfterAgent(t *testing.T, node string, running []corev1.Pod, agentStarted time.Time) {
	t.Helper()
	if slices.ContainsFunc(taintsOn(t, node), func(tt corev1.Taint) bool { return tt.Key == agent.StartupTaintKey }) {
		t.Error("the startup taint is still on the node")
	}
	for _, p := range running {
		if started := p.Status.StartTime; started == nil || started.Time.Before(agentStarted) {
			t.Errorf("pod %s started at %v, before the agent at %v", p.Name, started, agentStarted)
		}
		id, err := sb.PodIdentity(t.Context(), &p)
		if err != nil {
			t.Errorf("pod %s: %v", p.Name, err)
			continue
		}
		if id.Source != "CredentialsEndpointProvider" {
			t.Errorf("pod %s got credentials from %s", p.Name, id.Source)
		}
	}
}

func unschedulable(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return true
		}
	}
	return false
}

func podsOf(t *testing.T, ns string, keep func(corev1.Pod) bool) []corev1.Pod {
	t.Helper()
	list, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(list.Items, func(p corev1.Pod) bool { return !keep(p) })
}

func taintsOn(t *testing.T, node string) []corev1.Taint {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Spec.Taints
}

func patchTaints(t *testing.T, node string, taints []corev1.Taint) {
	t.Helper()
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"taints": taints}})
	if _, err := cs.CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// agentStartedAt is when the node's agent container started.
func agentStartedAt(t *testing.T) time.Time {
	t.Helper()
	pods, err := cs.CoreV1().Pods(podidNS).List(t.Context(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=agent"})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("agent pods: %v (%d)", err, len(pods.Items))
	}
	for _, c := range pods.Items[0].Status.ContainerStatuses {
		if c.Name == "agent" && c.State.Running != nil {
			return c.State.Running.StartedAt.Time
		}
	}
	t.Fatal("the agent is not running")
	return time.Time{}
}

func lastStart(pods []corev1.Pod) time.Time {
	var last time.Time
	for _, p := range pods {
		if p.Status.StartTime != nil && p.Status.StartTime.After(last) {
			last = p.Status.StartTime.Time
		}
	}
	return last
}

// testNodeRegisteredWithTaint: a node that joins the cluster (the kubelet
// registering its Node anew, with --register-with-taints as the chart's
// docs say and --node-labels) while pods are already waiting for it, and
// with no agent yet (the old agent's pod is gone with the old Node). None
// of the waiting pods is scheduled before the new agent is ready; then all
// run and get credentials.
func testNodeRegisteredWithTaint(t *testing.T) {
	ctx := t.Context()
	const ns, label, replicas = "node-joins", "podid.io/test-pool", 3
	t.Cleanup(func() { cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	associate(t, ns, "app")
	node := sb.RealNode().Name

	// Pods waiting for a node of their pool, which none is yet.
	d := sb.WorkloadDeployment(ns, "waiting", "app", replicas)
	d.Spec.Template.Spec.NodeSelector = map[string]string{label: "joining"}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		return len(podsOf(t, ns, unschedulable)) == replicas, nil
	}); err != nil {
		t.Fatalf("the pods are not waiting: %v", err)
	}

	oldNode, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	err = sb.RealNode().Reregister(ctx, func(ctx context.Context) error {
		// The machine is new: its old agent pod went with the old Node,
		// and its processes, which the stopped kubelet would leave running
		// (an agent that serves removes the taint of a node registered
		// anew: not what is tested here).
		pods, err := cs.CoreV1().Pods(podidNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=agent"})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if err := cs.CoreV1().Pods(podidNS).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
				return err
			}
		}
		return stopAgentProcesses(ctx)
	}, "--register-with-taints="+agent.StartupTaintKey+"=:NoSchedule", "--node-labels="+label+"=joining")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // whatever happens, the node is left schedulable
		kept := slices.DeleteFunc(taintsOn(t, node), func(tt corev1.Taint) bool { return tt.Key == agent.StartupTaintKey })
		patchTaints(t, node, kept)
	})
	if newNode, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); err != nil || newNode.UID == oldNode.UID {
		t.Fatalf("the node was not registered anew (%v): UID %s before, the same after", err, oldNode.UID)
	}

	var running []corev1.Pod
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		running = podsOf(t, ns, func(p corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" })
		return len(running) == replicas, nil
	}); err != nil {
		t.Fatalf("the waiting pods did not run on the new node: %v (taints %v)\n%s", err, taintsOn(t, node), sb.PodsReport(ctx))
	}
	agentStarted := agentStartedAt(t)
	if agentStarted.Before(began) {
		t.Fatalf("the agent started at %v, before the node registered again at %v: it is the old one", agentStarted, began)
	}
	checkStartedAfterAgent(t, node, running, agentStarted)
	t.Logf("figure: a node registered with %s and %d pods waiting: the agent started %s after registration began, the pods %s after the agent, all with credentials",
		agent.StartupTaintKey, replicas, agentStarted.Sub(began).Round(100*time.Millisecond), lastStart(running).Sub(agentStarted).Round(100*time.Millisecond))
}

// stopAgentProcesses kills the agent's processes on this host, the kubelet
// being stopped, and waits until they are gone.
func stopAgentProcesses(ctx context.Context) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		parents, err := agentProcessParents()
		if err != nil {
			return false, err
		}
		for pid := range parents {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		return len(parents) == 0, nil
	})
}
