// Command realnode prints podid's figures on a real node: the sandbox coming
// up (node, images, chart), pods created one after another until each
// one's AWS SDK holds credentials (container start included), the upstream
// exchanges per pod, and the node agent's resident memory with that many
// pods. It needs what test/realnode needs (Linux, root, `make tools`).
//
//	go run ./test/load/realnode -pods 50
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/test/harness/sandbox"
	"github.com/podid/podid/test/harness/workload"
)

func main() {
	pods := flag.Int("pods", 50, "pods to start, one after another")
	flag.Parse()
	if err := run(*pods); err != nil {
		fmt.Fprintln(os.Stderr, "realnode:", err)
		os.Exit(1)
	}
}

func run(n int) error {
	if why := sandbox.RealNodeUnavailable(); why != nil {
		return why
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "podid-load-realnode-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	began := time.Now()
	sb, err := sandbox.Start(ctx, sandbox.Options{Dir: dir, Identity: sandbox.DefaultIdentity, Node: sandbox.NodeReal})
	if err != nil {
		return err
	}
	defer sb.Stop()
	fmt.Printf("sandbox up on a real node in %.1fs (helm install → all podid pods Ready: %.1fs)\n", time.Since(began).Seconds(), sb.ChartInstallTime().Seconds())

	cs := sb.RealNode().Clientset
	const ns = "latency"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	pia := &v1alpha1.PodIdentityAssociation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"},
		Spec: v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "app", RoleARN: sb.Env["PODID_SAMPLE_ROLE_ARN"]}}
	if err := sb.Client().Create(ctx, pia); err != nil {
		return err
	}
	if err := sb.WaitAssociationReady(ctx, pia); err != nil {
		return err
	}
	rssIdle, _ := agentRSS()
	var latencies []time.Duration
	var uids []string
	for i := range n {
		tmpl := sb.WorkloadDeployment(ns, "app", "app", 1).Spec.Template
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("app-%03d", i), Labels: tmpl.Labels}, Spec: tmpl.Spec}
		created := time.Now()
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return err
		}
		if _, err := sb.RealNode().PodIP(ctx, ns, pod.Name); err != nil {
			return err
		}
		got, err := cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var startup workload.Identity
		if err := sb.PodGet(ctx, got, "/startup", &startup); err != nil {
			return err
		}
		if startup.Error != "" || startup.Obtained.IsZero() {
			return fmt.Errorf("pod %s got no credentials: %s", pod.Name, startup.Error)
		}
		latencies = append(latencies, startup.Obtained.Sub(created))
		uids = append(uids, string(got.UID))
	}
	slices.Sort(latencies)
	pct := func(p float64) time.Duration { return latencies[int(p*float64(len(latencies)-1)+0.5)] }
	fmt.Printf("pod created → its AWS SDK holds credentials, %d pods one after another: p50 %s, p99 %s, max %s\n",
		n, pct(0.50).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), latencies[len(latencies)-1].Round(time.Millisecond))
	exchanges := 0
	mine := map[string]bool{}
	for _, u := range uids {
		mine[u] = true
	}
	for _, c := range sb.Emulator().AssumeRoleCalls() {
		if c.Session != nil && mine[c.Session.Tags["kubernetes-pod-uid"]] {
			exchanges++
		}
	}
	fmt.Printf("upstream exchanges (AssumeRole): %d for %d pods, %.2f per pod\n", exchanges, n, float64(exchanges)/float64(n))
	if rss, err := agentRSS(); err == nil {
		fmt.Printf("podid agent resident memory: %.1f MB idle, %.1f MB with %d more pods cached\n", float64(rssIdle)/1e6, float64(rss)/1e6, n)
	} else {
		fmt.Println("podid agent resident memory: ", err)
	}
	return nil
}

// agentRSS finds the podid-agent process on this host (the DaemonSet's
// container) and returns its resident memory in bytes.
func agentRSS() (int64, error) {
	matches, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, m := range matches {
		data, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		args := strings.Split(string(data), "\x00")
		if len(args) < 2 || args[0] != "/podid-agent" || args[1] == "init" {
			continue
		}
		status, err := os.ReadFile(filepath.Join(filepath.Dir(m), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
				kb, err := strconv.ParseInt(f[1], 10, 64)
				return kb * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("no podid-agent process found")
}
