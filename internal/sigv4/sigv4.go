// Package sigv4 verifies AWS Signature Version 4 and 4A on incoming HTTP
// requests, and signs with SigV4A (which aws-sdk-go-v2 does not export).
//
// podid's AWS-compatible APIs (EKS Auth, the EKS association API) and the
// STS/IAM emulator accept requests that unmodified AWS clients sign. The AWS
// SDKs only sign; nothing well kept verifies, so the canonical request is
// rebuilt here from the SignedHeaders the client names, following the
// published algorithm, and checked against signatures made by aws-sdk-go-v2
// in the tests. Only the Authorization-header form is accepted (no presigned
// URLs, no chunked payload signing). SigV4A is in sigv4a.go.
package sigv4

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Algorithm is SigV4's signing algorithm.
const Algorithm = "AWS4-HMAC-SHA256"

const (
	amzDateFormat  = "20060102T150405Z"
	shortDate      = "20060102"
	headerDate     = "X-Amz-Date"
	headerToken    = "X-Amz-Security-Token"
	headerSHA256   = "X-Amz-Content-Sha256"
	defaultMaxSkew = 5 * time.Minute
)

// Key is a secret a caller signs with, as a KeyStore knows it.
type Key struct {
	AccessKeyID     string
	SecretAccessKey string
	// SessionToken must be presented with the key when non-empty
	// (temporary credentials); a key without one must be used without one.
	SessionToken string
	// Principal is whatever the store wants the caller to be known as; the
	// verifier hands it back untouched.
	Principal any
}

// KeyStore finds the key for an access key ID. It returns ErrUnknownKey when
// there is none, so callers can tell "no such key" from a store failure.
type KeyStore interface {
	Key(ctx context.Context, accessKeyID string) (Key, error)
}

// ErrUnknownKey is returned by a KeyStore for an access key it does not hold.
var ErrUnknownKey = errors.New("unknown access key")

// Code names why a request was refused, in the AWS error vocabulary.
type Code string

// The AWS error codes a verification failure maps to.
const (
	// MissingAuthentication: there is no SigV4 Authorization header.
	MissingAuthentication Code = "MissingAuthenticationTokenException"
	// IncompleteSignature: the Authorization header or X-Amz-Date is malformed.
	IncompleteSignature Code = "IncompleteSignatureException"
	// UnrecognizedClient: the access key or its session token is unknown.
	UnrecognizedClient Code = "UnrecognizedClientException"
	// InvalidSignature: the signature does not match, or scope is wrong.
	InvalidSignature Code = "InvalidSignatureException"
	// SignatureExpired: X-Amz-Date is outside the allowed skew.
	SignatureExpired Code = "InvalidSignatureException"
	// Throttled: the replay cache is full of live signatures.
	Throttled Code = "ThrottlingException"
)

