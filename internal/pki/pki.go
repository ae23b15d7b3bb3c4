// Package pki is the little X.509 podid's own CAs need: P-256 key pairs
// issued from templates, PEM in and out. webhookcert (the webhook's and the
// API's serving certificate) and identitycert (the certificate podid
// presents to IAM Roles Anywhere) each keep a CA of their own with it.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"
)

// Backdate covers clocks a little behind ours: certificates start this long
// before they are issued.
const Backdate = time.Hour

// KeyPair is a certificate, with its key when podid holds it.
type KeyPair struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     *ecdsa.PrivateKey
	KeyPEM  []byte
}

// Issue signs template with parent, or self-signs it when parent is nil, for
// a new P-256 key; it sets the serial number (128 random bits).
func Issue(template *x509.Certificate, parent *KeyPair) (*KeyPair, error) {
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
		signer, signerCert = parent.Key, parent.Cert
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
	return &KeyPair{
		Cert: cert, Key: key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// RenewDue says the certificate has less than before left.
func (k *KeyPair) RenewDue(now time.Time, before time.Duration) bool {
	return k.Cert.NotAfter.Sub(now) < before
}

// SignedBy says ca issued the certificate.
func (k *KeyPair) SignedBy(ca *KeyPair) bool {
	return ca != nil && k.Cert.CheckSignatureFrom(ca.Cert) == nil
}

// ParseECKey reads a PEM SEC 1 P-256 key, or nil.
func ParseECKey(data []byte) *ecdsa.PrivateKey {
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

// Parse reads a PEM certificate and its PEM key into a KeyPair, or nil when
// either is missing, unreadable or they do not belong together.
func Parse(certPEM, keyPEM []byte) *KeyPair {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil
	}
	key := ParseECKey(keyPEM)
	if key == nil || !key.PublicKey.Equal(cert.PublicKey) {
		return nil
	}
	return &KeyPair{Cert: cert, CertPEM: certPEM, Key: key, KeyPEM: keyPEM}
}
