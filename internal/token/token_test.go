package token

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const issuer = "https://kubernetes.default.svc.cluster.local"

var now = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

type signer struct {
	key *rsa.PrivateKey
	kid string
}

func newSigner(t testing.TB, kid string) signer {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return signer{k, kid}
}

func (s signer) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &s.key.PublicKey, KeyID: s.kid, Algorithm: "RS256", Use: "sig"}
}

type podClaims struct {
	jwt.Claims
	Kubernetes map[string]any `json:"kubernetes.io,omitempty"`
}

func claims(mutate ...func(*podClaims)) podClaims {
	c := podClaims{
		Claims: jwt.Claims{
			Issuer: issuer, Subject: "system:serviceaccount:demo:app", Audience: jwt.Audience{"pods.eks.amazonaws.com"},
			Expiry: jwt.NewNumericDate(now.Add(time.Hour)), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)), IssuedAt: jwt.NewNumericDate(now.Add(-time.Minute)),
		},
		Kubernetes: map[string]any{
			"namespace":      "demo",
			"serviceaccount": map[string]string{"name": "app", "uid": "sa-uid"},
			"pod":            map[string]string{"name": "app-1", "uid": "pod-uid"},
			"node":           map[string]string{"name": "node-a", "uid": "node-uid"},
		},
	}
	for _, m := range mutate {
		m(&c)
	}
	return c
}

func (s signer) sign(t testing.TB, c podClaims) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: s.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", s.kid))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(sig).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// unsigned builds a token with an arbitrary header and signature bytes.
func unsigned(header map[string]string, c podClaims, sig []byte) string {
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(c)
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(p) + "." + enc(sig)
}

type fetcher struct {
	mu    sync.Mutex
	set   jose.JSONWebKeySet
	calls atomic.Int32
	err   error
}

func (f *fetcher) fetch(context.Context) (*jose.JSONWebKeySet, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	set := f.set
	return &set, nil
}

func TestVerify(t *testing.T) {
	good := newSigner(t, "k1")
	other := newSigner(t, "k1") // same kid, different key: a forgery
	f := &fetcher{set: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{good.jwk()}}}
	clock := func() time.Time { return now }
	v := NewVerifier(Options{Issuer: issuer, Keys: NewKeySet(f.fetch, KeySetOptions{Now: clock}), Now: clock})

	pubDER, _ := x509.MarshalPKIXPublicKey(&good.key.PublicKey)
	hmacWithPublicKey := func() string {
		sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pubDER}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
		raw, _ := jwt.Signed(sig).Claims(claims()).Serialize()
		return raw
	}()

	cases := []struct {
		name   string
		token  string
		reason Reason
	}{
		{"valid", good.sign(t, claims()), ""},
		{"expired", good.sign(t, claims(func(c *podClaims) { c.Expiry = jwt.NewNumericDate(now.Add(-time.Minute)) })), Expired},
		{"expired within leeway", good.sign(t, claims(func(c *podClaims) { c.Expiry = jwt.NewNumericDate(now.Add(-10 * time.Second)) })), ""},
		{"not yet valid", good.sign(t, claims(func(c *podClaims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) })), NotYetValid},
		{"issued in the future", good.sign(t, claims(func(c *podClaims) { c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour)) })), NotYetValid},
		{"wrong issuer", good.sign(t, claims(func(c *podClaims) { c.Issuer = "https://evil.example" })), WrongIssuer},
		{"wrong audience", good.sign(t, claims(func(c *podClaims) { c.Audience = jwt.Audience{"sts.amazonaws.com"} })), WrongAudience},
		{"no expiry", good.sign(t, claims(func(c *podClaims) { c.Expiry = nil })), Malformed},
		{"signed by another key", other.sign(t, claims()), BadSignature},
		{"alg none", unsigned(map[string]string{"alg": "none", "kid": "k1"}, claims(), nil), Malformed},
		{"HS256 keyed with the public key", hmacWithPublicKey, Malformed},
		{"not a JWT", "not-a-token", Malformed},
		{"empty", "", Malformed},
		{"oversized", strings.Repeat("a", MaxLength+1), Malformed},
		{"no kubernetes claims", good.sign(t, claims(func(c *podClaims) { c.Kubernetes = nil })), NotKubernetes},
		{"subject disagrees", good.sign(t, claims(func(c *podClaims) { c.Subject = "system:serviceaccount:kube-system:admin" })), NotKubernetes},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := v.Verify(t.Context(), c.token, "pods.eks.amazonaws.com")
			if c.reason == "" {
				if err != nil {
					t.Fatalf("refused a valid token: %v", err)
				}
				if got.Namespace != "demo" || got.ServiceAccount.Name != "app" || got.Pod.UID != "pod-uid" || got.Node.Name != "node-a" {
					t.Fatalf("claims = %+v", got)
				}
				return
			}
			var terr *Error
			if !errors.As(err, &terr) || terr.Reason != c.reason {
				t.Fatalf("got %v, want reason %s", err, c.reason)
			}
		})
	}
}

