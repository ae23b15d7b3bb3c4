package rotator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/test/emu/registryemu"
)

// security with a client certificate: an Artifactory that demands one gets
// the certificate from the Secret, in JFrog's other key names (cert.pem,
// key.pem, ca.pem), and refuses a rotator without it.
func TestArtifactoryClientCertificate(t *testing.T) {
	t.Parallel()
	clientCert, clientKey := selfSigned(t)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(clientCert)
	art := registryemu.NewArtifactory(e.emuURL, "mtls-admin")
	art.MapRole(e.podRole, "mtls-user")
	srv := httptest.NewUnstartedServer(art)
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.StartTLS()
	e.serve(srv)
	host := strings.TrimPrefix(srv.URL, "https://")
	serverCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	namespace(t, "mtls", map[string]string{"mtls": "yes"})
	withCert := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "podid-system", Name: "mtls-client"},
		Data: map[string][]byte{"ca.pem": serverCA, "cert.pem": clientCert, "key.pem": clientKey}}
	if err := e.k8s.Create(t.Context(), withCert); err != nil {
		t.Fatal(err)
	}
	caSecret(t, "podid-system", "mtls-ca-only", serverCA)
	for name, secret := range map[string]string{"mtls-with-cert": "mtls-client", "mtls-without-cert": "mtls-ca-only"} {
		create(t, &v1alpha1.SecretRotator{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.SecretRotatorSpec{
				ArtifactoryURL:    host,
				NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"mtls": "yes"}},
				SecretName:        name,
				Security:          v1alpha1.SecurityConfig{Enabled: true, CertificateSecretName: secret},
			},
		})
	}
	user, _ := dockerLogin(t, waitSecret(t, "mtls", "mtls-with-cert", true), host)
	if user != "mtls-user" {
		t.Fatalf("user %q", user)
	}
	rot := waitReady(t, "mtls-without-cert", v1alpha1.ReasonTokenExchangeFailed)
	if msg := ready(rot).Message; !strings.Contains(msg, "certificate") {
		t.Errorf("without a client certificate: %s", msg)
	}
}

// selfSigned is a client certificate that is its own CA, in PEM.
func selfSigned(t *testing.T) (cert, key []byte) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "podid-rotator"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}
