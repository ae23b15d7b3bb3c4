package rotator

import (
	"net/url"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podid/podid/api/v1alpha1"
)

// What a SecretRotator may point the rotator at, cluster-scoped and
// namespaced, with and without the administrator's host list.
func TestReach(t *testing.T) {
	rot := func(ns string, mutate func(*v1alpha1.SecretRotatorSpec)) *v1alpha1.SecretRotator {
		r := &v1alpha1.SecretRotator{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "r"}, Spec: v1alpha1.SecretRotatorSpec{ArtifactoryURL: "https://acme.jfrog.io/"}}
		if mutate != nil {
			mutate(&r.Spec)
		}
		return r
	}
	listed := Reach{ArtifactoryHosts: []string{"*.jfrog.io", "artifactory.corp:8443", "registry.corp"}, ServiceAccountTokens: true}
	for _, c := range []struct {
		name  string
		reach Reach
		rot   *v1alpha1.SecretRotator
		want  string // "" admitted
	}{
		{"cluster-scoped, no list: any host", Reach{}, rot("", func(s *v1alpha1.SecretRotatorSpec) { s.ArtifactoryURL = "10.0.0.1:6443" }), ""},
		{"namespaced, no list: no host", Reach{}, rot("team", nil), "no Artifactory host is allowed for namespaced SecretRotators"},
		{"a listed domain", listed, rot("team", nil), ""},
		{"the domain itself is not under it", listed, rot("team", func(s *v1alpha1.SecretRotatorSpec) { s.ArtifactoryURL = "jfrog.io" }), "is not one of the Artifactory hosts"},
		{"a listed port", listed, rot("team", func(s *v1alpha1.SecretRotatorSpec) { s.ArtifactoryURL = "artifactory.corp:8443" }), ""},
		{"another port", listed, rot("team", func(s *v1alpha1.SecretRotatorSpec) { s.ArtifactoryURL = "artifactory.corp:9000" }), "is not one of"},
		{"443 is the default port", listed, rot("team", func(s *v1alpha1.SecretRotatorSpec) { s.ArtifactoryURL = "Registry.Corp:443" }), ""},
		{"a suffix that is not a subdomain", listed, rot("team", func(s *v1alpha1.SecretRotatorSpec) { s.ArtifactoryURL = "evil-jfrog.io" }), "is not one of"},
		{"a path", listed, rot("", func(s *v1alpha1.SecretRotatorSpec) { s.ArtifactoryURL = "acme.jfrog.io/x" }), "is not a host name"},
		{"credentials", listed, rot("", func(s *v1alpha1.SecretRotatorSpec) { s.ArtifactoryURL = "user@acme.jfrog.io" }), "is not a host name"},
		{"a query", listed, rot("", func(s *v1alpha1.SecretRotatorSpec) { s.ArtifactoryURL = "acme.jfrog.io?x=1" }), "is not a host name"},
		{"ECR needs no host", Reach{}, rot("team", func(s *v1alpha1.SecretRotatorSpec) { s.Provider = ProviderECR }), ""},
		{"another ServiceAccount, tokens off", Reach{}, rot("", func(s *v1alpha1.SecretRotatorSpec) {
			s.ServiceAccount = &v1alpha1.ServiceAccountReference{Namespace: "ci", Name: "bot"}
		}), "does not mint tokens for other ServiceAccounts"},
		{"JFrog's empty serviceAccount block", Reach{}, rot("", func(s *v1alpha1.SecretRotatorSpec) { s.ServiceAccount = &v1alpha1.ServiceAccountReference{} }), ""},
		{"namespaced, another namespace's ServiceAccount", listed, rot("team", func(s *v1alpha1.SecretRotatorSpec) {
			s.ServiceAccount = &v1alpha1.ServiceAccountReference{Namespace: "ci", Name: "bot"}
		}), "may name a ServiceAccount of its own namespace only"},
		{"namespaced, its own ServiceAccount", listed, rot("team", func(s *v1alpha1.SecretRotatorSpec) {
			s.ServiceAccount = &v1alpha1.ServiceAccountReference{Namespace: "team", Name: "bot"}
		}), ""},
		{"namespaced, another namespace's Secret", listed, rot("team", func(s *v1alpha1.SecretRotatorSpec) { s.Security.SecretNamespace = "ci" }), "of its own namespace only"},
		{"namespaced, no TLS verification", listed, rot("team", func(s *v1alpha1.SecretRotatorSpec) { s.Security.InsecureSkipVerify = true }), "may not turn off TLS verification"},
		{"cluster-scoped, no TLS verification", listed, rot("", func(s *v1alpha1.SecretRotatorSpec) { s.Security.InsecureSkipVerify = true }), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.reach.check(c.rot, c.rot.Namespace != "")
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Errorf("check = %v, want %q", err, c.want)
			}
		})
	}
}

// FuzzArtifactoryHost: artifactoryUrl is a SecretRotator author's; what
// is accepted is a bare host[:port] that URLs put nowhere else.
func FuzzArtifactoryHost(f *testing.F) {
	for _, s := range []string{"acme.jfrog.io", "https://acme.jfrog.io/", "h:8443", "user@h", "h/p", "h?q", "[::1]:443", "h#f", "%2f", "h\\x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		host, err := artifactoryHost(raw)
		if err != nil {
			return
		}
		u, perr := url.Parse("https://" + host + "/access/api/v1/aws/token")
		if perr != nil || u.Host != host || u.User != nil || u.Path != "/access/api/v1/aws/token" || strings.ContainsAny(host, "/@?#\\ ") {
			t.Fatalf("accepted %q as host %q, which goes to %v", raw, host, u)
		}
		hostMatches("*.jfrog.io", host)
	})
}
