package integration

import (
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/iamrole"
	"github.com/podid/podid/internal/migrate"
	"github.com/podid/podid/internal/token"
)

// irsaTrust is a trust policy as people write them: indented, an OIDC
// statement for one ServiceAccount through the cluster's provider, and
// another statement to keep.
func irsaTrust(t *testing.T, ns, sa string) string {
	return irsaTrustIn(t, identity.AccountID, ns, sa)
}

func irsaTrustIn(t *testing.T, account, ns, sa string) string {
	return irsaTrustOf(clusterIssuer(t), account, ns, sa)
}

// irsaTrustOf is irsaTrust through issuer's provider.
func irsaTrustOf(issuer, account, ns, sa string) string {
	return `{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Principal": {"Federated": "arn:aws:iam::` + account + `:oidc-provider/` + issuer + `"},
      "Action": "sts:AssumeRoleWithWebIdentity",
      "Condition": {"StringEquals": {
        "` + issuer + `:sub": "system:serviceaccount:` + ns + `:` + sa + `",
        "` + issuer + `:aud": "sts.amazonaws.com"}}
    },
    {"Sid": "Ops", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::` + account + `:user/admin"}, "Action": "sts:AssumeRole"}
  ]
}`
}

// clusterIssuer is the API server's ServiceAccount issuer as IAM names
// its OIDC provider: what IRSA roles of this cluster trust.
func clusterIssuer(t *testing.T) string {
	t.Helper()
	hc, err := rest.HTTPClientFor(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	d, err := token.Discover(t.Context(), hc, strings.TrimSuffix(cluster.Config.Host, "/"))
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := migrate.IssuerFromURL(d.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	return string(issuer)
}

func irsaServiceAccount(t *testing.T, ns, name, roleARN string, labels map[string]string) {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels,
		Annotations: map[string]string{"eks.amazonaws.com/role-arn": roleARN, "eks.amazonaws.com/token-expiration": "86400"}}}
	if err := k8s.Create(t.Context(), sa); err != nil {
		t.Fatal(err)
	}
}

