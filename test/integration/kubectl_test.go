package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/podid/podid/test/harness/localcluster"
)

// kubectl runs the pinned kubectl (hack/tools.sh kubectl) as the cluster's
// administrator and returns its stdout and stderr.
func kubectl(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	assets, err := localcluster.FindAssets()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(assets, "kubectl")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("kubectl is not in %s: run hack/tools.sh kubectl (make tools does)", assets)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, cluster.Kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	return stdout.String(), stderr.String(), err
}

// TestKubectlClusterAssociations drives associations through kubectl as an
// administrator would: one multi-document apply holding a cluster
// association for a namespace that does not exist and a namespace's own,
// explain, get with the printer columns, and a refusal's message; the EKS
// API sees what kubectl made.
func TestKubectlClusterAssociations(t *testing.T) {
	ctx := t.Context()
	ns := newNamespace(t)
	later := "kubectl-later-" + rand.String(5)
	t.Cleanup(func() { deleteClusterAssociations(t, later) })
	manifest := `apiVersion: podid.io/v1alpha1
kind: ClusterPodIdentityAssociation
metadata:
  name: ` + later + `.app
spec:
  namespace: ` + later + `
  serviceAccount: app
  roleArn: arn:aws:iam::111122223333:role/app
  tags: {team: payments}
---
apiVersion: podid.io/v1alpha1
kind: PodIdentityAssociation
metadata:
  namespace: ` + ns + `
  name: web
spec:
  serviceAccount: web
  roleArn: arn:aws:iam::111122223333:role/web
`
	out, errOut, err := kubectl(t, manifest, "apply", "-f", "-")
	if err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, errOut)
	}
	for _, want := range []string{"clusterpodidentityassociation.podid.io/" + later + ".app created", "podidentityassociation.podid.io/web created"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl apply printed %q, want %q", out, want)
		}
	}

	var id string
	eventually(t, "the controller to report the missing namespace", func(context.Context) (bool, error) {
		out, _, err := kubectl(t, "", "get", "clusterpodidentityassociation", later+".app", "-o", "jsonpath={.status.associationId} {.status.conditions[0].reason}")
		id, _, _ = strings.Cut(out, " ")
		return err == nil && strings.HasSuffix(out, " NamespaceNotFound"), nil
	})
	d, err := eksClient(eksAdminKey).DescribePodIdentityAssociation(ctx, &eks.DescribePodIdentityAssociationInput{ClusterName: eksCluster, AssociationId: aws.String(id)})
	if err != nil || *d.Association.Namespace != later || d.Association.Tags["team"] != "payments" {
		t.Fatalf("the EKS API's view of what kubectl made: %+v, %v", d, err)
	}

	out, _, err = kubectl(t, "", "get", "cpia", later+".app")
	if err != nil || !strings.Contains(out, "NAMESPACE") || !strings.Contains(out, "SERVICE ACCOUNT") || !strings.Contains(out, "NamespaceNotFound") {
		t.Errorf("kubectl get cpia printed %q (%v)", out, err)
	}
	out, _, err = kubectl(t, "", "explain", "clusterpodidentityassociation.spec.namespace")
	if err != nil || !strings.Contains(out, "need not exist") {
		t.Errorf("kubectl explain printed %q (%v)", out, err)
	}

	bad := strings.Replace(manifest[:strings.Index(manifest, "---")], "team: payments", "aws:team: payments", 1)
	bad = strings.Replace(bad, later+".app", later+".bad", 1)
	bad = strings.Replace(bad, "serviceAccount: app", "serviceAccount: bad", 1)
	if _, errOut, err := kubectl(t, bad, "apply", "-f", "-"); err == nil || !strings.Contains(errOut, "tag keys starting with 'aws:' are reserved for AWS") {
		t.Errorf("kubectl apply of an aws: tag: %v\n%s", err, errOut)
	}
}
