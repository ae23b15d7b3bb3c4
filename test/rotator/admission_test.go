package rotator

import (
	"context"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/passrole"
)

// What the API server refuses before the rotator ever sees it, with a
// message that says what to do.
func TestAdmission(t *testing.T) {
	t.Parallel()
	base := func() v1alpha1.SecretRotatorSpec {
		return v1alpha1.SecretRotatorSpec{ArtifactoryURL: "a.jfrog.io", SecretName: "pull", NamespaceSelector: metav1.LabelSelector{}}
	}
	for name, c := range map[string]struct {
		mutate func(*v1alpha1.SecretRotatorSpec)
		want   string
	}{
		"no secret":          {func(s *v1alpha1.SecretRotatorSpec) { s.SecretName = "" }, "set generatedSecrets (or the legacy secretName)"},
		"no registry":        {func(s *v1alpha1.SecretRotatorSpec) { s.ArtifactoryURL = "" }, "set artifactoryUrl for JFrog Artifactory, or provider: ecr"},
		"ecr without region": {func(s *v1alpha1.SecretRotatorSpec) { s.Provider = "ecr" }, "provider ecr needs ecr.region"},
		"unknown provider":   {func(s *v1alpha1.SecretRotatorSpec) { s.Provider = "quay" }, `Unsupported value: "quay"`},
		"unknown authType":   {func(s *v1alpha1.SecretRotatorSpec) { s.AuthType = "static" }, `Unsupported value: "static"`},
		"unknown secretType": {func(s *v1alpha1.SecretRotatorSpec) {
			s.GeneratedSecrets = []v1alpha1.GeneratedSecret{{SecretName: "x", SecretType: "helm"}}
		}, `Unsupported value: "helm"`},
		"bad secret name":       {func(s *v1alpha1.SecretRotatorSpec) { s.SecretName = "Pull_Secret" }, "spec.secretName"},
		"security without cert": {func(s *v1alpha1.SecretRotatorSpec) { s.Security.Enabled = true }, "security.enabled needs certificateSecretName"},
		"serviceAccount with podIdentity": {func(s *v1alpha1.SecretRotatorSpec) {
			s.AuthType, s.ServiceAccount = "podIdentity", &v1alpha1.ServiceAccountReference{Name: "a", Namespace: "b"}
		}, "serviceAccount is for webIdentity"},
		"bad role ARN": {func(s *v1alpha1.SecretRotatorSpec) { s.AssumeRoleChain = []v1alpha1.AssumeRoleHop{{RoleARN: "role/x"}} }, "spec.assumeRoleChain[0].roleARN"},
		"bad registry ID": {func(s *v1alpha1.SecretRotatorSpec) {
			s.Provider, s.ECR = "ecr", &v1alpha1.ECRConfig{Region: "eu-west-1", RegistryIDs: []string{"12"}}
		}, "spec.ecr.registryIds[0]"},
		"duplicate secret": {func(s *v1alpha1.SecretRotatorSpec) {
			s.GeneratedSecrets = []v1alpha1.GeneratedSecret{{SecretName: "x"}, {SecretName: "x"}}
		}, "Duplicate value"},
	} {
		t.Run(name, func(t *testing.T) {
			spec := base()
			c.mutate(&spec)
			rot := &v1alpha1.SecretRotator{ObjectMeta: metav1.ObjectMeta{Name: "admission-" + strings.ReplaceAll(strings.ToLower(name), " ", "-")}, Spec: spec}
			err := e.k8s.Create(t.Context(), rot)
			if err == nil {
				e.k8s.Delete(t.Context(), rot)
				t.Fatalf("accepted %+v", spec)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("refused with %q, want it to say %q", err, c.want)
			}
		})
	}
}

