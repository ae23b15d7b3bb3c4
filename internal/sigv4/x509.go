package sigv4

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// IAM Roles Anywhere's CreateSession is signed with the private key of an
// X.509 certificate instead of a secret access key: SigV4's canonical request
// and string to sign, the certificate's serial number (decimal) where the
// access key ID goes, the certificate in X-Amz-X509 (base64 DER) and its
// intermediates in X-Amz-X509-Chain (comma-separated), and the signature an
// RSA PKCS #1 v1.5 or ASN.1 ECDSA signature over the SHA-256 of the string to
// sign. AWS publishes no Go signer podid can link (rolesanywhere-credential-
// helper's package needs cgo for PKCS #11 and aws-sdk-go v1), so it is here,
// beside the canonicalisation it shares with SigV4.
const (
	AlgorithmX509RSA   = "AWS4-X509-RSA-SHA256"
	AlgorithmX509ECDSA = "AWS4-X509-ECDSA-SHA256"
)

// Headers of an X.509-signed request.
const (
	HeaderX509      = "X-Amz-X509"
	HeaderX509Chain = "X-Amz-X509-Chain"
)

// SignX509 signs r in place for service in region at the given time with key,
// the private key of cert; chain are cert's intermediates (not the root).
// payloadHash is the hex SHA-256 of the body; empty means an empty body. It
// signs host, content-type when present, and every X-Amz-* header.
func SignX509(r *http.Request, key crypto.Signer, cert *x509.Certificate, chain []*x509.Certificate, service, region string, at time.Time, payloadHash string) error {
	algorithm, err := x509Algorithm(cert.PublicKey)
	if err != nil {
		return err
	}
	if !publicKeyEqual(key.Public(), cert.PublicKey) {
		return errors.New("sigv4: the private key is not the certificate's")
	}
	if payloadHash == "" {
		payloadHash = emptyPayloadHash
	}
	amzDate := at.UTC().Format(amzDateFormat)
	r.Header.Set(headerDate, amzDate)
	r.Header.Set(HeaderX509, base64.StdEncoding.EncodeToString(cert.Raw))
	if len(chain) > 0 {
		parts := make([]string, len(chain))
		for i, c := range chain {
			parts[i] = base64.StdEncoding.EncodeToString(c.Raw)
		}
		r.Header.Set(HeaderX509Chain, strings.Join(parts, ","))
	}
	signed := signedHeaders(r)
	s := scope{date: at.UTC().Format(shortDate), region: region, service: service, terminal: "aws4_request"}
	digest := x509Digest(algorithm, amzDate, s, canonicalRequest(r, signed, payloadHash, service))
	sig, err := key.Sign(rand.Reader, digest, crypto.SHA256)
	if err != nil {
		return fmt.Errorf("sigv4: signing with the certificate's key: %w", err)
	}
	r.Header.Set("Authorization", fmt.Sprintf("%s Credential=%s/%s, SignedHeaders=%s, Signature=%s",
		algorithm, cert.SerialNumber.String(), s.String(), strings.Join(signed, ";"), hex.EncodeToString(sig)))
	return nil
}

// PayloadHash is the hex SHA-256 of a body, as the signers take it.
func PayloadHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

func x509Algorithm(pub any) (string, error) {
	switch pub.(type) {
	case *rsa.PublicKey:
		return AlgorithmX509RSA, nil
	case *ecdsa.PublicKey:
		return AlgorithmX509ECDSA, nil
	}
	return "", fmt.Errorf("sigv4: a %T certificate key cannot sign for IAM Roles Anywhere (RSA or ECDSA only)", pub)
}

func publicKeyEqual(a, b any) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

// x509Digest is the SHA-256 of the string to sign, which the key signs.
func x509Digest(algorithm, amzDate string, s scope, canonical string) []byte {
	sum := sha256.Sum256([]byte(canonical))
	stringToSign := algorithm + "\n" + amzDate + "\n" + s.String() + "\n" + hex.EncodeToString(sum[:])
	digest := sha256.Sum256([]byte(stringToSign))
	return digest[:]
}

// X509Result is a request whose X.509 signature verified. Whether its
// certificate is to be trusted (its chain, validity, revocation) is the
// caller's to decide.
type X509Result struct {
	Certificate *x509.Certificate
	// Chain are the intermediates the client sent, in its order.
	Chain  []*x509.Certificate
	Region string
	Body   []byte
}

