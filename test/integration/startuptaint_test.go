package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/podid/podid/internal/agent"
	"github.com/podid/podid/internal/agentpolicy"
)

// An agent removes its startup taint from its own node, keeping the
// node's other taints; with the chart's policy, its credentials cannot
// untaint another node, nor change anything else on its own (attacks as
// a stolen agent token would make them).
func TestAgentRemovesOnlyItsStartupTaint(t *testing.T) {
	ctx := t.Context()
	install(t, agentpolicy.Policy(agentNamespace), agentpolicy.Binding())
	agentUser := "system:serviceaccount:" + agentNamespace + ":podid-agent"
	grant(t, "", "podid-agent-nodes", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"patch", "get"}}, agentUser)

	startup := func(effect corev1.TaintEffect) corev1.Taint {
		return corev1.Taint{Key: agent.StartupTaintKey, Effect: effect}
	}
	other := corev1.Taint{Key: "example.com/gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}
	setTaints(t, "node-a", other, startup(corev1.TaintEffectNoSchedule), startup(corev1.TaintEffectNoExecute))
	setTaints(t, "node-b", startup(corev1.TaintEffectNoSchedule))

	api, asAgent := agentOnNode(t, "node-a")
	// The policy takes a moment to reach the API server's admission: a
	// dry run tells when it has.
	eventually(t, "the agent policy to be in force", func(ctx context.Context) (bool, error) {
		_, err := asAgent.CoreV1().Nodes().Patch(ctx, "node-b", types.MergePatchType, []byte(`{"metadata":{"labels":{"probe":"x"}}}`), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "podid-agent may change only the node it runs on"), nil
	})
	if _, err := api.RemoveTaints(ctx, "node-b", agent.StartupTaintKey); err == nil || !strings.Contains(err.Error(), "podid-agent may change only the node it runs on") {
		t.Errorf("node-a's agent removing node-b's taint: %v", err)
	}
	if got := taintsOf(t, "node-b"); len(got) != 1 {
		t.Errorf("node-b's taints: %v", got)
	}

	removed, err := api.RemoveTaints(ctx, "node-a", agent.StartupTaintKey)
	if err != nil || removed != 2 {
		t.Fatalf("removed %d: %v", removed, err)
	}
	if got := taintsOf(t, "node-a"); len(got) != 1 || got[0].Key != other.Key {
		t.Errorf("node-a's taints after: %v, want only %s", got, other.Key)
	}
	if removed, err := api.RemoveTaints(ctx, "node-a", agent.StartupTaintKey); err != nil || removed != 0 {
		t.Errorf("again: removed %d: %v", removed, err)
	}

	// Anything else, on its own node, is refused.
	for name, patch := range map[string]string{
		"another taint removed": `{"spec":{"taints":null}}`,
		"a label":               `{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":""}}}`,
		"cordoned":              `{"spec":{"unschedulable":true}}`,
	} {
		_, err := asAgent.CoreV1().Nodes().Patch(ctx, "node-a", types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		if err == nil || !strings.Contains(err.Error(), "podid-agent may only remove the taint "+agent.StartupTaintKey) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if got := taintsOf(t, "node-a"); len(got) != 1 || got[0].Key != other.Key {
		t.Errorf("node-a's taints: %v", got)
	}
}

// agentOnNode is the API server as node's agent reaches it: with a token
// bound to its pod there, so the API server knows the node.
func agentOnNode(t *testing.T, node string) (*agent.APIServer, *kubernetes.Clientset) {
	t.Helper()
	cs := clientset()
	tr, err := cs.CoreV1().ServiceAccounts(agentNamespace).CreateToken(t.Context(), "podid-agent", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: ptr.To(int64(3600)),
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "podid-agent-" + node, UID: agentPodUID(t, node)},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{Host: cluster.Config.Host, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: cluster.Config.CAData}}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	asAgent, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &agent.APIServer{Host: strings.TrimSuffix(cluster.Config.Host, "/"), Client: hc}, asAgent
}

func agentPodUID(t *testing.T, node string) types.UID {
	t.Helper()
	pod, err := clientset().CoreV1().Pods(agentNamespace).Get(t.Context(), "podid-agent-"+node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pod.UID
}

func setTaints(t *testing.T, node string, taints ...corev1.Taint) {
	t.Helper()
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"taints": taints}})
	if _, err := clientset().CoreV1().Nodes().Patch(t.Context(), node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		clientset().CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, []byte(`{"spec":{"taints":null}}`), metav1.PatchOptions{})
	})
}

func taintsOf(t *testing.T, node string) []corev1.Taint {
	t.Helper()
	n, err := clientset().CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return slices.Clone(n.Spec.Taints)
}

// An agent keeps its node free of the startup taint while it serves: the
// taint put back (or the node registered anew with it) is removed again.
// Under an earlier chart's RBAC, without watch on nodes, it still removes
// the taint once, and says what it cannot do.
func TestAgentKeepsItsNodeUntainted(t *testing.T) {
	install(t, agentpolicy.Policy(agentNamespace), agentpolicy.Binding())
	agentUser := "system:serviceaccount:" + agentNamespace + ":podid-agent"
	grant(t, "", "podid-agent-pods", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch"}}, agentUser)
	grant(t, "", "podid-agent-nodes", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"patch", "get"}}, agentUser)
	api, _ := agentOnNode(t, "node-a")
	startupTaint := corev1.Taint{Key: agent.StartupTaintKey, Effect: corev1.TaintEffectNoSchedule}
	untainted := func(ctx context.Context) (bool, error) { return len(taintsOf(t, "node-a")) == 0, nil }

	run := func(t *testing.T) (*lockedBuffer, func()) {
		var log lockedBuffer
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := agent.New(agent.Options{Node: "node-a", Listeners: []net.Listener{l}, Cache: agent.NewCache(nil, agent.CacheOptions{}),
			APIServer: api, StartupTaint: agent.StartupTaintKey, Log: slog.New(slog.NewTextHandler(&log, nil))})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		return &log, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
		}
	}

	t.Run("without watch on nodes", func(t *testing.T) {
		setTaints(t, "node-a", startupTaint)
		log, stop := run(t)
		defer stop()
		eventually(t, "the agent to remove the startup taint", untainted)
		eventually(t, "the agent to say it cannot watch its node", func(context.Context) (bool, error) {
			return strings.Contains(log.String(), "cannot watch this node"), nil
		})
	})

	t.Run("with watch on nodes", func(t *testing.T) {
		grant(t, "", "podid-agent-nodes-watch", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"watch"}}, agentUser)
		setTaints(t, "node-a", startupTaint)
		log, stop := run(t)
		defer stop()
		eventually(t, "the agent to remove the startup taint", untainted)
		for range 2 {
			setTaints(t, "node-a", startupTaint)
			eventually(t, "the agent to remove the startup taint put back", untainted)
		}
		if got := strings.Count(log.String(), "has the startup taint again"); got != 2 {
			t.Errorf("the agent logged %d removals of the taint put back, want 2:\n%s", got, log.String())
		}
		if strings.Contains(log.String(), "cannot watch") {
			t.Errorf("the agent could not watch its node:\n%s", log.String())
		}
	})
}

// lockedBuffer is a log the agent writes while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
