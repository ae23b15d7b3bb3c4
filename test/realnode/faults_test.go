package realnode

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
	Slow     []struct {
		Began    time.Time     `json:"began"`
		Duration time.Duration `json:"duration"`
	} `json:"slow"`
}

// slowestSince is the longest fetch that began at or after t, and how many
// took a second or more.
func (s loadStats) slowestSince(t time.Time) (slowest time.Duration, slow int) {
	for _, f := range s.Slow {
		if !f.Began.Before(t) {
			slowest, slow = max(slowest, f.Duration), slow+1
		}
	}
	return slowest, slow
}

// testFaultsUnderLoad keeps three pods fetching credentials through fresh
// SDK chains every 100 ms while podid's leader server pod is deleted, the
// agent DaemonSet is restarted, the chart is upgraded with a change to the
// agent, the agent's serving process and then its whole container are
// killed with SIGKILL and the API server is restarted, and counts the
// fetches that failed after the SDK's own retries. The agent's rollouts
// must lose none (the new agent shares the node's addresses with the old
// one and is ready before the old one stops), nor the crash of its serving
// process (the keeper holds the addresses while it restarts), nor the kill
// of its whole container (the socket store, the pod's other container,
// holds them until the kubelet has started it again).
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
			sum.Slow = append(sum.Slow, s.Slow...)
		}
		return sum
	}
	time.Sleep(3 * time.Second) // every pod's first fetch is done
	if keeper, server, err := agentProcesses(); err != nil {
		t.Error(err)
	} else {
		kr, ko := memoryMiB(keeper)
		sr, so := memoryMiB(server)
		t.Logf("figure: the agent's memory under this load: keeper %.1f MiB resident (%.1f MiB its own, the rest the binary's pages it shares with the server), server %.1f MiB (%.1f MiB its own)", kr, ko, sr, so)
	}
	if store := socketStoreProcess(); store == 0 {
		t.Error("no podid-agent socket-store process on this host: the chart runs one beside each agent")
	} else {
		r, o := memoryMiB(store)
		t.Logf("figure: the socket store's memory: %.1f MiB resident (%.1f MiB its own)", r, o)
	}
	for _, fault := range []struct {
		name         string
		do           func(context.Context) error
		zeroFailures bool // the target: the agent hands over without a refused connection
	}{
		{"the leader podid server pod deleted", deleteLeader, false},
		{"the agent DaemonSet restarted (kubectl rollout restart)", restartAgent, true},
		{"a chart upgrade that changes the agent (helm upgrade --set agent.logLevel=debug)", upgradeAgent, true},
		{"the agent's serving process killed with SIGKILL (as by the OOM killer)", killAgentServer, true},
		{"the agent's container killed (SIGKILL of its keeper, the server with it)", killAgentContainer, true},
		{"the API server restarted", sb.RealNode().RestartAPIServer, false},
	} {
		before := stats()
		began := time.Now()
		if err := fault.do(ctx); err != nil {
			t.Fatalf("%s: %v\n%s", fault.name, err, faultDiagnostics(ctx))
		}
		recovered := time.Since(began)
		// The pods keep fetching for a while after the system is whole.
		time.Sleep(5 * time.Second)
		during := stats()
		time.Sleep(3 * time.Second)
		after := stats()
		fetches, failed := during.Fetches-before.Fetches, during.Failures-before.Failures
		slowest, slow := after.slowestSince(began.Add(-time.Second))
		t.Logf("figure: %s (whole again after %.1fs): %d SDK credential fetches, %d failed after the SDK's retries; %d took 1s or more, the slowest %.1fs", fault.name, recovered.Seconds(), fetches, failed, slow, slowest.Seconds())
		if failed > 0 {
			t.Logf("  failures: %s", strings.Join(newErrors(before.Errors, during.Errors), "\n  "))
		}
		failedBefore := t.Failed()
		if fetches == 0 {
			t.Errorf("%s: the pods made no fetches", fault.name)
		}
		if fault.zeroFailures && failed > 0 {
			t.Errorf("%s: %d SDK fetches failed; the agent's handover should lose none", fault.name, failed)
		}
		if after.Failures != during.Failures {
			t.Errorf("%s: fetches still fail %s after podid is whole again: %d more failures in 3s", fault.name, 5*time.Second, after.Failures-during.Failures)
		}
		if after.Fetches == during.Fetches {
			t.Errorf("%s: no fetch completed in the 3s from %s after podid was whole again: they hang", fault.name, 5*time.Second)
		}
		if !failedBefore && t.Failed() {
			t.Log(faultDiagnostics(ctx))
		}
	}
}

