package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/identitycert"
	"github.com/podid/podid/internal/kube"
	"github.com/podid/podid/internal/rolesanywhere"
)

// RolesAnywhereOptions make podid server's own AWS identity a session of
// IAM Roles Anywhere, from a certificate instead of a long-lived key.
type RolesAnywhereOptions struct {
	TrustAnchorARN, ProfileARN, RoleARN string
	// SessionDuration of podid's own session (zero: the profile's).
	SessionDuration time.Duration
	// CertificateFile and KeyFile, when set, are read (a mounted Secret, a
	// CSI volume); otherwise Secret in podid's namespace is read.
	CertificateFile, KeyFile string
	Secret                   string
	// OwnCA: podid keeps the Secret itself, from its own CA
	// (internal/identitycert), with certificates of CertificateLifetime.
	OwnCA               bool
	CertificateLifetime time.Duration
	// Endpoint of Roles Anywhere (default $AWS_ENDPOINT_URL_ROLESANYWHERE,
	// then $AWS_ENDPOINT_URL, then the public one).
	Endpoint string
	// Namespace of the Secret (default the namespace podid runs in).
	Namespace string
}

// Enabled says Roles Anywhere is configured.
func (o *RolesAnywhereOptions) Enabled() bool { return o != nil && o.TrustAnchorARN != "" }

// serverAWSConfig is podid server's own AWS configuration, in the region
// STS is called in: the SDK's chain (IRSA, an instance profile, keys in
// the environment), or a Roles Anywhere session. IAM is global; the SDK's
// AWS_ENDPOINT_URL_IAM (or AWS_ENDPOINT_URL) reaches a private one. The
// provider is nil without Roles Anywhere.
func serverAWSConfig(ctx context.Context, mgr manager.Manager, restCfg *rest.Config, identity association.Identity, opts APIOptions) (aws.Config, *rolesanywhere.Provider, error) {
	region := opts.STSRegion
	if region == "" {
		region = identity.Region
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(region))
	if err != nil {
		return aws.Config{}, nil, fmt.Errorf("loading podid server's AWS configuration: %w", err)
	}
	ra := opts.RolesAnywhere
	if ra == nil || (!ra.Enabled() && !ra.OwnCA) {
		return cfg, nil, nil
	}
	source, err := rolesAnywhereSource(mgr, restCfg, identity, ra)
	if err != nil {
		return aws.Config{}, nil, err
	}
	if !ra.Enabled() {
		// podid's CA is made for `podid roles-anywhere setup` to register;
		// until the ARNs are given, the SDK's chain is all there is.
		slog.Default().Warn("podid server has no Roles Anywhere trust anchor yet: run `podid roles-anywhere setup`, then give it the ARNs it prints; meanwhile its AWS identity is the SDK's chain's", "ca_configmap", identitycert.CAConfigMap)
		return cfg, nil, nil
	}
	endpoint := ra.Endpoint
	for _, env := range []string{"AWS_ENDPOINT_URL_ROLESANYWHERE", "AWS_ENDPOINT_URL"} {
		if endpoint == "" {
			endpoint = os.Getenv(env)
		}
	}
	provider, err := rolesanywhere.New(rolesanywhere.Config{
		TrustAnchorARN: ra.TrustAnchorARN, ProfileARN: ra.ProfileARN, RoleARN: ra.RoleARN,
		Duration: ra.SessionDuration, Source: source, Endpoint: endpoint,
		Reload:  min(time.Minute, max(ra.CertificateLifetime/20, time.Second)),
		Log:     slog.Default().With("logger", "roles-anywhere"),
		Metrics: rolesanywhere.NewMetrics(ctrlmetrics.Registry),
	})
	if err != nil {
		return aws.Config{}, nil, fmt.Errorf("--roles-anywhere-*: %w", err)
	}
	// The provider caches and renews the session itself; the SDK's own
	// cache would keep an old session past a certificate renewal.
	cfg.Credentials = provider
	slog.Default().Info("podid server's AWS identity is an IAM Roles Anywhere session", "trust_anchor", ra.TrustAnchorARN, "profile", ra.ProfileARN, "role", ra.RoleARN)
	return cfg, provider, nil
}

// rolesAnywhereSource reads the certificate from files, or from the Secret
// (kept by podid's own CA when OwnCA).
func rolesAnywhereSource(mgr manager.Manager, restCfg *rest.Config, identity association.Identity, ra *RolesAnywhereOptions) (rolesanywhere.Source, error) {
	if ra.CertificateFile != "" || ra.KeyFile != "" {
		if ra.CertificateFile == "" || ra.KeyFile == "" {
			return nil, errors.New("--roles-anywhere-certificate-file and --roles-anywhere-key-file go together")
		}
		if ra.OwnCA {
			return nil, errors.New("--roles-anywhere-own-ca writes a Secret; it cannot be combined with --roles-anywhere-certificate-file")
		}
		return rolesanywhere.Files{Certificate: ra.CertificateFile, Key: ra.KeyFile}, nil
	}
	ns := ra.Namespace
	if ns == "" {
		ns = ownNamespace()
	}
	if ns == "" || ra.Secret == "" {
		return nil, errors.New("the Roles Anywhere certificate needs --roles-anywhere-certificate-secret in podid's namespace (POD_NAMESPACE), or --roles-anywhere-certificate-file and --roles-anywhere-key-file")
	}
	// Read and written live: caching Secrets would mean watching every
	// Secret in the namespace.
	live, err := client.New(restCfg, client.Options{Scheme: kube.NewScheme()})
	if err != nil {
		return nil, err
	}
	if ra.OwnCA {
		if ra.Secret != identitycert.SecretName {
			return nil, fmt.Errorf("podid's own CA writes Secret %s; --roles-anywhere-certificate-secret names %s", identitycert.SecretName, ra.Secret)
		}
		m := identitycert.New(identitycert.Options{Client: live, Namespace: ns, CommonName: identitycert.CommonName(identity.ClusterName),
			Lifetime: ra.CertificateLifetime, Log: slog.Default().With("logger", "identity-cert")})
		if err := mgr.Add(m); err != nil {
			return nil, err
		}
	}
	return identitycert.SecretSource(live, types.NamespacedName{Namespace: ns, Name: ra.Secret}), nil
}
