package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/iamrole"
	"github.com/podid/podid/internal/migrate"
)

// namespaceEditor is a user given the standard `edit` role in ns only, as
// multi-tenant clusters give every team: a client acting as them, and
// their kubeconfig file. `edit` is aggregated by kube-controller-manager,
// which this API server runs without, so the user is bound to the roles it
// aggregates, which are its rules.
func namespaceEditor(t *testing.T, ns, user string) (client.Client, string) {
	t.Helper()
	for _, role := range []string{"system:aggregate-to-edit", "system:aggregate-to-view"} {
		if err := k8s.Create(t.Context(), &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user + "-" + strings.TrimPrefix(role, "system:")},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}}}); err != nil {
			t.Fatal(err)
		}
	}
	u, err := cluster.AddUser(user)
	if err != nil {
		t.Fatal(err)
	}
	c := u.Client
	// The binding takes a moment to reach the API server's authorizer.
	eventually(t, user+"'s edit role to take effect", func(ctx context.Context) (bool, error) {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: "update", Resource: "serviceaccounts"}}}
		if err := c.Create(ctx, review); err != nil {
			return false, err
		}
		return review.Status.Allowed, nil
	})
	kubeconfig := filepath.Join(t.TempDir(), user+".kubeconfig")
	if err := os.WriteFile(kubeconfig, u.Kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	return c, kubeconfig
}

// adminRole is a role no tenant was given: its account's administrators
// may assume it, and it trusts podid server without a condition (as roles
// made for EKS Pod Identity by hand often do), so any association naming it
// would hand it out.
func adminRole(t *testing.T, name string) (arn, trust string) {
	trust = `{"Version":"2012-10-17","Statement":[{"Sid":"Admins","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole"},` +
		`{"Sid":"Podid","Effect":"Allow","Principal":{"AWS":"` + serverARN + `"},"Action":["sts:AssumeRole","sts:TagSession"]}]}`
	return createRole(t, name, trust), trust
}

// A namespace editor annotates ServiceAccounts with an administrator's
// role, and forges a record that says the trust step was done; the
// administrator's bulk migration verifies each role's IRSA trust and
// writes nothing for them: no trust statement, no association.
func TestMigrateRefusesRolesTheServiceAccountWasNotGiven(t *testing.T) {
	ctx := t.Context()
	serverIdentity(t)
	ns := newNamespace(t)
	mallory, _ := namespaceEditor(t, ns, "mallory-migrate")
	role, trust := adminRole(t, "tenancy-admin-"+ns[len(ns)-5:])

	// The tenant's own writes, with the `edit` role.
	if err := mallory.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sneaky",
		Annotations: map[string]string{"eks.amazonaws.com/role-arn": role}}}); err != nil {
		t.Fatalf("the editor could not write the annotation: %v", err)
	}
	forged, _ := json.Marshal(migrate.Record{Seq: 1, RoleARN: role, Annotations: map[string]string{}, Done: []migrate.Step{migrate.StepTrust}})
	if err := mallory.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "forged",
		Annotations: map[string]string{migrate.AnnotationRecord: string(forged)}}}); err != nil {
		t.Fatal(err)
	}
	provider := "arn:aws:iam::111122223333:oidc-provider/" + clusterIssuer(t)
	writes := emu.IAMWrites()

	out, errOut, err := podid(t, "migrate", "irsa", "-n", ns)
	if err != nil {
		t.Fatalf("plan: %v\n%s%s", err, out, errOut)
	}
	for _, sa := range []string{"sneaky", "forged"} {
		want := ns + "/" + sa + " (role " + role + "):\n  ✗ not verified: role " + role + "'s trust does not admit system:serviceaccount:" + ns + ":" + sa + " through " + provider
		if !strings.Contains(out, want) {
			t.Errorf("the plan does not refuse %s with %q:\n%s", sa, want, out)
		}
	}
	if !strings.Contains(out, "plan: 2 ServiceAccount(s), 2 cannot be migrated") || strings.Contains(out, "association: create") {
		t.Errorf("the plan promises what the apply refuses:\n%s", out)
	}

	out, errOut, err = podid(t, "migrate", "irsa", "-n", ns, "--approve", "--remove-oidc-trust", "--remove-annotation")
	if err == nil || !strings.Contains(err.Error(), "2 ServiceAccount(s) could not be migrated") ||
		!strings.Contains(out, ns+"/sneaky: skipped: not verified") || !strings.Contains(out, "run again with --allow-unverified "+ns+"/sneaky") {
		t.Fatalf("apply: %v\n%s%s", err, out, errOut)
	}
	if n := emu.IAMWrites() - writes; n != 0 {
		t.Errorf("the refused migration made %d IAM writes", n)
	}
	if got := trustOf(t, "tenancy-admin-"+ns[len(ns)-5:]); got != trust {
		t.Errorf("the administrator's role's trust changed:\n%s", got)
	}
	var pias v1alpha1.PodIdentityAssociationList
	if err := k8s.List(ctx, &pias, client.InNamespace(ns)); err != nil || len(pias.Items) != 0 {
		t.Errorf("associations in the tenant's namespace: %d (%v)", len(pias.Items), err)
	}
	var sa corev1.ServiceAccount
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "sneaky"}, &sa); err != nil || sa.Annotations[migrate.AnnotationRecord] != "" {
		t.Errorf("the refused ServiceAccount got a record: %v %v", sa.Annotations, err)
	}

	// An administrator who knows better says so, by name, and the plan
	// prints it.
	out, _, _ = podid(t, "migrate", "irsa", "-n", ns, "--service-account", "sneaky", "--allow-unverified", ns+"/sneaky")
	if !strings.Contains(out, "! not verified: role "+role) || !strings.Contains(out, "migrated because you passed --allow-unverified "+ns+"/sneaky") || !strings.Contains(out, "association: create") {
		t.Errorf("the plan with --allow-unverified:\n%s", out)
	}
}