// faultDiagnostics is what shows why a fault's fetches failed or hung: the
// agent's and server's logs, the server pods, the host's TCP connections
// to the server's port (the agent is on the host network) with their
// timers, and the Service's rules as kube-proxy wrote them.
func faultDiagnostics(ctx context.Context) string {
	var out strings.Builder
	fmt.Fprintf(&out, "agent log:\n%s\nserver log:\n%s\n", componentLog(ctx, "agent", 80), componentLog(ctx, "server", 40))
	if pods, err := cs.CoreV1().Pods(podidNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=server"}); err == nil {
		for _, p := range pods.Items {
			fmt.Fprintf(&out, "server pod %s: ip %s, phase %s, deleting %v\n", p.Name, p.Status.PodIP, p.Status.Phase, p.DeletionTimestamp != nil)
		}
	}
	for _, c := range [][]string{
		{"ss", "-tnpoi", "state", "all", "( dport = :8443 or sport = :8443 )"},
		{"conntrack", "-L", "-p", "tcp", "--dport", "8443"},
		{"sh", "-c", "iptables-save -t nat | grep -e podid-system/podid-server -e KUBE-SEP"},
	} {
		data, err := exec.CommandContext(ctx, c[0], c[1:]...).CombinedOutput()
		fmt.Fprintf(&out, "$ %s (%v)\n%s\n", strings.Join(c, " "), err, data)
	}
	return out.String()
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
	return waitAgentRollout(ctx, ds.Generation)
}

// waitAgentRollout waits until the agent DaemonSet of generation gen is
// rolled out: every node's agent updated and available, no other left.
func waitAgentRollout(ctx context.Context, gen int64) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		ds, err := cs.AppsV1().DaemonSets("podid-system").Get(ctx, "podid-agent", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		s := ds.Status
		if s.ObservedGeneration < gen || s.UpdatedNumberScheduled != s.DesiredNumberScheduled || s.NumberAvailable != s.DesiredNumberScheduled || s.NumberUnavailable != 0 {
			return false, nil
		}
		pods, err := cs.CoreV1().Pods("podid-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=agent"})
		return err == nil && len(pods.Items) == int(s.DesiredNumberScheduled), nil
	})
}

// upgradeAgent upgrades the release with a value that changes the agent's
// pods, as an operator does, and waits for the rollout.
func upgradeAgent(ctx context.Context) error {
	if err := sb.UpgradeChart(ctx, "agent.logLevel=debug"); err != nil {
		return err
	}
	ds, err := cs.AppsV1().DaemonSets("podid-system").Get(ctx, "podid-agent", metav1.GetOptions{})
	if err != nil {
		return err
	}
	return waitAgentRollout(ctx, ds.Generation)
}

// killAgentServer kills the process of the node's agent that serves, with
// SIGKILL, as the OOM killer (it holds the memory) or a panic would end it,
// and waits until the keeper holding the agent's addresses has it serving
// again.
func killAgentServer(ctx context.Context) error {
	keeper, server, err := agentProcesses()
	if err != nil {
		return err
	}
	if err := syscall.Kill(server, syscall.SIGKILL); err != nil {
		return fmt.Errorf("killing the agent's server process (pid %d): %w", server, err)
	}
	return waitAgentServing(ctx, func(k, s int) bool { return k == keeper && s != server })
}

