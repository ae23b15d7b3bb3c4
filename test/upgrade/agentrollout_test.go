package upgrade

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/podid/podid/test/harness/localcluster"
)

// The chart surges the agent's rollouts only once the running agents can
// share their addresses: upgrading over a DaemonSet of an earlier podid
// (no podid.io/agent-handover annotation) renders the old strategy, which
// stops each agent before starting its replacement (a surge would wait
// forever for a new agent that cannot bind); over one that carries the
// annotation, and on a fresh install, it surges. Helm's lookup is what
// decides, so this renders against a real API server.
func TestAgentRolloutAfterAnUpgrade(t *testing.T) {
	cluster, err := localcluster.Start(localcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Stop() })
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(kubeconfig, cluster.Kubeconfig, 0o600)
	const ns = "podid-system"
	if err := cluster.Client.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}

	if got := renderedAgentStrategy(t, kubeconfig, ns); got.MaxSurge == nil || got.MaxSurge.String() != "10%" || got.MaxUnavailable.String() != "0" {
		t.Errorf("fresh install: %+v, want a surge", got)
	}

	labels := map[string]string{"app": "podid-agent"}
	earlier := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "podid-agent"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "podid:0.1.0"}}, TerminationGracePeriodSeconds: ptr.To[int64](1)}},
		},
	}
	if err := cluster.Client.Create(t.Context(), earlier); err != nil {
		t.Fatal(err)
	}
	if got := renderedAgentStrategy(t, kubeconfig, ns); got.MaxSurge != nil || got.MaxUnavailable.String() != "10%" {
		t.Errorf("over an earlier podid's agents: %+v, want the old way (maxUnavailable, no surge)", got)
	}

	earlier.Annotations = map[string]string{"podid.io/agent-handover": "reuseport"}
	if err := cluster.Client.Update(t.Context(), earlier); err != nil {
		t.Fatal(err)
	}
	if got := renderedAgentStrategy(t, kubeconfig, ns); got.MaxSurge == nil || got.MaxSurge.String() != "10%" {
		t.Errorf("over agents that share their addresses: %+v, want a surge", got)
	}
}

// renderedAgentStrategy renders the chart as `helm upgrade` would against
// the cluster (lookup on) and returns the agent's rolling update.
func renderedAgentStrategy(t *testing.T, kubeconfig, ns string) appsv1.RollingUpdateDaemonSet {
	t.Helper()
	helm, err := filepath.Abs("../../bin/helm")
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command(helm, "template", "podid", "../../charts/podid", "--dry-run=server", "--kube-version", "1.37.2", "--kubeconfig", kubeconfig, "--namespace", ns,
		"--set", "clusterName=upgrade,accountId=111122223333,region=eu-west-1", "--show-only", "templates/agent.yaml")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm template --dry-run=server: %v\n%s", err, errOut.String())
	}
	var ds appsv1.DaemonSet
	if err := sigsyaml.Unmarshal([]byte(strings.TrimPrefix(out.String(), "---\n")), &ds); err != nil {
		t.Fatal(err)
	}
	if ds.Spec.UpdateStrategy.RollingUpdate == nil {
		t.Fatalf("no rolling update in\n%s", out.String())
	}
	return *ds.Spec.UpdateStrategy.RollingUpdate
}