func trustOf(t *testing.T, name string) string {
	t.Helper()
	out, err := iam.NewFromConfig(awsConfig(emuAdmin)).GetRole(t.Context(), &iam.GetRoleInput{RoleName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := url.QueryUnescape(*out.Role.AssumeRolePolicyDocument)
	return doc
}

func createRoleWithPath(t *testing.T, name, path, trust string) string {
	t.Helper()
	out, err := iam.NewFromConfig(awsConfig(emuAdmin)).CreateRole(t.Context(), &iam.CreateRoleInput{RoleName: aws.String(name), Path: aws.String(path), AssumeRolePolicyDocument: aws.String(trust)})
	if err != nil {
		t.Fatal(err)
	}
	return *out.Role.Arn
}

// The plan changes nothing; the apply migrates a role with a path, leaves
// one already migrated as it is and refuses a cross-account one clearly;
// a re-run changes nothing; rollback restores the trust documents byte for
// byte and the annotations.
func TestMigrateIRSA(t *testing.T) {
	id := serverIdentity(t)
	ctx := t.Context()
	suffix := newNamespace(t)
	suffix = suffix[len(suffix)-5:]
	label := map[string]string{"migrate": suffix}
	nsPath, nsDone, nsCross := newNamespace(t), newNamespace(t), newNamespace(t)

	// A role with a path, an OIDC statement for the ServiceAccount, and a
	// workload running as it.
	pathTrust := irsaTrust(t, nsPath, "app")
	pathRole := createRoleWithPath(t, "mig-path-"+suffix, "/irsa/team/", pathTrust)
	irsaServiceAccount(t, nsPath, "app", pathRole, label)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: nsPath, Name: "web"}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](1),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:1"}}}},
	}}
	if err := k8s.Create(ctx, dep); err != nil {
		t.Fatal(err)
	}
	// One already migrated: podid's statement in its trust, its association.
	done := iamrole.Association{Cluster: id.Cluster.ClusterName, Namespace: nsDone, ServiceAccount: "app"}
	doneTrust := iamrole.TrustPolicy(serverARN, done)
	doneRole := createRole(t, "mig-done-"+suffix, doneTrust)
	irsaServiceAccount(t, nsDone, "app", doneRole, label)
	if err := k8s.Create(ctx, newAssociation(nsDone, "app", doneRole)); err != nil {
		t.Fatal(err)
	}
	// Another account's role.
	crossRole := createRoleAs(t, otherAccountAdmin, "mig-cross-"+suffix, irsaTrustIn(t, otherAccountAdmin.Account, nsCross, "app"))
	irsaServiceAccount(t, nsCross, "app", crossRole, label)

	selector := "migrate=" + suffix
	snapshot := func() map[string]string {
		out := map[string]string{}
		var sas corev1.ServiceAccountList
		k8s.List(ctx, &sas, client.MatchingLabels(label))
		for _, sa := range sas.Items {
			out[sa.Namespace] = sa.ResourceVersion
		}
		return out
	}
	before, writes := snapshot(), emu.IAMWrites()
	out, errOut, err := podid(t, "migrate", "irsa", "-A", "-l", selector)
	if err != nil {
		t.Fatalf("plan: %v\n%s%s", err, out, errOut)
	}
	for _, want := range []string{
		nsPath + "/app (role " + pathRole + "):\n  role " + pathRole + " admits system:serviceaccount:" + nsPath + ":app through IRSA (statement #1)\n  trust: add podid's statement",
		"  OIDC trust", // not asked for: not planned
		nsDone + "/app (role " + doneRole + "):\n  role " + doneRole + " already trusts podid server for " + nsDone + "/app\n  trust: podid's statement for " + nsDone + "/app is there\n  association: exists",
		nsCross + "/app (role " + crossRole + "):\n  ✗ role " + crossRole + " is in account 444455556666, and your AWS credentials are for 111122223333",
		"plan: 3 ServiceAccount(s), 1 cannot be migrated; nothing was changed",
	} {
		if want == "  OIDC trust" {
			if strings.Contains(out, want) {
				t.Errorf("the plan removes OIDC trust it was not asked to:\n%s", out)
			}
			continue
		}
		if !strings.Contains(out, want) {
			t.Errorf("the plan lacks %q:\n%s", want, out)
		}
	}
	if emu.IAMWrites() != writes || !maps.Equal(snapshot(), before) {
		t.Fatalf("the plan changed something: %d IAM writes", emu.IAMWrites()-writes)
	}

	exportDir := t.TempDir()
	out, errOut, err = podid(t, "migrate", "irsa", "-A", "-l", selector, "--approve", "--remove-oidc-trust", "--remove-annotation", "--restart", "--wait", "30s", "--export", exportDir)
	if err == nil || !strings.Contains(err.Error(), "1 ServiceAccount(s) could not be migrated") || !strings.Contains(out, nsCross+"/app: skipped: role "+crossRole+" is in account 444455556666") || !strings.Contains(out, `"Sid":"PodidAssociation`) {
		t.Fatalf("apply: %v\n%s%s", err, out, errOut)
	}
	// The role with a path: podid's statement in, the OIDC one out, the
	// other kept.
	trust := trustOf(t, "mig-path-"+suffix)
	if !strings.Contains(trust, iamrole.StatementID(iamrole.Association{Cluster: id.Cluster.ClusterName, Namespace: nsPath, ServiceAccount: "app"})) || strings.Contains(trust, "AssumeRoleWithWebIdentity") || !strings.Contains(trust, `"Sid":"Ops"`) {
		t.Errorf("trust after migration: %s", trust)
	}
	var pia v1alpha1.PodIdentityAssociation
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: nsPath, Name: "app"}, &pia); err != nil || pia.Spec.RoleARN != pathRole {
		t.Fatalf("association: %+v %v", pia.Spec, err)
	}
	// What the migration left, exported for the GitOps and Terraform owners.
	exported := map[string]string{}
	for _, name := range []string{"associations.yaml", "eksctl.yaml", "terraform.tf"} {
		data, err := os.ReadFile(filepath.Join(exportDir, name))
		if err != nil {
			t.Fatalf("--export: %v\n%s", err, out)
		}
		exported[name] = string(data)
	}
	if !strings.Contains(exported["associations.yaml"], "namespace: "+nsPath) || !strings.Contains(exported["associations.yaml"], "roleArn: "+pathRole) ||
		strings.Contains(exported["associations.yaml"], "uid:") || strings.Contains(exported["associations.yaml"], "status:") {
		t.Errorf("associations.yaml:\n%s", exported["associations.yaml"])
	}
	if !strings.Contains(exported["eksctl.yaml"], "serviceAccountName: app\n    roleARN: "+pathRole) {
		t.Errorf("eksctl.yaml:\n%s", exported["eksctl.yaml"])
	}
	if !strings.Contains(exported["terraform.tf"], `id = "`+id.Cluster.ClusterName+","+association.IDFor(pia.UID)+`"`) || !strings.Contains(exported["terraform.tf"], `role_arn        = "`+pathRole+`"`) {
		t.Errorf("terraform.tf:\n%s", exported["terraform.tf"])
	}
	var sa corev1.ServiceAccount
	k8s.Get(ctx, client.ObjectKey{Namespace: nsPath, Name: "app"}, &sa)
	if _, ok := sa.Annotations["eks.amazonaws.com/role-arn"]; ok || sa.Annotations[migrate.AnnotationRecord] == "" {
		t.Errorf("ServiceAccount annotations after migration: %v", sa.Annotations)
	}
	k8s.Get(ctx, client.ObjectKeyFromObject(dep), dep)
	if dep.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
		t.Error("the Deployment was not restarted")
	}
	if got := trustOf(t, "mig-done-"+suffix); got != doneTrust {
		t.Errorf("the migrated role's trust changed: %s", got)
	}

	// Again: nothing changes.
	writes = emu.IAMWrites()
	before = snapshot()
	if _, _, err := podid(t, "migrate", "irsa", "-A", "-l", selector, "--approve", "--remove-oidc-trust", "--remove-annotation", "--restart"); err == nil {
		t.Error("the re-run did not report the cross-account ServiceAccount")
	}
	if emu.IAMWrites() != writes || !maps.Equal(snapshot(), before) {
		t.Errorf("the re-run changed something: %d IAM writes", emu.IAMWrites()-writes)
	}

	// Rollback: exactly what was there.
	out, errOut, err = podid(t, "migrate", "rollback", "-A", "-l", selector, "--approve")
	if err != nil {
		t.Fatalf("rollback: %v\n%s%s", err, out, errOut)
	}
	if got := trustOf(t, "mig-path-"+suffix); got != pathTrust {
		t.Errorf("trust after rollback is not the original byte for byte:\n%s\nwant:\n%s", got, pathTrust)
	}
	if got := trustOf(t, "mig-done-"+suffix); got != doneTrust {
		t.Errorf("the already-migrated role's trust changed: %s", got)
	}
	k8s.Get(ctx, client.ObjectKey{Namespace: nsPath, Name: "app"}, &sa)
	if sa.Annotations["eks.amazonaws.com/role-arn"] != pathRole || sa.Annotations["eks.amazonaws.com/token-expiration"] != "86400" || sa.Annotations[migrate.AnnotationRecord] != "" {
		t.Errorf("annotations after rollback: %v", sa.Annotations)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: nsPath, Name: "app"}, &pia); err == nil {
		t.Error("the association the migration created is still there")
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: nsDone, Name: "app"}, &pia); err != nil {
		t.Errorf("the association that was there before is gone: %v", err)
	}
	k8s.Get(ctx, client.ObjectKeyFromObject(dep), dep)
	if _, ok := dep.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"]; ok {
		t.Error("the Deployment's template was not restored")
	}
}