// Error is a refused request. Message is safe to return to the client; the
// wrapped error, if any, is for the log.
type Error struct {
	Code    Code
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return string(e.Code) + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

func refuse(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Verifier checks requests for one service.
type Verifier struct {
	// Service is the signing name the credential scope must carry, e.g. "eks-auth".
	Service string
	// Region, when set, is the only region the scope may name.
	Region string
	// Keys finds signing keys.
	Keys KeyStore
	// MaxSkew bounds |now - X-Amz-Date|; zero means five minutes, as AWS.
	MaxSkew time.Duration
	// MaxBody bounds the body read to hash it; zero means 1 MiB.
	MaxBody int64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Replays, when set, refuses a signature seen before.
	Replays *ReplayCache
}

// Result is a verified request.
type Result struct {
	Key Key
	// Region is the scope's region, or for SigV4A the signed region set
	// (e.g. "*" or "us-east-1,eu-west-1").
	Region string
	// Algorithm is Algorithm or AlgorithmV4A.
	Algorithm string
	// Body is the request body, read once to hash it. The verifier also
	// replaces r.Body with a reader over it, so handlers can decode as usual.
	Body []byte
}

// IsSigned reports whether r carries a SigV4 or SigV4A Authorization header,
// so that a server accepting more than one scheme can choose without reading
// further.
func IsSigned(r *http.Request) bool {
	a := r.Header.Get("Authorization")
	return strings.HasPrefix(a, Algorithm+" ") || strings.HasPrefix(a, AlgorithmV4A+" ")
}

// Verify checks r's signature and returns the key that made it. A refusal is
// an *Error; a failing KeyStore or an unreadable body is returned wrapped.
func (v *Verifier) Verify(r *http.Request) (*Result, error) {
	auth, err := parseAuthorization(r.Header.Get("Authorization"), Algorithm, AlgorithmV4A)
	if err != nil {
		return nil, err
	}
	if auth.scope.service != v.Service {
		return nil, refuse(InvalidSignature, "credential scope names service %q; this endpoint is %q", auth.scope.service, v.Service)
	}
	if auth.algorithm == Algorithm && v.Region != "" && auth.scope.region != v.Region {
		return nil, refuse(InvalidSignature, "credential scope names region %q; this endpoint signs for %q", auth.scope.region, v.Region)
	}
	if auth.algorithm == AlgorithmV4A {
		if !auth.hasHeader("x-amz-region-set") {
			return nil, refuse(IncompleteSignature, "a SigV4A request must sign X-Amz-Region-Set")
		}
		set := r.Header.Get(headerRegionSet)
		if v.Region != "" && !regionSetAllows(set, v.Region) {
			return nil, refuse(InvalidSignature, "X-Amz-Region-Set %q does not include this endpoint's region %q", clip(set), v.Region)
		}
		auth.scope.region = set
	}
	if auth.scope.terminal != "aws4_request" {
		return nil, refuse(IncompleteSignature, "credential scope must end with aws4_request")
	}

	dateValue := r.Header.Get(headerDate)
	if dateValue == "" {
		return nil, refuse(IncompleteSignature, "the request has no X-Amz-Date header")
	}
	signedAt, err := time.Parse(amzDateFormat, dateValue)
	if err != nil {
		return nil, refuse(IncompleteSignature, "X-Amz-Date %q is not in the form 20060102T150405Z", dateValue)
	}
	if signedAt.Format(shortDate) != auth.scope.date {
		return nil, refuse(InvalidSignature, "credential scope date %s does not match X-Amz-Date %s", auth.scope.date, dateValue)
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	skew := v.MaxSkew
	if skew == 0 {
		skew = defaultMaxSkew
	}
	if d := now().Sub(signedAt); d > skew || d < -skew {
		return nil, refuse(SignatureExpired, "signature expired: signed at %s, now is %s (allowed skew %s); check the client's clock",
			signedAt.Format(amzDateFormat), now().UTC().Format(amzDateFormat), skew)
	}
	if !auth.hasHeader("host") {
		return nil, refuse(IncompleteSignature, "SignedHeaders must include host")
	}

	key, err := v.Keys.Key(r.Context(), auth.accessKeyID)
	if errors.Is(err, ErrUnknownKey) {
		return nil, refuse(UnrecognizedClient, "the security token included in the request is invalid")
	}
	if err != nil {
		return nil, fmt.Errorf("looking up access key: %w", err)
	}
	if token := r.Header.Get(headerToken); token != key.SessionToken {
		return nil, refuse(UnrecognizedClient, "the security token included in the request is invalid")
	}
	if key.SessionToken != "" && !auth.hasHeader("x-amz-security-token") {
		return nil, refuse(IncompleteSignature, "SignedHeaders must include x-amz-security-token")
	}

	body, err := readBody(r, v.MaxBody)
	if err != nil {
		return nil, err
	}
	payloadHash := r.Header.Get(headerSHA256)
	if payloadHash == "" || payloadHash == "UNSIGNED-PAYLOAD" || strings.HasPrefix(payloadHash, "STREAMING-") {
		// Services other than S3 always hash the payload; so does podid.
		sum := sha256.Sum256(body)
		payloadHash = hex.EncodeToString(sum[:])
	} else if sum := sha256.Sum256(body); payloadHash != hex.EncodeToString(sum[:]) {
		return nil, refuse(InvalidSignature, "X-Amz-Content-Sha256 does not match the body")
	}

	canonical := canonicalRequest(r, auth.signedHeaders, payloadHash, v.Service)
	var valid bool
	if auth.algorithm == AlgorithmV4A {
		if valid, err = verifyV4A(key.SecretAccessKey, key.AccessKeyID, dateValue, auth.scope, canonical, auth.signature); err != nil {
			return nil, fmt.Errorf("verifying a SigV4A signature: %w", err)
		}
	} else {
		want := signature(key.SecretAccessKey, auth.scope, dateValue, canonical)
		valid = hmac.Equal([]byte(want), []byte(auth.signature))
	}
	if !valid {
		return nil, refuse(InvalidSignature, "the request signature we calculated does not match the signature you provided; check your secret access key and signing method")
	}
	if v.Replays != nil {
		// Only a verified signature is remembered, so forgeries cannot fill
		// the cache. It is remembered by what it signs, not by its text: the
		// same signature in upper-case hex, or a SigV4A signature's other
		// valid form (r, n−s), signs the same request and is a replay too.
		fresh, full := v.Replays.firstUse(signedContent(auth.accessKeyID, auth.algorithm, dateValue, auth.scope, canonical), now(), signedAt.Add(skew))
		if full {
			return nil, refuse(Throttled, "too many signed requests in the last %s; slow down", skew)
		}
		if !fresh {
			return nil, refuse(InvalidSignature, "this signed request was already received; sign each request anew")
		}
	}
	return &Result{Key: key, Region: auth.scope.region, Algorithm: auth.algorithm, Body: body}, nil
}

// readBody reads at most max bytes of r's body and puts them back.
func readBody(r *http.Request, max int64) ([]byte, error) {
	if max == 0 {
		max = 1 << 20
	}
	if r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading request body: %w", err)
	}
	if int64(len(body)) > max {
		return nil, &Error{Code: IncompleteSignature, Message: fmt.Sprintf("the request body is larger than %d bytes", max), Err: ErrBodyTooLarge}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

// ErrBodyTooLarge is wrapped by the *Error for a body over the limit.
var ErrBodyTooLarge = errors.New("request body too large")

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

// signature computes the hex signature over a canonical request.
func signature(secret string, s scope, amzDate, canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	stringToSign := Algorithm + "\n" + amzDate + "\n" + s.String() + "\n" + hex.EncodeToString(sum[:])
	k := hmacSHA256([]byte("AWS4"+secret), s.date)
	k = hmacSHA256(k, s.region)
	k = hmacSHA256(k, s.service)
	k = hmacSHA256(k, "aws4_request")
	return hex.EncodeToString(hmacSHA256(k, stringToSign))
}
