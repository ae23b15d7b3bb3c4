package rotator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/regcred"
	"github.com/podid/podid/internal/regcred/exchangers"
	"github.com/podid/podid/internal/regcred/jfrog"
)

// DefaultRegion is the region of STS and IAM calls when neither the spec
// nor the pod's AWS_REGION names one (JFrog's operator's default).
const DefaultRegion = "us-west-2"

// ExchangerFactory builds rotators' exchangers from their specs.
type ExchangerFactory struct {
	// AWS is the base SDK configuration (endpoint overrides, HTTP client).
	AWS aws.Config
	// Reader reads security.certificateSecretName Secrets.
	Reader client.Reader
	// Namespace is where a cluster-scoped rotator's certificate Secret is
	// looked for when security.secretNamespace is empty (podid's namespace).
	Namespace string
	// Timeout bounds every registry and AWS call; zero means 30 s.
	Timeout time.Duration
	// Getenv reads the rotator's environment (AWS_STS_REGIONAL_ENDPOINTS);
	// nil means os.Getenv.
	Getenv func(string) string
}

// STSRegion is the region whose STS the JFrog exchange is signed for, or ""
// for the global endpoint: regional where AWS_STS_REGIONAL_ENDPOINTS=regional
// (AWS's own setting), and always in partitions without a global endpoint
// (aws-cn, GovCloud), whose Artifactory could not verify a global request.
func (f *ExchangerFactory) STSRegion(rot *v1alpha1.SecretRotator) string {
	getenv := f.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	region := f.AWSConfig(rot).Region
	if strings.EqualFold(getenv("AWS_STS_REGIONAL_ENDPOINTS"), "regional") || !jfrog.HasGlobalSTS(region) {
		return region
	}
	return ""
}

// AWSConfig is the base configuration with the rotator's region.
func (f *ExchangerFactory) AWSConfig(rot *v1alpha1.SecretRotator) aws.Config {
	cfg := f.AWS.Copy()
	if rot.Spec.AWSRegion != "" {
		cfg.Region = rot.Spec.AWSRegion
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	return cfg
}

// Exchanger builds rot's exchanger.
func (f *ExchangerFactory) Exchanger(ctx context.Context, rot *v1alpha1.SecretRotator) (regcred.Exchanger, error) {
	spec := exchangers.Spec{AWS: f.AWSConfig(rot), Timeout: f.Timeout}
	kind := provider(&rot.Spec)
	switch kind {
	case ProviderECR:
		spec.Region, spec.Identify = ecrRegion(&rot.Spec), true
		if rot.Spec.ECR != nil {
			spec.RegistryIDs = rot.Spec.ECR.RegistryIDs
		}
	case ProviderJFrog:
		client, err := f.httpClient(ctx, rot)
		if err != nil {
			return nil, err
		}
		spec.URL, spec.Subdomains, spec.HTTPClient = rot.Spec.ArtifactoryURL, rot.Spec.ArtifactorySubdomains, client
		spec.STSRegion = f.STSRegion(rot)
	}
	return exchangers.Named(kind, spec)
}

// httpClient is the client for Artifactory, with security's TLS settings.
func (f *ExchangerFactory) httpClient(ctx context.Context, rot *v1alpha1.SecretRotator) (*http.Client, error) {
	sec := rot.Spec.Security
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: sec.InsecureSkipVerify} //nolint:gosec // the user's explicit choice
	if sec.Enabled {
		ns := sec.SecretNamespace
		if ns == "" {
			ns = rot.Namespace
		}
		if ns == "" {
			ns = f.Namespace
		}
		var secret corev1.Secret
		if err := f.Reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: sec.CertificateSecretName}, &secret); err != nil {
			return nil, fmt.Errorf("reading security.certificateSecretName %s/%s: %w", ns, sec.CertificateSecretName, err)
		}
		if ca := first(secret.Data, "ca.crt", "ca.pem"); ca != nil {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(ca) {
				return nil, fmt.Errorf("secret %s/%s: ca.crt/ca.pem holds no PEM certificate", ns, sec.CertificateSecretName)
			}
			tlsConfig.RootCAs = pool
		}
		cert, key := first(secret.Data, "tls.crt", "cert.pem"), first(secret.Data, "tls.key", "key.pem")
		if (cert == nil) != (key == nil) {
			return nil, fmt.Errorf("secret %s/%s has a client certificate without its key, or a key without its certificate", ns, sec.CertificateSecretName)
		}
		if cert != nil {
			pair, err := tls.X509KeyPair(cert, key)
			if err != nil {
				return nil, fmt.Errorf("secret %s/%s: client certificate: %w", ns, sec.CertificateSecretName, err)
			}
			tlsConfig.Certificates = []tls.Certificate{pair}
		}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	return &http.Client{Transport: transport}, nil
}

func first(data map[string][]byte, keys ...string) []byte {
	for _, k := range keys {
		if v, ok := data[k]; ok && len(v) > 0 {
			return v
		}
	}
	return nil
}