// VerifyX509 checks that r is signed for service by the private key of the
// certificate it carries. A refusal is an *Error.
func VerifyX509(r *http.Request, service string, now time.Time, maxBody int64) (*X509Result, error) {
	auth, err := parseAuthorization(r.Header.Get("Authorization"), AlgorithmX509RSA, AlgorithmX509ECDSA)
	if err != nil {
		return nil, err
	}
	if auth.scope.service != service {
		return nil, refuse(InvalidSignature, "credential scope names service %q; this endpoint is %q", auth.scope.service, service)
	}
	if auth.scope.terminal != "aws4_request" {
		return nil, refuse(IncompleteSignature, "credential scope must end with aws4_request")
	}
	dateValue := r.Header.Get(headerDate)
	signedAt, err := time.Parse(amzDateFormat, dateValue)
	if err != nil {
		return nil, refuse(IncompleteSignature, "X-Amz-Date %q is missing or not in the form 20060102T150405Z", dateValue)
	}
	if signedAt.Format(shortDate) != auth.scope.date {
		return nil, refuse(InvalidSignature, "credential scope date %s does not match X-Amz-Date %s", auth.scope.date, dateValue)
	}
	if d := now.Sub(signedAt); d > defaultMaxSkew || d < -defaultMaxSkew {
		return nil, refuse(SignatureExpired, "signature expired: signed at %s, now is %s; check the client's clock", dateValue, now.UTC().Format(amzDateFormat))
	}
	for _, h := range []string{"host", "x-amz-date", "x-amz-x509"} {
		if !auth.hasHeader(h) {
			return nil, refuse(IncompleteSignature, "SignedHeaders must include %s", h)
		}
	}
	cert, err := parseDERHeader(r.Header.Get(HeaderX509))
	if err != nil {
		return nil, refuse(IncompleteSignature, "%s is not a base64 DER certificate: %v", HeaderX509, err)
	}
	if auth.accessKeyID != cert.SerialNumber.String() {
		return nil, refuse(InvalidSignature, "Credential names serial number %s; the certificate's is %s", clip(auth.accessKeyID), cert.SerialNumber)
	}
	if want, err := x509Algorithm(cert.PublicKey); err != nil || want != auth.algorithm {
		return nil, refuse(InvalidSignature, "the certificate's key does not sign with %s", auth.algorithm)
	}
	var chain []*x509.Certificate
	if v := r.Header.Get(HeaderX509Chain); v != "" {
		if !auth.hasHeader("x-amz-x509-chain") {
			return nil, refuse(IncompleteSignature, "SignedHeaders must include x-amz-x509-chain when it is sent")
		}
		parts := strings.Split(v, ",")
		if len(parts) > 5 {
			return nil, refuse(IncompleteSignature, "%s holds %d certificates; at most 5 intermediates are accepted", HeaderX509Chain, len(parts))
		}
		for i, part := range parts {
			c, err := parseDERHeader(strings.TrimSpace(part))
			if err != nil {
				return nil, refuse(IncompleteSignature, "%s certificate %d is not base64 DER: %v", HeaderX509Chain, i+1, err)
			}
			chain = append(chain, c)
		}
	}
	body, err := readBody(r, maxBody)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	if h := r.Header.Get(headerSHA256); h != "" && h != payloadHash {
		return nil, refuse(InvalidSignature, "X-Amz-Content-Sha256 does not match the body")
	}
	sig, err := hex.DecodeString(auth.signature)
	if err != nil {
		return nil, refuse(IncompleteSignature, "Signature is not hexadecimal")
	}
	digest := x509Digest(auth.algorithm, dateValue, auth.scope, canonicalRequest(r, auth.signedHeaders, payloadHash, service))
	var valid bool
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		valid = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, sig) == nil
	case *ecdsa.PublicKey:
		valid = ecdsa.VerifyASN1(pub, digest, sig)
	}
	if !valid {
		return nil, refuse(InvalidSignature, "the request signature does not verify with the certificate's public key")
	}
	return &X509Result{Certificate: cert, Chain: chain, Region: auth.scope.region, Body: body}, nil
}

func parseDERHeader(v string) (*x509.Certificate, error) {
	der, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}