// A namespace editor forges the migration record on a ServiceAccount,
// naming an administrator's role and a trust policy that admits another
// AWS account; the administrator's rollback writes none of it and says so.
// On a genuinely migrated ServiceAccount whose record the editor altered,
// rollback undoes the migration and still writes nothing of the alteration.
func TestRollbackWritesNothingAForgedRecordHolds(t *testing.T) {
	ctx := t.Context()
	id := serverIdentity(t)
	ns := newNamespace(t)
	suffix := ns[len(ns)-5:]
	mallory, _ := namespaceEditor(t, ns, "mallory-rollback")
	role, trust := adminRole(t, "tenancy-rb-admin-"+suffix)
	const foreign = `{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"sts:AssumeRole"}`
	evil := `{"Version":"2012-10-17","Statement":[` + foreign + `]}`

	// A record as a real migration writes it, with the role's current trust
	// as trustAfter (which the editor learns from any Terraform module), so
	// that a rollback trusting the record would write trustBefore.
	forged, _ := json.Marshal(migrate.Record{Seq: 1, RoleARN: role, Annotations: map[string]string{"eks.amazonaws.com/role-arn": role},
		TrustBefore: evil, TrustAfter: trust, Done: []migrate.Step{migrate.StepTrust, migrate.StepRemoveOIDCTrust}})
	if err := mallory.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "victim",
		Annotations: map[string]string{migrate.AnnotationRecord: string(forged)}}}); err != nil {
		t.Fatal(err)
	}

	// A ServiceAccount migrated for real, whose record the editor then
	// alters to add the foreign statement to trustBefore.
	appTrust := irsaTrust(t, ns, "app")
	createRole(t, "tenancy-rb-app-"+suffix, appTrust)
	appRole := "arn:aws:iam::111122223333:role/tenancy-rb-app-" + suffix
	irsaServiceAccount(t, ns, "app", appRole, nil)
	if out, errOut, err := podid(t, "migrate", "irsa", "-n", ns, "--service-account", "app", "--approve", "--remove-oidc-trust"); err != nil {
		t.Fatalf("migrating app: %v\n%s%s", err, out, errOut)
	}
	var sa corev1.ServiceAccount
	if err := mallory.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, &sa); err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	json.Unmarshal([]byte(sa.Annotations[migrate.AnnotationRecord]), &rec)
	rec["trustBefore"] = strings.Replace(rec["trustBefore"].(string), `"Statement": [`, `"Statement": [`+foreign+`,`, 1)
	altered, _ := json.Marshal(rec)
	sa.Annotations[migrate.AnnotationRecord] = string(altered)
	if err := mallory.Update(ctx, &sa); err != nil {
		t.Fatalf("the editor could not alter the record: %v", err)
	}

	writes := emu.IAMWrites()
	out, errOut, err := podid(t, "migrate", "rollback", "-n", ns)
	if err != nil {
		t.Fatalf("rollback plan: %v\n%s%s", err, out, errOut)
	}
	for _, want := range []string{
		ns + "/victim (role " + role + "): roll back [trust remove-oidc-trust]\n  trust: nothing to write\n  ✗ not written: statement 1 of the record's trustBefore is not in the role, and the role has no podid statement for " + ns + "/victim",
		ns + "/app (role " + appRole + "): roll back [trust association remove-oidc-trust]\n  trust of " + appRole + ": remove podid's statement " + iamrole.StatementID(iamrole.Association{Cluster: id.Cluster.ClusterName, Namespace: ns, ServiceAccount: "app"}) + "; put back 1 OIDC statement(s) for system:serviceaccount:" + ns + ":app",
		"✗ not written: statement 1 of the record's trustBefore (" + foreign + ") is not in the role and is not " + ns + "/app's own OIDC statement",
		"plan: 2 ServiceAccount(s) to roll back, 2 with something rollback will not write",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the rollback plan lacks %q:\n%s", want, out)
		}
	}
	if emu.IAMWrites() != writes {
		t.Fatal("the rollback plan wrote to IAM")
	}

	out, errOut, err = podid(t, "migrate", "rollback", "-n", ns, "--approve")
	if err == nil || !strings.Contains(err.Error(), "2 record(s) held what rollback does not write") {
		t.Fatalf("rollback: %v\n%s%s", err, out, errOut)
	}
	if got := trustOf(t, "tenancy-rb-admin-"+suffix); got != trust {
		t.Errorf("the administrator's role's trust was written:\n%s", got)
	}
	got := trustOf(t, "tenancy-rb-app-"+suffix)
	if strings.Contains(got, "444455556666") || strings.Contains(got, "PodidAssociation") || !strings.Contains(got, "system:serviceaccount:"+ns+":app") || !strings.Contains(got, `"Sid":"Ops"`) {
		t.Errorf("the migrated role's trust after rollback:\n%s", got)
	}
	if n := emu.IAMWrites() - writes; n != 1 {
		t.Errorf("%d IAM writes; want 1 (the migrated role's inverse)", n)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "victim"}, &sa); err != nil || sa.Annotations[migrate.AnnotationRecord] == "" {
		t.Errorf("the forged record is not left for the administrator to read: %v", err)
	}
}
