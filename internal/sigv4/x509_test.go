package sigv4

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"
)

func selfSigned(t testing.TB, key crypto.Signer, serial int64) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "podid-server.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func sessionRequest(t testing.TB, body string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, "https://rolesanywhere.us-east-1.amazonaws.com/sessions?profileArn=arn%3Aaws%3Arolesanywhere%3Aus-east-1%3A111122223333%3Aprofile%2Fp&roleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fpodid", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	return r
}

func signed(t testing.TB, key crypto.Signer, cert *x509.Certificate, chain []*x509.Certificate, body string, at time.Time) *http.Request {
	t.Helper()
	r := sessionRequest(t, body)
	sum := sha256.Sum256([]byte(body))
	if err := SignX509(r, key, cert, chain, "rolesanywhere", "us-east-1", at, hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestX509SignVerify(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		key       crypto.Signer
		algorithm string
	}{
		{"rsa", rsaKey, AlgorithmX509RSA},
		{"ecdsa", ecKey, AlgorithmX509ECDSA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := selfSigned(t, tc.key, 4711)
			inter := selfSigned(t, tc.key, 17)
			body := `{"durationSeconds":3600}`
			r := signed(t, tc.key, cert, []*x509.Certificate{inter}, body, now)
			if !strings.HasPrefix(r.Header.Get("Authorization"), tc.algorithm+" Credential=4711/20261207/us-east-1/rolesanywhere/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-x509;x-amz-x509-chain, Signature=") {
				t.Fatalf("Authorization = %q", r.Header.Get("Authorization"))
			}
			res, err := VerifyX509(r, "rolesanywhere", now.Add(time.Minute), 0)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Certificate.Equal(cert) || len(res.Chain) != 1 || !res.Chain[0].Equal(inter) || res.Region != "us-east-1" || string(res.Body) != body {
				t.Fatalf("result = %+v", res)
			}

			refused := func(name string, r *http.Request, now time.Time, want Code) {
				t.Helper()
				_, err := VerifyX509(r, "rolesanywhere", now, 0)
				var verr *Error
				if !errors.As(err, &verr) || verr.Code != want {
					t.Errorf("%s: err = %v, want code %s", name, err, want)
				}
			}
			tampered := signed(t, tc.key, cert, nil, body, now)
			tampered.Body = sessionRequest(t, `{"durationSeconds":43200}`).Body
			refused("changed body", tampered, now, InvalidSignature)

			other := signed(t, tc.key, cert, nil, body, now)
			otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			other.Header.Set(HeaderX509, signed(t, otherKey, selfSigned(t, otherKey, 4711), nil, body, now).Header.Get(HeaderX509))
			refused("another certificate of the same serial", other, now, InvalidSignature)

			refused("an hour later", signed(t, tc.key, cert, nil, body, now), now.Add(time.Hour), SignatureExpired)

			query := signed(t, tc.key, cert, nil, body, now)
			query.URL.RawQuery = strings.Replace(query.URL.RawQuery, "podid", "admin", 1)
			refused("another role", query, now, InvalidSignature)

			unsigned := sessionRequest(t, body)
			refused("unsigned", unsigned, now, MissingAuthentication)
		})
	}
}

func TestSignX509RefusesAKeyNotTheCertificates(t *testing.T) {
	a, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := SignX509(sessionRequest(t, ""), b, selfSigned(t, a, 1), nil, "rolesanywhere", "us-east-1", time.Now(), ""); err == nil {
		t.Fatal("signed with a key that is not the certificate's")
	}
}

// FuzzVerifyX509 feeds arbitrary Authorization, certificate and chain
// headers: the verifier must not panic, and whatever it accepts must be
// bound to the body (the same headers over another body are refused).
func FuzzVerifyX509(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	good := signed(f, key, selfSigned(f, key, 9), nil, "{}", now)
	f.Add(good.Header.Get("Authorization"), good.Header.Get(HeaderX509), "")
	f.Add(AlgorithmX509RSA+" Credential=1/20261207/r/rolesanywhere/aws4_request, SignedHeaders=host;x-amz-date;x-amz-x509, Signature=00", "AAAA", "AAAA,BBBB")
	f.Fuzz(func(t *testing.T, authz, cert, chain string) {
		r := sessionRequest(t, "{}")
		r.Header.Set("X-Amz-Date", now.Format(amzDateFormat))
		r.Header.Set("Authorization", authz)
		r.Header.Set(HeaderX509, cert)
		if chain != "" {
			r.Header.Set(HeaderX509Chain, chain)
		}
		if _, err := VerifyX509(r, "rolesanywhere", now, 0); err != nil {
			return
		}
		other := sessionRequest(t, `{"durationSeconds":43200}`)
		other.Header = r.Header.Clone()
		if _, err := VerifyX509(other, "rolesanywhere", now, 0); err == nil {
			t.Fatalf("accepted the same signature over another body: %q", authz)
		}
	})
}