func TestKeyRotationAndRefetchLimits(t *testing.T) {
	old, rotated := newSigner(t, "old"), newSigner(t, "new")
	f := &fetcher{set: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{old.jwk()}}}
	var mu sync.Mutex
	current := now
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return current }
	advance := func(d time.Duration) { mu.Lock(); current = current.Add(d); mu.Unlock() }
	v := NewVerifier(Options{Issuer: issuer, Keys: NewKeySet(f.fetch, KeySetOptions{Now: clock, MinInterval: 10 * time.Second, MaxAge: 5 * time.Minute}), Now: clock})
	ctx := t.Context()

	if _, err := v.Verify(ctx, old.sign(t, claims()), "pods.eks.amazonaws.com"); err != nil {
		t.Fatal(err)
	}
	// The issuer rotates; a token with the new kid triggers one refetch.
	f.mu.Lock()
	f.set.Keys = append(f.set.Keys, rotated.jwk())
	f.mu.Unlock()
	advance(11 * time.Second)
	if _, err := v.Verify(ctx, rotated.sign(t, claims()), "pods.eks.amazonaws.com"); err != nil {
		t.Fatalf("token signed with the rotated key: %v", err)
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
	// A burst of tokens naming unknown keys costs at most one fetch per interval,
	// however many arrive at once.
	forged := newSigner(t, "made-up")
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { v.Verify(ctx, forged.sign(t, claims()), "pods.eks.amazonaws.com") })
	}
	wg.Wait()
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("fetches after a burst of unknown kids within the interval = %d, want still 2", n)
	}
	advance(11 * time.Second)
	for range 20 {
		v.Verify(ctx, forged.sign(t, claims()), "pods.eks.amazonaws.com")
	}
	if n := f.calls.Load(); n != 3 {
		t.Fatalf("fetches after the interval = %d, want 3", n)
	}
	// The issuer withdraws the old key; once the keys are older than MaxAge
	// the old key stops verifying, even while the fetch itself fails later.
	f.mu.Lock()
	f.set.Keys = []jose.JSONWebKey{rotated.jwk()}
	f.mu.Unlock()
	advance(6 * time.Minute)
	if _, err := v.Verify(ctx, old.sign(t, claims()), "pods.eks.amazonaws.com"); err == nil {
		t.Fatal("a withdrawn key still verifies")
	}
	f.mu.Lock()
	f.err = errors.New("apiserver down")
	f.mu.Unlock()
	advance(6 * time.Minute)
	if _, err := v.Verify(ctx, rotated.sign(t, claims()), "pods.eks.amazonaws.com"); err != nil {
		t.Fatalf("known keys must keep working while the issuer is unreachable: %v", err)
	}
}

func TestKeysUnavailable(t *testing.T) {
	f := &fetcher{err: errors.New("connection refused")}
	v := NewVerifier(Options{Issuer: issuer, Keys: NewKeySet(f.fetch, KeySetOptions{})})
	_, err := v.Verify(t.Context(), newSigner(t, "k").sign(t, claims()), "pods.eks.amazonaws.com")
	var terr *Error
	if !errors.As(err, &terr) || terr.Reason != KeysUnavailable {
		t.Fatalf("got %v, want KeysUnavailable", err)
	}
}

// FuzzVerify feeds arbitrary strings, and mutations of a valid token, to the
// verifier: it must not panic, and must accept only the genuine token.
func FuzzVerify(f *testing.F) {
	s := newSigner(f, "k1")
	valid := s.sign(f, claims())
	f.Add(valid)
	f.Add(unsigned(map[string]string{"alg": "none"}, claims(), nil))
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJSUzI1NiJ9..")
	keys := NewKeySet(func(context.Context) (*jose.JSONWebKeySet, error) {
		return &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{s.jwk()}}, nil
	}, KeySetOptions{Now: func() time.Time { return now }})
	v := NewVerifier(Options{Issuer: issuer, Keys: keys, Now: func() time.Time { return now }})
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := v.Verify(context.Background(), raw, "pods.eks.amazonaws.com")
		if err == nil && raw != valid {
			// Base64 has more than one spelling of some payloads; a different
			// string may carry the same signed claims, never different ones.
			if c.Pod == nil || c.Pod.UID != "pod-uid" || c.Namespace != "demo" {
				t.Fatalf("accepted a token it should not: %q", raw)
			}
		}
	})
}
