package rotator

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/credsource"
	"github.com/podid/podid/internal/regcred/exchangers"
)

// Secret types of generatedSecrets.
const (
	secretTypeDocker  = "docker"
	secretTypeGeneric = "generic"
)

// Provider names: the registry kinds of package exchangers.
const (
	ProviderJFrog = exchangers.JFrog
	ProviderECR   = exchangers.ECR
)

// minRefresh bounds refreshTime from below: a registry token is not worth
// minting more often than this, and a typo ("30s" for "30m") must not turn
// into a storm of exchanges.
const minRefresh = time.Minute

// provider is the exchange a spec asks for.
func provider(spec *v1alpha1.SecretRotatorSpec) string {
	if spec.Provider != "" {
		return spec.Provider
	}
	return ProviderJFrog
}

// wantedSecrets are the secrets each namespace gets: generatedSecrets, or
// the legacy secretName as one docker secret, or both.
func wantedSecrets(spec *v1alpha1.SecretRotatorSpec) []v1alpha1.GeneratedSecret {
	out := make([]v1alpha1.GeneratedSecret, 0, len(spec.GeneratedSecrets)+1)
	seen := map[string]bool{}
	for _, g := range spec.GeneratedSecrets {
		if g.SecretType == "" {
			g.SecretType = secretTypeDocker
		}
		out = append(out, g)
		seen[g.SecretName] = true
	}
	if spec.SecretName != "" && !seen[spec.SecretName] {
		out = append(out, v1alpha1.GeneratedSecret{SecretName: spec.SecretName, SecretType: secretTypeDocker})
	}
	return out
}

// validate reports what admission cannot: it is the rotator's answer to a
// spec written for an older CRD, or applied with validation off.
func validate(spec *v1alpha1.SecretRotatorSpec) error {
	if len(wantedSecrets(spec)) == 0 {
		return fmt.Errorf("set generatedSecrets (or secretName): there is no secret to write")
	}
	switch provider(spec) {
	case ProviderJFrog:
		if spec.ArtifactoryURL == "" {
			return fmt.Errorf("provider jfrog needs artifactoryUrl")
		}
	case ProviderECR:
		if ecrRegion(spec) == "" {
			return fmt.Errorf("provider ecr needs ecr.region or awsRegion")
		}
	default:
		return fmt.Errorf("provider %q is not jfrog or ecr", spec.Provider)
	}
	for _, g := range wantedSecrets(spec) {
		if g.SecretType != secretTypeDocker && g.SecretType != secretTypeGeneric {
			return fmt.Errorf("secret %s: secretType %q is not docker or generic", g.SecretName, g.SecretType)
		}
	}
	if spec.RefreshTime != nil && spec.RefreshTime.Duration < minRefresh {
		return fmt.Errorf("refreshTime %s is shorter than %s", spec.RefreshTime.Duration, minRefresh)
	}
	if spec.Security.Enabled && spec.Security.CertificateSecretName == "" {
		return fmt.Errorf("security.enabled needs certificateSecretName")
	}
	return nil
}

func ecrRegion(spec *v1alpha1.SecretRotatorSpec) string {
	if spec.ECR != nil && spec.ECR.Region != "" {
		return spec.ECR.Region
	}
	return spec.AWSRegion
}

// sourceSpec is the identity the spec asks for.
func sourceSpec(spec *v1alpha1.SecretRotatorSpec) credsource.Spec {
	s := credsource.Spec{AuthType: credsource.AuthType(spec.AuthType)}
	// JFrog's manifests carry serviceAccount: {name: "", namespace: ""}
	// with podIdentity: no ServiceAccount.
	if spec.ServiceAccount != nil && spec.ServiceAccount.Name != "" {
		s.ServiceAccount = &credsource.ServiceAccountRef{Namespace: spec.ServiceAccount.Namespace, Name: spec.ServiceAccount.Name}
	}
	for _, h := range spec.AssumeRoleChain {
		hop := credsource.Hop{RoleARN: h.RoleARN, ExternalID: h.ExternalID, TransitiveTagKeys: h.TransitiveTagKeys, SessionName: h.SessionName}
		if h.Duration != nil {
			hop.Duration = h.Duration.Duration
		}
		if len(h.Tags) > 0 {
			hop.Tags = map[string]string{}
			for _, t := range h.Tags {
				hop.Tags[t.Key] = t.Value
			}
		}
		s.Chain = append(s.Chain, hop)
	}
	return s
}

// tokenKey changes exactly when a spec change calls for a new token: the
// identity, the registry, the TLS settings, and refreshTime (so that a new
// period starts now). Selector, secret names and metadata changes reuse the
// token.
func tokenKey(spec *v1alpha1.SecretRotatorSpec) string {
	b, _ := json.Marshal([]any{spec.AuthType, spec.AWSRegion, spec.ServiceAccount, spec.AssumeRoleChain, provider(spec),
		spec.ArtifactoryURL, spec.ArtifactorySubdomains, spec.Security, spec.ECR, spec.RefreshTime})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
