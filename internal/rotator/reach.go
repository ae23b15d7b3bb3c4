package rotator

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/podid/podid/api/v1alpha1"
)

// Reach bounds what a SecretRotator may make the rotator do, beyond what
// its creator's RBAC is checked for at admission (passrole.RotatorPolicy).
// The rotator acts with its own AWS identity and its own cluster-wide
// rights, so a field a SecretRotator's author writes must not point them
// anywhere the administrator did not allow.
type Reach struct {
	// ArtifactoryHosts are the hosts artifactoryUrl may name: "host",
	// "host:port", or "*.domain" for any host under domain. The exchange
	// hands the host a signed STS request it can replay for a quarter of an
	// hour, so it must be a registry the administrator trusts. Empty: any
	// host for a cluster-scoped rotator (whose author is nearly an
	// administrator already), none for a namespaced one.
	ArtifactoryHosts []string
	// ServiceAccountTokens lets spec.serviceAccount name a ServiceAccount
	// whose token the rotator mints (IRSA for webIdentity). Off, such a
	// rotator is refused, and the chart does not grant the rotator
	// serviceaccounts/token.
	ServiceAccountTokens bool
}

// check refuses a spec that reaches further than r allows, saying which
// field and what to do. namespaced is the CRD variant.
func (r Reach) check(rot *v1alpha1.SecretRotator, namespaced bool) error {
	spec := &rot.Spec
	if sa := spec.ServiceAccount; sa != nil && sa.Name != "" {
		if !r.ServiceAccountTokens {
			return fmt.Errorf("serviceAccount %s/%s: this rotator does not mint tokens for other ServiceAccounts; use the rotator's own identity (authType podIdentity), or have an administrator turn on rotator.serviceAccountTokens", sa.Namespace, sa.Name)
		}
		if namespaced && sa.Namespace != rot.Namespace {
			return fmt.Errorf("serviceAccount %s/%s: a SecretRotator in namespace %s may name a ServiceAccount of its own namespace only", sa.Namespace, sa.Name, rot.Namespace)
		}
	}
	if namespaced {
		if ns := spec.Security.SecretNamespace; ns != "" && ns != rot.Namespace {
			return fmt.Errorf("security.secretNamespace %s: a SecretRotator in namespace %s may read a certificate Secret of its own namespace only; leave it out", ns, rot.Namespace)
		}
		if spec.Security.InsecureSkipVerify {
			return fmt.Errorf("security.insecureSkipVerify: a namespaced SecretRotator may not turn off TLS verification; give the registry's CA in security.certificateSecretName instead")
		}
	}
	if provider(spec) != ProviderJFrog {
		return nil
	}
	host, err := artifactoryHost(spec.ArtifactoryURL)
	if err != nil {
		return err
	}
	if len(r.ArtifactoryHosts) == 0 {
		if namespaced {
			return fmt.Errorf("artifactoryUrl %s: no Artifactory host is allowed for namespaced SecretRotators; an administrator lists them in rotator.artifactoryHosts", host)
		}
		return nil
	}
	for _, pattern := range r.ArtifactoryHosts {
		if hostMatches(pattern, host) {
			return nil
		}
	}
	return fmt.Errorf("artifactoryUrl %s is not one of the Artifactory hosts this rotator may call (%s): an administrator adds it to rotator.artifactoryHosts", host, strings.Join(r.ArtifactoryHosts, ", "))
}

// artifactoryHost is artifactoryUrl's host[:port], refused when it is not
// just that (a path, credentials, a query would change where the signed
// request goes, or leak).
func artifactoryHost(raw string) (string, error) {
	s := strings.TrimPrefix(strings.TrimPrefix(raw, "https://"), "http://")
	s = strings.TrimRight(s, "/")
	u, err := url.Parse("https://" + s)
	if err != nil || u.Host != s || u.Hostname() == "" || u.User != nil {
		return "", fmt.Errorf("artifactoryUrl %q is not a host name (host or host:port, optionally after https://)", raw)
	}
	return strings.ToLower(u.Host), nil
}

// hostMatches: "host" (default port), "host:port", "*.domain" (any host
// under domain, default port).
func hostMatches(pattern, host string) bool {
	pattern = strings.ToLower(pattern)
	name, port, err := net.SplitHostPort(host)
	if err != nil {
		name, port = host, ""
	}
	if port == "443" {
		host, port = name, ""
	}
	if domain, ok := strings.CutPrefix(pattern, "*."); ok {
		return port == "" && strings.HasSuffix(name, "."+domain)
	}
	return pattern == host
}