// killAgentContainer kills the agent's container, its keeper with SIGKILL
// (the container's first process: its server goes with it), and waits
// until the kubelet has restarted it serving.
func killAgentContainer(ctx context.Context) error {
	keeper, server, err := agentProcesses()
	if err != nil {
		return err
	}
	if err := syscall.Kill(keeper, syscall.SIGKILL); err != nil {
		return fmt.Errorf("killing the agent's keeper process (pid %d): %w", keeper, err)
	}
	return waitAgentServing(ctx, func(k, s int) bool { return k != keeper && s != server })
}

// waitAgentServing waits until the agent's processes are the ones wanted
// and its pod is ready.
func waitAgentServing(ctx context.Context, want func(keeper, server int) bool) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		if keeper, server, err := agentProcesses(); err != nil || !want(keeper, server) {
			return false, nil
		}
		pods, err := cs.CoreV1().Pods("podid-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=agent"})
		if err != nil || len(pods.Items) != 1 {
			return false, nil
		}
		for _, c := range pods.Items[0].Status.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
}

// agentProcesses finds the node's agent on this host (the node's
// containers are processes of the host): the keeper, which holds the
// node's addresses, and the server, its child.
func agentProcesses() (keeper, server int, err error) {
	parents, err := agentProcessParents()
	if err != nil {
		return 0, 0, err
	}
	for pid, ppid := range parents {
		if _, ok := parents[ppid]; ok {
			if server != 0 {
				return 0, 0, fmt.Errorf("more than one podid-agent server process: %d and %d", server, pid)
			}
			keeper, server = ppid, pid
		}
	}
	if server == 0 {
		return 0, 0, fmt.Errorf("no podid-agent keeper and server processes on this host (found %v)", parents)
	}
	return keeper, server, nil
}

// agentProcessParents are the podid-agent processes on this host, each
// with its parent's pid.
func agentProcessParents() (map[int]int, error) {
	// The agent, not `podid-agent ready`, `init` or `socket-store`.
	pids, err := podidAgentProcesses(func(args []string) bool { return strings.HasPrefix(args[1], "--") })
	if err != nil {
		return nil, err
	}
	parents := map[int]int{}
	for _, pid := range pids {
		stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces, not ")".
		_, rest, _ := strings.Cut(string(stat), ") ")
		var state string
		var ppid int
		if _, err := fmt.Sscan(rest, &state, &ppid); err == nil {
			parents[pid] = ppid
		}
	}
	return parents, nil
}

// socketStoreProcess is the pid of the agent pod's socket store on this
// host, 0 if none.
func socketStoreProcess() int {
	pids, _ := podidAgentProcesses(func(args []string) bool { return args[1] == "socket-store" })
	if len(pids) == 0 {
		return 0
	}
	return pids[0]
}

// podidAgentProcesses are the pids of this host's podid-agent processes
// (the node's containers are processes of the host) whose arguments, the
// program's name and at least one more, match.
func podidAgentProcesses(match func(args []string) bool) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if filepath.Base(args[0]) == "podid-agent" && len(args) > 1 && match(args) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// memoryMiB is a process's resident memory and the part of it that is
// its own (anonymous: heap, stacks), from /proc; the rest is file pages,
// such as the binary's, shared with other processes mapping them.
func memoryMiB(pid int) (resident, own float64) {
	rollup, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "smaps_rollup"))
	if err != nil {
		return 0, 0
	}
	for line := range strings.Lines(string(rollup)) {
		var kb float64
		if rest, ok := strings.CutPrefix(line, "Rss:"); ok {
			fmt.Sscan(rest, &kb)
			resident = kb / 1024
		} else if rest, ok := strings.CutPrefix(line, "Anonymous:"); ok {
			fmt.Sscan(rest, &kb)
			own = kb / 1024
		}
	}
	return resident, own
}