// A run that fails half-way (IAM refuses a trust update) is recorded: it
// rolls back, and, run again, it resumes and finishes.
func TestMigrateInterrupted(t *testing.T) {
	id := serverIdentity(t)
	suffix := newNamespace(t)
	suffix = suffix[len(suffix)-5:]
	label := map[string]string{"interrupted": suffix}
	// Named so that A comes first (the migration goes in namespace order).
	nsA, nsB := "int-a-"+suffix, "int-b-"+suffix
	for _, ns := range []string{nsA, nsB} {
		if err := k8s.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	// The first ServiceAccount's role trusts podid already, so the run's
	// first trust update is the second's: the one that fails.
	trustA := iamrole.TrustPolicy(serverARN, iamrole.Association{Cluster: id.Cluster.ClusterName, Namespace: nsA, ServiceAccount: "app"})
	roleA := createRole(t, "int-a-"+suffix, trustA)
	trustB := irsaTrust(t, nsB, "app")
	roleB := createRole(t, "int-b-"+suffix, trustB)
	irsaServiceAccount(t, nsA, "app", roleA, label)
	irsaServiceAccount(t, nsB, "app", roleB, label)
	selector := "interrupted=" + suffix

	fail := func() {
		emu.InjectFault("UpdateAssumeRolePolicy", "LimitExceeded", 1)
		out, errOut, err := podid(t, "migrate", "irsa", "-A", "-l", selector, "--approve")
		if err == nil || !strings.Contains(err.Error(), "1 of 2 ServiceAccounts done; what was done is recorded") {
			t.Fatalf("the failing run: %v\n%s%s", err, out, errOut)
		}
	}
	fail()
	var pia v1alpha1.PodIdentityAssociation
	if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: nsA, Name: "app"}, &pia); err != nil {
		t.Fatalf("the first ServiceAccount's association: %v", err)
	}
	// Rolled back from there: as before.
	if out, errOut, err := podid(t, "migrate", "rollback", "-A", "-l", selector, "--approve"); err != nil {
		t.Fatalf("rollback: %v\n%s%s", err, out, errOut)
	}
	if trustOf(t, "int-b-"+suffix) != trustB || trustOf(t, "int-a-"+suffix) != trustA {
		t.Error("rollback did not restore the trust policies")
	}
	if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: nsA, Name: "app"}, &pia); err == nil {
		t.Error("rollback left the first ServiceAccount's association")
	}
	// Failed again, then resumed: both done.
	fail()
	if out, errOut, err := podid(t, "migrate", "irsa", "-A", "-l", selector, "--approve"); err != nil {
		t.Fatalf("resume: %v\n%s%s", err, out, errOut)
	}
	if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: nsB, Name: "app"}, &pia); err != nil || pia.Spec.RoleARN != roleB {
		t.Errorf("after resuming, the second association: %v", err)
	}
	if !strings.Contains(trustOf(t, "int-b-"+suffix), "PodidAssociation") {
		t.Error("after resuming, the second role does not trust podid")
	}
}
