package rotator

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podid/podid/api/v1alpha1"
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
