package webhookcert

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// keyPair is a certificate, with its key when podid holds it.
type keyPair struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
	keyPEM  []byte
}

// backdate covers clocks a little behind ours.
const backdate = time.Hour

func newCA(now time.Time, validity time.Duration) (*keyPair, error) {
	return issue(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "podid-webhook-ca", Organization: []string{"podid"}},
		NotBefore:             now.Add(-backdate),
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
	return issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"podid"}},
		NotBefore:   now.Add(-backdate),
		NotAfter:    now.Add(validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    dnsNames,
		IPAddresses: ips,
	}, ca)
}

// issue signs template with parent, or self-signs it when parent is nil.
func issue(template *x509.Certificate, parent *keyPair) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	template.SerialNumber = serial
	signer, signerCert := key, template
	if parent != nil {
		signer, signerCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, template, signerCert, &key.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("signing a certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &keyPair{
		cert: cert, key: key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// renewDue says the certificate has less than before left.
func (k *keyPair) renewDue(now time.Time, before time.Duration) bool {
	return k.cert.NotAfter.Sub(now) < before
}

func (k *keyPair) signedBy(ca *keyPair) bool {
	return ca != nil && k.cert.CheckSignatureFrom(ca.cert) == nil
}

func (k *keyPair) covers(dnsNames []string, ips []net.IP) bool {
	if !slices.Equal(k.cert.DNSNames, dnsNames) || len(k.cert.IPAddresses) != len(ips) {
		return false
	}
	for i, ip := range ips {
		if !ip.Equal(k.cert.IPAddresses[i]) {
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
			st.bundle = append(st.bundle, &keyPair{cert: cert, certPEM: pem.EncodeToMemory(block)})
		}
	}
	if len(st.bundle) > 0 {
		if key := parseKey(data[KeyCAKey]); key != nil && key.PublicKey.Equal(st.bundle[0].cert.PublicKey) {
			st.ca = st.bundle[0]
			st.ca.key, st.ca.keyPEM = key, data[KeyCAKey]
		}
	}
	if st.ca == nil {
		st.bundle = nil
	}
	if block, _ := pem.Decode(data[corev1.TLSCertKey]); block != nil {
		if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
			if key := parseKey(data[corev1.TLSPrivateKeyKey]); key != nil && key.PublicKey.Equal(cert.PublicKey) {
				st.serving = &keyPair{cert: cert, certPEM: data[corev1.TLSCertKey], key: key, keyPEM: data[corev1.TLSPrivateKeyKey]}
			}
		}
	}
	return st
}

func parseKey(data []byte) *ecdsa.PrivateKey {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil
	}
	return key
}

// stillValid is the bundle without expired CAs.
func (st state) stillValid(now time.Time) []*keyPair {
	var out []*keyPair
	for _, ca := range st.bundle {
		if now.Before(ca.cert.NotAfter) {
			out = append(out, ca)
		}
	}
	return out
}

func (st state) bundlePEM() []byte {
	var b bytes.Buffer
	for _, ca := range st.bundle {
		b.Write(ca.certPEM)
	}
	return b.Bytes()
}

func (st state) data() map[string][]byte {
	return map[string][]byte{
		KeyCABundle:             st.bundlePEM(),
		KeyCAKey:                st.ca.keyPEM,
		corev1.TLSCertKey:       st.serving.certPEM,
		corev1.TLSPrivateKeyKey: st.serving.keyPEM,
	}
}
