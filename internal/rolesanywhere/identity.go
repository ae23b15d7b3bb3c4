package rolesanywhere

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Identity is a certificate with its private key, and the intermediates
// between it and the trust anchor's CA.
type Identity struct {
	Certificate *x509.Certificate
	Chain       []*x509.Certificate
	Key         crypto.Signer
}

// Source yields the current identity. It is asked before every
// CreateSession, so a renewed certificate is used from the next session on,
// without a restart.
type Source interface {
	Load(ctx context.Context) (*Identity, error)
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context) (*Identity, error)

// Load calls f.
func (f SourceFunc) Load(ctx context.Context) (*Identity, error) { return f(ctx) }

// Files reads a PEM certificate file (the certificate first, then its
// intermediates, as cert-manager's tls.crt) and a PEM private key file
// (PKCS #8, PKCS #1 or SEC 1), e.g. a Secret mounted into the pod.
type Files struct {
	Certificate, Key string
}

// Load reads both files.
func (f Files) Load(context.Context) (*Identity, error) {
	certPEM, err := os.ReadFile(f.Certificate)
	if err != nil {
		return nil, fmt.Errorf("reading the Roles Anywhere certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(f.Key)
	if err != nil {
		return nil, fmt.Errorf("reading the Roles Anywhere private key: %w", err)
	}
	return ParseIdentity(certPEM, keyPEM)
}

// ParseIdentity reads a PEM certificate chain and its PEM private key.
func ParseIdentity(certPEM, keyPEM []byte) (*Identity, error) {
	var certs []*x509.Certificate
	rest := certPEM
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("the certificate file holds a certificate that does not parse: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("the certificate file holds no PEM certificate")
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(certs[0].PublicKey) {
		return nil, fmt.Errorf("the private key is not the key of certificate %q (serial %s): the Secret's tls.crt and tls.key do not belong together", certs[0].Subject, serialHex(certs[0]))
	}
	// A CA in the chain the trust anchor already holds is harmless but
	// useless; a self-signed root is dropped so that the header stays small.
	var chain []*x509.Certificate
	for _, c := range certs[1:] {
		if c.CheckSignatureFrom(c) != nil {
			chain = append(chain, c)
		}
	}
	return &Identity{Certificate: certs[0], Chain: chain, Key: key}, nil
}

func parseKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("the private key file holds no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("the private key file holds a %q block; want PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY (unencrypted)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("the private key does not parse: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("a %T key cannot sign", key)
	}
	return signer, nil
}

func serialHex(c *x509.Certificate) string { return strings.ToLower(c.SerialNumber.Text(16)) }

// CertificateError is a certificate refused before any call: expired or not
// yet valid.
type CertificateError struct {
	Subject, Serial string
	NotBefore       time.Time
	NotAfter        time.Time
	Now             time.Time
}

func (e *CertificateError) Error() string {
	if e.Now.Before(e.NotBefore) {
		return fmt.Sprintf("the Roles Anywhere certificate %q (serial %s) is not valid before %s (now %s): check this node's clock and the issuer's", e.Subject, e.Serial, e.NotBefore.UTC().Format(time.RFC3339), e.Now.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("the Roles Anywhere certificate %q (serial %s) expired at %s: it was not renewed in time; run `podid doctor` to see why (podid's own CA renews it itself, cert-manager per its Certificate)", e.Subject, e.Serial, e.NotAfter.UTC().Format(time.RFC3339))
}

func checkValidity(id *Identity, now time.Time) error {
	c := id.Certificate
	if now.Before(c.NotBefore) || !now.Before(c.NotAfter) {
		return &CertificateError{Subject: c.Subject.String(), Serial: serialHex(c), NotBefore: c.NotBefore, NotAfter: c.NotAfter, Now: now}
	}
	return nil
}
