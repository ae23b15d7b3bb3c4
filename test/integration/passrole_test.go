package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/passrole"
)

// podid's PassRole: a namespace's association admin who may not use a role
// is refused, with the missing permission named, through the API server
// (as kubectl), the CLI and the EKS API; granted, each works; a cluster
// administrator is not affected.
func TestPassRole(t *testing.T) {
	ctx := t.Context()
	install(t, passrole.Policy(), passrole.Binding())
	const user = "passrole-admin"
	ns := newNamespace(t)
	grant(t, ns, "associations", rbacv1.PolicyRule{APIGroups: []string{"podid.io"}, Resources: []string{"podidentityassociations"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}}, user)
	alice, err := cluster.AddUser(user)
	if err != nil {
		t.Fatal(err)
	}
	asAlice := alice.Client
	kubeconfig := filepath.Join(t.TempDir(), "alice.kubeconfig")
	os.WriteFile(kubeconfig, alice.Kubeconfig, 0o600)
	role := "arn:aws:iam::111122223333:role/passrole/billing"
	target := "arn:aws:iam::444455556666:role/billing-target"
	want := user + " may not use IAM role " + role + " in namespace " + ns + `: podid requires RBAC verb "use" on resource "roles" of API group podid.io with resourceNames ["` + role + `"]`

	// The policy takes a moment to reach the API server's admission.
	eventually(t, "the PassRole policy to refuse", func(ctx context.Context) (bool, error) {
		err := asAlice.Create(ctx, newAssociation(ns, "probe", role))
		if err == nil {
			asAlice.Delete(ctx, newAssociation(ns, "probe", role))
		}
		return err != nil && strings.Contains(err.Error(), want), nil
	})
	// The CLI, with alice's kubeconfig.
	out, errOut, err := podidAs(t, kubeconfig, "association", "create", "-n", ns, "--service-account", "cli", "--role-arn", role, "--wait", "0s")
	if err == nil || !strings.Contains(err.Error()+errOut, want) {
		t.Errorf("CLI: %v\n%s%s", err, out, errOut)
	}
	// The EKS API, whose key acts as alice.
	_, err = eksClient(passRoleKey).CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{
		ClusterName: eksCluster, Namespace: aws.String(ns), ServiceAccount: aws.String("eks"), RoleArn: aws.String(role)})
	if err == nil || !strings.Contains(err.Error(), "may not use IAM role "+role) {
		t.Errorf("EKS API: %v", err)
	}
	// A cluster administrator is not affected.
	admin := newAssociation(ns, "admin", role)
	if err := k8s.Create(ctx, admin); err != nil {
		t.Errorf("cluster administrator: %v", err)
	}

	// Granted the role: each works. The target role is a permission of
	// its own.
	grant(t, ns, "use-billing", rbacv1.PolicyRule{APIGroups: []string{passrole.Group}, Resources: []string{passrole.Resource}, Verbs: []string{passrole.Verb}, ResourceNames: []string{role}}, user)
	eventually(t, "the grant to take effect", func(ctx context.Context) (bool, error) {
		return asAlice.Create(ctx, newAssociation(ns, "kubectl", role)) == nil, nil
	})
	if _, errOut, err := podidAs(t, kubeconfig, "association", "create", "-n", ns, "--service-account", "cli", "--role-arn", role, "--wait", "0s"); err != nil {
		t.Errorf("CLI, granted: %v\n%s", err, errOut)
	}
	if _, err := eksClient(passRoleKey).CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{
		ClusterName: eksCluster, Namespace: aws.String(ns), ServiceAccount: aws.String("eks"), RoleArn: aws.String(role)}); err != nil {
		t.Errorf("EKS API, granted: %v", err)
	}
	withTarget := newAssociation(ns, "target", role)
	withTarget.Spec.TargetRoleARN = target
	if err := asAlice.Create(ctx, withTarget); err == nil || !strings.Contains(err.Error(), "may not use target IAM role "+target) {
		t.Errorf("an ungranted target role: %v", err)
	}

	// Updates: unchanged roles need nothing more; another role does.
	var pia = newAssociation(ns, "kubectl", role)
	if err := asAlice.Get(ctx, client.ObjectKeyFromObject(pia), pia); err != nil {
		t.Fatal(err)
	}
	pia.Spec.DisableSessionTags = true
	if err := asAlice.Update(ctx, pia); err != nil {
		t.Errorf("an update keeping the role: %v", err)
	}
	// The controller writes the status of the first update meanwhile: read
	// again on a conflict, so that the refusal tested is the policy's.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := asAlice.Get(ctx, client.ObjectKeyFromObject(pia), pia); err != nil {
			return err
		}
		pia.Spec.RoleARN = "arn:aws:iam::111122223333:role/other"
		return asAlice.Update(ctx, pia)
	})
	if err == nil || !strings.Contains(err.Error(), "may not use IAM role arn:aws:iam::111122223333:role/other") {
		t.Errorf("an update to an ungranted role: %v", err)
	}

	// Widening a session is as much a grant as naming its role: an
	// administrator narrowed this association with a session policy; alice
	// may update associations but not use its role, so she may neither
	// clear the policy nor turn the session tags off (that trust
	// conditions may rely on), through kubectl or the EKS API.
	narrowedRole := "arn:aws:iam::111122223333:role/passrole/narrowed"
	narrowed := newAssociation(ns, "narrowed", narrowedRole)
	narrowed.Spec.Policy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::reports/*"}]}`
	if err := k8s.Create(ctx, narrowed); err != nil {
		t.Fatal(err)
	}
	widen := func(change func(*v1alpha1.PodIdentityAssociation)) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			pia := &v1alpha1.PodIdentityAssociation{}
			if err := asAlice.Get(ctx, client.ObjectKeyFromObject(narrowed), pia); err != nil {
				return err
			}
			change(pia)
			return asAlice.Update(ctx, pia)
		})
	}
	refusal := "may not use IAM role " + narrowedRole + " in namespace " + ns
	if err := widen(func(p *v1alpha1.PodIdentityAssociation) { p.Spec.Policy = "" }); err == nil || !strings.Contains(err.Error(), refusal) ||
		!strings.Contains(err.Error(), "change its roleArn, targetRoleArn, policy or disableSessionTags") {
		t.Errorf("clearing the session policy without use: %v", err)
	}
	if err := widen(func(p *v1alpha1.PodIdentityAssociation) { p.Spec.DisableSessionTags = true }); err == nil || !strings.Contains(err.Error(), refusal) {
		t.Errorf("turning session tags off without use: %v", err)
	}
	if err := widen(func(p *v1alpha1.PodIdentityAssociation) { p.Labels = map[string]string{"team": "a"} }); err != nil {
		t.Errorf("a change that leaves the session alone: %v", err)
	}
	var got v1alpha1.PodIdentityAssociation
	k8s.Get(ctx, client.ObjectKeyFromObject(narrowed), &got)
	_, err = eksClient(passRoleKey).UpdatePodIdentityAssociation(ctx, &eks.UpdatePodIdentityAssociationInput{
		ClusterName: eksCluster, AssociationId: aws.String(association.IDFor(got.UID)), Policy: aws.String("")})
	if err == nil || !strings.Contains(err.Error(), refusal) {
		t.Errorf("EKS API, clearing the policy without use: %v", err)
	}
	k8s.Get(ctx, client.ObjectKeyFromObject(narrowed), &got)
	if got.Spec.Policy != narrowed.Spec.Policy || got.Spec.DisableSessionTags {
		t.Errorf("the narrowed association was widened: %+v", got.Spec)
	}
}

// grant binds user to a Role of rule in ns.
// With ns "", it binds a ClusterRole cluster-wide (deleted after the test).
func grant(t *testing.T, ns, name string, rule rbacv1.PolicyRule, user string) {
	t.Helper()
	ctx := t.Context()
	subjects := []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}}
	var role, binding client.Object
	if ns == "" {
		role = &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{rule}}
		binding = &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}, Subjects: subjects}
		t.Cleanup(func() {
			k8s.Delete(context.WithoutCancel(ctx), binding)
			k8s.Delete(context.WithoutCancel(ctx), role)
		})
	} else {
		role = &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: []rbacv1.PolicyRule{rule}}
		binding = &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}, Subjects: subjects}
	}
	for _, obj := range []client.Object{role, binding} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	// The authorizer learns of RBAC changes asynchronously: wait until it
	// allows what was granted, so that the caller's next request is judged
	// by the grant.
	attrs := &authorizationv1.ResourceAttributes{Namespace: ns, Verb: rule.Verbs[0], Group: rule.APIGroups[0], Resource: rule.Resources[0]}
	if len(rule.ResourceNames) > 0 {
		attrs.Name = rule.ResourceNames[0]
	}
	eventually(t, "the grant of "+name+" to "+user+" to take effect", func(ctx context.Context) (bool, error) {
		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user, ResourceAttributes: attrs}}
		if err := k8s.Create(ctx, review); err != nil {
			return false, err
		}
		return review.Status.Allowed, nil
	})
}

// install creates an admission policy and its binding for the test.
func install(t *testing.T, policy *admissionregistrationv1.ValidatingAdmissionPolicy, binding *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	t.Helper()
	if err := k8s.Create(t.Context(), policy); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(t.Context(), binding); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		k8s.Delete(context.Background(), binding)
		k8s.Delete(context.Background(), policy)
	})
}

// PassRole holds for cluster associations too: a user who may create
// ClusterPodIdentityAssociations names only roles RBAC lets them use, in
// the association's namespace (so, for a namespace not created yet,
// through a ClusterRoleBinding), through kubectl and the EKS API alike.
func TestPassRoleForClusterAssociations(t *testing.T) {
	ctx := t.Context()
	install(t, passrole.Policy(), passrole.Binding())
	const user = "cluster-passrole-admin"
	suffix := rand.String(5)
	ns := "passrole-later-" + suffix
	t.Cleanup(func() { deleteClusterAssociations(t, ns) })
	grant(t, "", "cluster-associations-"+suffix, rbacv1.PolicyRule{APIGroups: []string{"podid.io"}, Resources: []string{"clusterpodidentityassociations"},
		Verbs: []string{"create", "get", "list", "update"}}, user)
	alice, err := cluster.AddUser(user)
	if err != nil {
		t.Fatal(err)
	}
	role := "arn:aws:iam::111122223333:role/passrole/platform-" + suffix
	want := user + " may not use IAM role " + role + " in namespace " + ns

	eventually(t, "the PassRole policy to refuse a cluster association", func(ctx context.Context) (bool, error) {
		err := alice.Client.Create(ctx, v1alpha1.NewClusterAssociation(newAssociation(ns, "probe", role)))
		return err != nil && strings.Contains(err.Error(), want), nil
	})
	// The EKS API does not fall back to a namespaced association when
	// PassRole refuses (only when RBAC does), and says why.
	_, err = eksClient(clusterPassRoleKey).CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{
		ClusterName: eksCluster, Namespace: aws.String(ns), ServiceAccount: aws.String("eks"), RoleArn: aws.String(role)})
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("EKS API: %v", err)
	}

	grant(t, "", "use-platform-"+suffix, rbacv1.PolicyRule{APIGroups: []string{passrole.Group}, Resources: []string{passrole.Resource},
		Verbs: []string{passrole.Verb}, ResourceNames: []string{role}}, user)
	eventually(t, "the grant to take effect", func(ctx context.Context) (bool, error) {
		return alice.Client.Create(ctx, v1alpha1.NewClusterAssociation(newAssociation(ns, "kubectl", role))) == nil, nil
	})
	created, err := eksClient(clusterPassRoleKey).CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{
		ClusterName: eksCluster, Namespace: aws.String(ns), ServiceAccount: aws.String("eks"), RoleArn: aws.String(role)})
	if err != nil {
		t.Fatalf("EKS API, granted: %v", err)
	}
	var got v1alpha1.ClusterPodIdentityAssociation
	if err := k8s.Get(ctx, client.ObjectKey{Name: ns + ".eks"}, &got); err != nil || association.IDFor(got.UID) != *created.Association.AssociationId {
		t.Fatalf("the EKS API's association is not the cluster object %s.eks: %v", ns, err)
	}
}
