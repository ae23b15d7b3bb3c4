// Package token verifies Kubernetes ServiceAccount tokens offline, against
// the cluster's published signing keys (JWKS), the way a relying party of
// the cluster's OIDC issuer would.
//
// It checks the signature (asymmetric algorithms only: "none" and HMAC are
// refused before any key is touched), issuer, audience, expiry and
// not-before with a small leeway, and decodes the kubernetes.io claims. It
// does not check that the pod the token is bound to still exists: that
// needs the API server, and belongs to the caller (see internal/auth).
package token

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// MaxLength bounds the tokens accepted; Kubernetes tokens are about 1 KiB.
const MaxLength = 16 << 10

// algorithms are the signature algorithms kube-apiserver can sign with.
var algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512}

// Ref names a Kubernetes object a token is bound to.
type Ref struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

// Claims is what a verified token says.
type Claims struct {
	Issuer         string
	Audience       []string
	Subject        string
	Expiry         time.Time
	IssuedAt       time.Time
	Namespace      string
	ServiceAccount Ref
	// Pod and Node are nil when the token is not bound to them.
	Pod  *Ref
	Node *Ref
}

type kubernetesClaims struct {
	Kubernetes *struct {
		Namespace      string `json:"namespace"`
		ServiceAccount *Ref   `json:"serviceaccount"`
		Pod            *Ref   `json:"pod"`
		Node           *Ref   `json:"node"`
	} `json:"kubernetes.io"`
}

// Reason says why a token was refused.
type Reason string

// The reasons a token is refused.
const (
	Malformed       Reason = "Malformed"
	BadSignature    Reason = "BadSignature"
	Expired         Reason = "Expired"
	NotYetValid     Reason = "NotYetValid"
	WrongIssuer     Reason = "WrongIssuer"
	WrongAudience   Reason = "WrongAudience"
	NotKubernetes   Reason = "NotKubernetes"
	KeysUnavailable Reason = "KeysUnavailable"
)

// Error is a refused token. Message is safe to show the presenter.
type Error struct {
	Reason  Reason
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

func refuse(reason Reason, err error, format string, args ...any) *Error {
	return &Error{Reason: reason, Message: fmt.Sprintf(format, args...), Err: err}
}

// Verifier verifies tokens of one issuer.
type Verifier struct {
	issuer string
	keys   *KeySet
	leeway time.Duration
	now    func() time.Time
}

// Options configure a Verifier.
type Options struct {
	// Issuer is the expected "iss".
	Issuer string
	// Keys holds the issuer's signing keys.
	Keys *KeySet
	// Leeway tolerates clock skew on exp, nbf and iat; zero means 30 s.
	Leeway time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewVerifier returns a verifier for opts.Issuer.
func NewVerifier(opts Options) *Verifier {
	v := &Verifier{issuer: opts.Issuer, keys: opts.Keys, leeway: opts.Leeway, now: opts.Now}
	if v.leeway == 0 {
		v.leeway = 30 * time.Second
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v
}

// Issuer is the issuer this verifier accepts.
func (v *Verifier) Issuer() string { return v.issuer }

// Verify checks raw and returns its claims when it is a valid Kubernetes
// ServiceAccount token for audience. A refusal is an *Error.
func (v *Verifier) Verify(ctx context.Context, raw, audience string) (*Claims, error) {
	if raw == "" {
		return nil, refuse(Malformed, nil, "the token is empty")
	}
	if len(raw) > MaxLength {
		return nil, refuse(Malformed, nil, "the token is longer than %d bytes", MaxLength)
	}
	tok, err := jwt.ParseSigned(raw, algorithms)
	if err != nil {
		return nil, refuse(Malformed, err, "the token is not a JWT signed with an asymmetric algorithm")
	}
	if len(tok.Headers) != 1 {
		return nil, refuse(Malformed, nil, "the token must carry exactly one signature")
	}
	keys, err := v.keys.Lookup(ctx, tok.Headers[0].KeyID)
	if err != nil {
		return nil, refuse(KeysUnavailable, err, "the cluster's signing keys could not be fetched")
	}
	var std jwt.Claims
	var kube kubernetesClaims
	verified := false
	for _, k := range keys {
		if err := tok.Claims(k.Key, &std, &kube); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, refuse(BadSignature, nil, "the token's signature does not verify against the cluster's signing keys")
	}
	now := v.now()
	err = std.ValidateWithLeeway(jwt.Expected{Issuer: v.issuer, AnyAudience: jwt.Audience{audience}, Time: now}, v.leeway)
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrExpired):
		return nil, refuse(Expired, nil, "the token expired at %s", std.Expiry.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return nil, refuse(NotYetValid, nil, "the token is not valid yet; check the clocks of the cluster and of podid")
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return nil, refuse(WrongIssuer, nil, "the token was issued by %q, not by this cluster (%q)", clip(std.Issuer), v.issuer)
	case errors.Is(err, jwt.ErrInvalidAudience):
		return nil, refuse(WrongAudience, nil, "the token's audience is %q; it must be %q", clip(strings.Join(std.Audience, ",")), audience)
	default:
		return nil, refuse(Malformed, err, "the token's claims are invalid")
	}
	if std.Expiry == nil {
		return nil, refuse(Malformed, nil, "the token has no expiry")
	}
	k := kube.Kubernetes
	if k == nil || k.Namespace == "" || k.ServiceAccount == nil || k.ServiceAccount.Name == "" {
		return nil, refuse(NotKubernetes, nil, "the token carries no kubernetes.io namespace and ServiceAccount claims")
	}
	if want := "system:serviceaccount:" + k.Namespace + ":" + k.ServiceAccount.Name; std.Subject != want {
		return nil, refuse(NotKubernetes, nil, "the token's subject does not match its kubernetes.io claims")
	}
	c := &Claims{
		Issuer:         std.Issuer,
		Audience:       std.Audience,
		Subject:        std.Subject,
		Expiry:         std.Expiry.Time(),
		Namespace:      k.Namespace,
		ServiceAccount: *k.ServiceAccount,
		Pod:            k.Pod,
		Node:           k.Node,
	}
	if std.IssuedAt != nil {
		c.IssuedAt = std.IssuedAt.Time()
	}
	return c, nil
}

func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}
