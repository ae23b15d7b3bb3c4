package integration

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/smithy-go"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podid/podid/internal/associationstore"
	"github.com/podid/podid/internal/cli"
	"github.com/podid/podid/internal/iampolicy"
	"github.com/podid/podid/internal/podevents"
	"github.com/podid/podid/internal/serveridentity"
)

// guideTrust is a trust policy as a guide prints it (test/guides).
func guideTrust(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "guides", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// roleTrust is the role's trust policy as IAM has it now, canonical.
func roleTrust(t *testing.T, name string) string {
	t.Helper()
	return canonicalDoc(t, trustOf(t, name))
}

func canonicalDoc(t *testing.T, doc string) string {
	t.Helper()
	d, err := iampolicy.ParseDocument(doc)
	if err != nil {
		t.Fatal(err)
	}
	return iampolicy.Canonical(json.RawMessage(d.String()))
}

// A role made by following JFrog's guide to the letter trusts only
// pods.eks.amazonaws.com: podid server is refused, and the pod's Event
// names the command. `podid role trust` plans, refuses a namespace editor
// who may not use the role, then with --approve adds podid's statement for
// that ServiceAccount and nothing else; the pod gets the role. Run again it
// changes nothing; `podid role untrust` gives the role its trust back.
func TestRoleThatTrustsEKS(t *testing.T) {
	serverIdentity(t)
	name := "jfrog-guide"
	guide := guideTrust(t, "000-jfrog-trust-pod-identity.json")
	roleARN := createRoleWithPath(t, name, "/guides/", guide)
	w := newWorkload(t, roleARN, nil)
	if _, err := exchange(t, agentClient("node-a"), w.token(t, w.pod)); !isAccessDenied(err) {
		t.Fatalf("before podid role trust: %v, want AccessDenied", err)
	}
	command := "podid role trust -n " + w.ns + " --service-account app --role-arn " + roleARN + " --approve"
	eventually(t, "the PodIdentityRoleDenied event", func(ctx context.Context) (bool, error) {
		for _, e := range podEvents(ctx, t, w) {
			if e.Reason == podevents.ReasonRoleAssumeDenied && strings.Contains(e.Note, command) {
				return true, nil
			}
		}
		return false, nil
	})

	// A namespace editor who may not use the role is refused before IAM.
	const user = "roletrust-editor"
	grant(t, w.ns, "associations", rbacv1.PolicyRule{APIGroups: []string{"podid.io"}, Resources: []string{"podidentityassociations"}, Verbs: []string{"*"}}, user)
	grant(t, agentNamespace, "identity-"+w.ns, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}, ResourceNames: []string{serveridentity.ConfigMapName}}, user)
	editor, err := cluster.AddUser(user)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "editor.kubeconfig")
	os.WriteFile(kubeconfig, editor.Kubeconfig, 0o600)
	writes := emu.IAMWrites()
	_, _, err = podidAs(t, kubeconfig, "role", "trust", "-n", w.ns, "--service-account", "app", "--role-arn", roleARN, "--approve")
	if err == nil || !strings.Contains(err.Error(), "you may not use IAM role "+roleARN+" in namespace "+w.ns) {
		t.Errorf("editor without use: %v", err)
	}

	// The plan changes nothing.
	out, errOut, err := podid(t, "role", "trust", "-n", w.ns, "--service-account", "app", "--role-arn", roleARN)
	if err != nil {
		t.Fatalf("plan: %v\n%s", err, errOut)
	}
	for _, want := range []string{"trusts EKS Pod Identity for " + w.ns + "/app (statement AllowEksAuthToAssumeRoleForPodIdentity)", "+ statement PodidAssociation", "the other 1 statement(s) are kept", "nothing was changed: run again with --approve"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	if emu.IAMWrites() != writes {
		t.Fatal("the refusal or the plan wrote to IAM")
	}

	out, errOut, err = podid(t, "role", "trust", "-n", w.ns, "--service-account", "app", "--role-arn", roleARN, "--approve")
	if err != nil || !strings.Contains(out, "trust policy is written") {
		t.Fatalf("--approve: %v\n%s%s", err, out, errOut)
	}
	got, err := exchange(t, agentClient("node-a"), w.token(t, w.pod))
	if err != nil {
		t.Fatalf("after podid role trust: %v", err)
	}
	if !strings.Contains(*got.AssumedRoleUser.Arn, ":assumed-role/"+name+"/") {
		t.Errorf("assumed %s", *got.AssumedRoleUser.Arn)
	}
	// Another namespace's pod is not let in by it.
	other := newWorkload(t, roleARN, nil)
	if _, err := exchange(t, agentClient("node-a"), other.token(t, other.pod)); !isAccessDenied(err) {
		t.Errorf("another namespace's pod: %v, want AccessDenied", err)
	}

	writes = emu.IAMWrites()
	out, _, err = podid(t, "role", "trust", "-n", w.ns, "--service-account", "app", "--role-arn", roleARN, "--approve")
	if err != nil || !strings.Contains(out, "nothing to do") || emu.IAMWrites() != writes {
		t.Errorf("again: %v, wrote %d\n%s", err, emu.IAMWrites()-writes, out)
	}

	out, _, err = podid(t, "role", "untrust", "-n", w.ns, "--service-account", "app", "--role-arn", roleARN, "--approve")
	if err != nil || !strings.Contains(out, "- statement PodidAssociation") {
		t.Fatalf("untrust: %v\n%s", err, out)
	}
	if got, want := roleTrust(t, name), canonicalDoc(t, guide); got != want {
		t.Errorf("after untrust the trust is\n%s\nwant the guide's\n%s", got, want)
	}
}

