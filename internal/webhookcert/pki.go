package webhookcert

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podid/podid/internal/pki"
)

// keyPair is a certificate, with its key when podid holds it.
type keyPair = pki.KeyPair

func newCA(now time.Time, validity time.Duration) (*keyPair, error) {
	return pki.Issue(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "podid-webhook-ca", Organization: []string{"podid"}},
		NotBefore:             now.Add(-pki.Backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}, nil)
}

func newServing(ca *keyPair, now time.Time, validity time.Duration, dnsNames []string, ips []net.IP) (*keyPair, error) {
	cn := "podid-webhook"
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	return pki.Issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"podid"}},
		NotBefore:   now.Add(-pki.Backdate),
		NotAfter:    now.Add(validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    dnsNames,
		IPAddresses: ips,
	}, ca)
}

func covers(k *keyPair, dnsNames []string, ips []net.IP) bool {
	if !slices.Equal(k.Cert.DNSNames, dnsNames) || len(k.Cert.IPAddresses) != len(ips) {
		return false
	}
	for i, ip := range ips {
		if !ip.Equal(k.Cert.IPAddresses[i]) {
			return false
		}
	}
	return true
}

// state is what the Secret holds.
type state struct {
	ca      *keyPair   // the current CA, with its key
	bundle  []*keyPair // the CAs to trust, current first
	serving *keyPair
}

// parseSecret reads what it can; anything unreadable is renewed.
func parseSecret(data map[string][]byte) state {
	var st state
	rest := data[KeyCABundle]
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if cert, err := x509.ParseCertificate(block.Bytes); err == nil && cert.IsCA {
			st.bundle = append(st.bundle, &keyPair{Cert: cert, CertPEM: pem.EncodeToMemory(block)})
		}
	}
	if len(st.bundle) > 0 {
		if key := pki.ParseECKey(data[KeyCAKey]); key != nil && key.PublicKey.Equal(st.bundle[0].Cert.PublicKey) {
			st.ca = st.bundle[0]
			st.ca.Key, st.ca.KeyPEM = key, data[KeyCAKey]
		}
	}
	if st.ca == nil {
		st.bundle = nil
	}
	st.serving = pki.Parse(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey])
	return st
}

// stillValid is the bundle without expired CAs.
func (st state) stillValid(now time.Time) []*keyPair {
	var out []*keyPair
	for _, ca := range st.bundle {
		if now.Before(ca.Cert.NotAfter) {
			out = append(out, ca)
		}
	}
	return out
}

func (st state) bundlePEM() []byte {
	var b bytes.Buffer
	for _, ca := range st.bundle {
		b.Write(ca.CertPEM)
	}
	return b.Bytes()
}

func (st state) data() map[string][]byte {
	return map[string][]byte{
		KeyCABundle:             st.bundlePEM(),
		KeyCAKey:                st.ca.KeyPEM,
		corev1.TLSCertKey:       st.serving.CertPEM,
		corev1.TLSPrivateKeyKey: st.serving.KeyPEM,
	}
}