// A cluster-scoped SecretRotator makes the rotator act for its author with
// the rotator's rights: podid's admission policy admits it only from
// someone who could do each thing themselves, cluster-wide (a grant in
// one namespace does not count).
func TestClusterScopedRotatorNeedsItsAuthorsRights(t *testing.T) {
	ctx := t.Context()
	policy, binding := passrole.RotatorPolicy("podid-system"), passrole.RotatorBinding()
	for _, obj := range []client.Object{policy, binding} {
		if err := e.k8s.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		e.k8s.Delete(context.Background(), binding)
		e.k8s.Delete(context.Background(), policy)
	})
	const user = "platform-dev"
	bind := func(name string, rules ...rbacv1.PolicyRule) {
		t.Helper()
		if err := e.k8s.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}); err != nil {
			t.Fatal(err)
		}
		if err := e.k8s.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}}}); err != nil {
			t.Fatal(err)
		}
	}
	bind("platform-dev-rotators", rbacv1.PolicyRule{APIGroups: []string{"podid.io"}, Resources: []string{"secretrotators"}, Verbs: []string{"create", "get", "delete"}})
	u, err := e.cluster.AddUser(user)
	if err != nil {
		t.Fatal(err)
	}
	dev := u.Client
	role := "arn:aws:iam::" + account + ":role/cluster-admins"
	// A grant of the role in one namespace is not a cluster-wide grant.
	if err := e.k8s.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "use-admins"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{passrole.Group}, Resources: []string{passrole.Resource}, Verbs: []string{passrole.Verb}, ResourceNames: []string{role}}}}); err != nil {
		t.Fatal(err)
	}
	if err := e.k8s.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "use-admins"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "use-admins"},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}}}); err != nil {
		t.Fatal(err)
	}
	rot := func(name string, mutate func(*v1alpha1.SecretRotatorSpec)) *v1alpha1.SecretRotator {
		r := &v1alpha1.SecretRotator{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.SecretRotatorSpec{
			ArtifactoryURL: "a.jfrog.io", SecretName: "pull", NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"nothing": "matches"}}}}
		mutate(&r.Spec)
		return r
	}
	chain := rot("dev-chain", func(s *v1alpha1.SecretRotatorSpec) { s.AssumeRoleChain = []v1alpha1.AssumeRoleHop{{RoleARN: role}} })
	eventually(t, 20*time.Second, "the policy to refuse a role the author may not use", func() (bool, string) {
		err := dev.Create(ctx, chain.DeepCopy())
		if err == nil {
			e.k8s.Delete(ctx, chain.DeepCopy())
			return false, "admitted"
		}
		return strings.Contains(err.Error(), "platform-dev may not use every IAM role of assumeRoleChain ("+role+") cluster-wide"), err.Error()
	})
	for name, c := range map[string]struct {
		rot  *v1alpha1.SecretRotator
		want string
	}{
		"the rotator's own IRSA": {rot("dev-irsa", func(s *v1alpha1.SecretRotatorSpec) {
			s.AuthType, s.ServiceAccount = "webIdentity", &v1alpha1.ServiceAccountReference{Namespace: "podid-system", Name: "podid-rotator"}
		}), "platform-dev may not create tokens for ServiceAccount podid-system/podid-rotator"},
		"a Secret of podid's namespace": {rot("dev-cert", func(s *v1alpha1.SecretRotatorSpec) {
			s.Security = v1alpha1.SecurityConfig{Enabled: true, CertificateSecretName: "podid-tls"}
		}), "platform-dev may not read Secret podid-system/podid-tls"},
	} {
		if err := dev.Create(ctx, c.rot); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a refusal saying %q", name, err, c.want)
		}
	}
	bind("platform-dev-use-admins", rbacv1.PolicyRule{APIGroups: []string{passrole.Group}, Resources: []string{passrole.Resource}, Verbs: []string{passrole.Verb}, ResourceNames: []string{role}})
	eventually(t, 20*time.Second, "the cluster-wide grant to admit it", func() (bool, string) {
		err := dev.Create(ctx, chain.DeepCopy())
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	e.k8s.Delete(ctx, chain)
}