// The trust printed by the other guides: Upbound's (Crossplane) is taken
// as JFrog's is; the EKS overview's, without sts:TagSession, is refused
// (EKS Pod Identity could not use it either) with what to add, and
// nothing is written.
func TestGuideTrustPolicies(t *testing.T) {
	serverIdentity(t)
	ns := newNamespace(t)
	crossplane := createRole(t, "crossplane-guide", guideTrust(t, "002-crossplane-trust-policy.json"))
	out, errOut, err := podid(t, "role", "trust", "-n", ns, "--service-account", "provider-aws", "--role-arn", crossplane)
	if err != nil || !strings.Contains(out, "trusts EKS Pod Identity for "+ns+"/provider-aws (statement #1)") {
		t.Errorf("Crossplane's trust: %v\n%s%s", err, out, errOut)
	}
	overview := createRole(t, "overview-guide", guideTrust(t, "003-overview-trust.json"))
	writes := emu.IAMWrites()
	_, _, err = podid(t, "role", "trust", "-n", ns, "--service-account", "my-app", "--role-arn", overview, "--approve")
	if err == nil || !strings.Contains(err.Error(), "add sts:TagSession to statement #1") || !strings.Contains(err.Error(), "--allow-unverified") {
		t.Errorf("the overview's trust: %v", err)
	}
	if emu.IAMWrites() != writes {
		t.Error("a refused role trust wrote to IAM")
	}
}

// `association create --update-trust` adds podid's statement, creates the
// association and records it, so that delete removes exactly that
// statement again; a role that does not trust EKS Pod Identity for the
// ServiceAccount is refused before anything is made.
func TestAssociationCreateUpdatesTrust(t *testing.T) {
	serverIdentity(t)
	ctx := t.Context()
	ns := newNamespace(t)
	if err := k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}}); err != nil {
		t.Fatal(err)
	}
	name := "update-trust"
	guide := guideTrust(t, "000-jfrog-trust-pod-identity.json")
	roleARN := createRole(t, name, guide)
	out, errOut, err := podid(t, "association", "create", "-n", ns, "--service-account", "app", "--role-arn", roleARN, "--update-trust", "--wait", "10s")
	if err != nil {
		t.Fatalf("create --update-trust: %v\n%s%s", err, out, errOut)
	}
	if !strings.Contains(errOut, "added podid's statement for "+ns+"/app") {
		t.Errorf("create did not say it changed the trust:\n%s", errOut)
	}
	pia := getAssociation(t, ns, "app")
	if pia.Annotations[cli.AnnotationTrustedRole] != roleARN {
		t.Errorf("annotations %v", pia.Annotations)
	}
	waitIndexed(t, ns, "app", pia.Generation)
	w := &workload{ns: ns, sa: "app", pia: pia}
	w.pod = w.newPod(t, "app-0", "node-a")
	if _, err := exchange(t, agentClient("node-a"), w.token(t, w.pod)); err != nil {
		t.Fatalf("exchange: %v", err)
	}
	_, errOut, err = podid(t, "association", "delete", "-n", ns, "--service-account", "app")
	if err != nil || !strings.Contains(errOut, "removed podid's statement for "+ns+"/app from role "+roleARN) {
		t.Fatalf("delete: %v\n%s", err, errOut)
	}
	if got, want := roleTrust(t, name), canonicalDoc(t, guide); got != want {
		t.Errorf("after delete the trust is\n%s\nwant the guide's\n%s", got, want)
	}

	// Refused before anything is made.
	ci := createRole(t, "ci-only", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"sts:AssumeRole"}]}`)
	writes := emu.IAMWrites()
	_, _, err = podid(t, "association", "create", "-n", ns, "--service-account", "ci", "--role-arn", ci, "--update-trust", "--wait", "0s")
	if err == nil || !strings.Contains(err.Error(), "not verified") {
		t.Errorf("create --update-trust with a role not trusting EKS: %v", err)
	}
	if emu.IAMWrites() != writes {
		t.Error("the refusal wrote to IAM")
	}
	if _, err := associationstore.Get(ctx, k8s, ns, "ci"); !apierrors.IsNotFound(err) {
		t.Errorf("an association was created: %v", err)
	}
}

func isAccessDenied(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && (api.ErrorCode() == "AccessDeniedException" || api.ErrorCode() == "AccessDenied")
}
