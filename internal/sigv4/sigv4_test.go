package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

var (
	signedAt = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	longKey  = Key{AccessKeyID: "AKIAPODIDTEST000001", SecretAccessKey: "secret/one+two", Principal: "alice"}
	tempKey  = Key{AccessKeyID: "ASIAPODIDTEST000002", SecretAccessKey: "temp-secret", SessionToken: "session-token-xyz", Principal: "bob"}
)

// sign signs a request the way aws-sdk-go-v2 clients do.
func sign(t testing.TB, r *http.Request, k Key, service, region string, at time.Time) {
	t.Helper()
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: k.AccessKeyID, SecretAccessKey: k.SecretAccessKey, SessionToken: k.SessionToken}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), service, region, at); err != nil {
		t.Fatal(err)
	}
}

// serve runs v behind a real HTTP server and returns what it said.
func serve(t *testing.T, v *Verifier) (url string, results chan error) {
	results = make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := v.Verify(r)
		if err == nil {
			// The handler can still read the body after verification.
			b, _ := io.ReadAll(r.Body)
			if !bytes.Equal(b, res.Body) {
				err = errors.New("body not restored")
			}
		}
		results <- err
	}))
	t.Cleanup(srv.Close)
	return srv.URL, results
}

func TestVerifyAcceptsSDKSignatures(t *testing.T) {
	v := &Verifier{Service: "eks", Region: "us-east-1", Keys: NewStaticKeys(longKey, tempKey), Now: func() time.Time { return signedAt.Add(time.Minute) }}
	url, results := serve(t, v)
	cases := []struct {
		name, method, path, body string
		key                      Key
		header                   http.Header
	}{
		{name: "post json", method: "POST", path: "/clusters/sandbox/pod-identity-associations", body: `{"namespace":"demo"}`, key: longKey},
		{name: "session token", method: "POST", path: "/clusters/sandbox/assume-role-for-pod-identity", body: `{"token":"x"}`, key: tempKey},
		{name: "get with query", method: "GET", path: "/clusters/c/pod-identity-associations?serviceAccount=a%20b&namespace=demo&maxResults=5&nextToken=x%2By%3D", key: longKey},
		{name: "escaped path", method: "DELETE", path: "/clusters/c/pod-identity-associations/a-%2Fodd%20id", key: longKey},
		{name: "extra signed headers", method: "POST", path: "/x", body: "{}", key: longKey, header: http.Header{"X-Amz-Target": {"a.b"}, "Content-Type": {"application/json"}, "X-Custom": {"  spaced   value  "}}},
		{name: "empty body", method: "GET", path: "/", key: longKey},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body io.Reader
			if c.body != "" {
				body = strings.NewReader(c.body)
			}
			req, err := http.NewRequest(c.method, url+c.path, body)
			if err != nil {
				t.Fatal(err)
			}
			for k, vs := range c.header {
				req.Header[k] = vs
			}
			sign(t, req, c.key, "eks", "us-east-1", signedAt)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if err := <-results; err != nil {
				t.Fatalf("a request signed by aws-sdk-go-v2 was refused: %v", err)
			}
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	now := signedAt.Add(time.Minute)
	v := &Verifier{Service: "eks-auth", Region: "us-east-1", Keys: NewStaticKeys(longKey, tempKey), Now: func() time.Time { return now }}
	url, results := serve(t, v)
	cases := []struct {
		name   string
		mutate func(t *testing.T, r *http.Request)
		code   Code
	}{
		{"unsigned", func(t *testing.T, r *http.Request) {}, MissingAuthentication},
		{"other scheme", func(t *testing.T, r *http.Request) { r.Header.Set("Authorization", "Bearer abc") }, IncompleteSignature},
		{"garbage after algorithm", func(t *testing.T, r *http.Request) { r.Header.Set("Authorization", Algorithm+" nonsense") }, IncompleteSignature},
		{"unknown key", func(t *testing.T, r *http.Request) {
			sign(t, r, Key{AccessKeyID: "AKIAUNKNOWN", SecretAccessKey: "s"}, "eks-auth", "us-east-1", signedAt)
		}, UnrecognizedClient},
		{"wrong secret", func(t *testing.T, r *http.Request) {
			sign(t, r, Key{AccessKeyID: longKey.AccessKeyID, SecretAccessKey: "wrong"}, "eks-auth", "us-east-1", signedAt)
		}, InvalidSignature},
		{"wrong service", func(t *testing.T, r *http.Request) { sign(t, r, longKey, "eks", "us-east-1", signedAt) }, InvalidSignature},
		{"wrong region", func(t *testing.T, r *http.Request) { sign(t, r, longKey, "eks-auth", "eu-west-1", signedAt) }, InvalidSignature},
		{"too old", func(t *testing.T, r *http.Request) {
			sign(t, r, longKey, "eks-auth", "us-east-1", signedAt.Add(-10*time.Minute))
		}, SignatureExpired},
		{"from the future", func(t *testing.T, r *http.Request) {
			sign(t, r, longKey, "eks-auth", "us-east-1", signedAt.Add(10*time.Minute))
		}, SignatureExpired},
		{"temporary key without its token", func(t *testing.T, r *http.Request) {
			sign(t, r, Key{AccessKeyID: tempKey.AccessKeyID, SecretAccessKey: tempKey.SecretAccessKey}, "eks-auth", "us-east-1", signedAt)
		}, UnrecognizedClient},
		{"temporary key with a forged token", func(t *testing.T, r *http.Request) {
			sign(t, r, Key{AccessKeyID: tempKey.AccessKeyID, SecretAccessKey: tempKey.SecretAccessKey, SessionToken: "forged"}, "eks-auth", "us-east-1", signedAt)
		}, UnrecognizedClient},
		{"body changed after signing", func(t *testing.T, r *http.Request) {
			sign(t, r, longKey, "eks-auth", "us-east-1", signedAt)
			r.Body = io.NopCloser(strings.NewReader(`{"token":"other"}`))
			r.ContentLength = int64(len(`{"token":"other"}`))
		}, InvalidSignature},
		{"path changed after signing", func(t *testing.T, r *http.Request) {
			sign(t, r, longKey, "eks-auth", "us-east-1", signedAt)
			r.URL.Path = "/clusters/other/assume-role-for-pod-identity"
		}, InvalidSignature},
		{"signed header changed after signing", func(t *testing.T, r *http.Request) {
			sign(t, r, longKey, "eks-auth", "us-east-1", signedAt)
			r.Header.Set("X-Amz-Date", signedAt.Add(time.Second).Format(amzDateFormat))
		}, InvalidSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", url+"/clusters/sandbox/assume-role-for-pod-identity", strings.NewReader(`{"token":"x"}`))
			if err != nil {
				t.Fatal(err)
			}
			c.mutate(t, req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			err = <-results
			var verr *Error
			if !errors.As(err, &verr) {
				t.Fatalf("got %v, want a refusal with code %s", err, c.code)
			}
			if verr.Code != c.code {
				t.Fatalf("code = %s (%s), want %s", verr.Code, verr.Message, c.code)
			}
		})
	}
}

func TestVerifyBoundsTheBody(t *testing.T) {
	v := &Verifier{Service: "eks", Keys: NewStaticKeys(longKey), MaxBody: 16, Now: func() time.Time { return signedAt }}
	req := httptest.NewRequest("POST", "http://podid/x", strings.NewReader(strings.Repeat("a", 17)))
	sign(t, req, longKey, "eks", "us-east-1", signedAt)
	_, err := v.Verify(req)
	if !errors.Is(err, ErrBodyTooLarge) {
		t.Fatalf("got %v, want ErrBodyTooLarge", err)
	}
}

func TestVerifyHandsBackThePrincipal(t *testing.T) {
	v := &Verifier{Service: "sts", Keys: NewStaticKeys(tempKey), Now: func() time.Time { return signedAt }}
	req := httptest.NewRequest("POST", "http://sts.local/", strings.NewReader("Action=GetCallerIdentity"))
	sign(t, req, tempKey, "sts", "eu-central-1", signedAt)
	res, err := v.Verify(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Key.Principal != "bob" || res.Region != "eu-central-1" || string(res.Body) != "Action=GetCallerIdentity" {
		t.Fatalf("result = %+v", res)
	}
}

// FuzzVerify feeds arbitrary Authorization headers, dates, paths and bodies:
// the verifier must never panic and must never accept what it did not sign.
func FuzzVerify(f *testing.F) {
	req := httptest.NewRequest("POST", "http://podid/clusters/c/x", strings.NewReader("{}"))
	sign(f, req, longKey, "eks", "us-east-1", signedAt)
	f.Add(req.Header.Get("Authorization"), req.Header.Get("X-Amz-Date"), "/clusters/c/x", "{}")
	f.Add("AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host, Signature="+strings.Repeat("0", 64), "20261123T100000Z", "/%zz", "")
	f.Add("AWS4-HMAC-SHA256 ,,,==", "", "/", "x")
	v := &Verifier{Service: "eks", Keys: NewStaticKeys(longKey), Now: func() time.Time { return signedAt }}
	f.Fuzz(func(t *testing.T, authz, date, path, body string) {
		r, err := http.NewRequest("POST", "http://podid/", strings.NewReader(body))
		if err != nil {
			return
		}
		r.URL.RawPath = path
		r.URL.Path = path
		r.Header.Set("Authorization", authz)
		r.Header.Set("X-Amz-Date", date)
		res, err := v.Verify(r)
		if err == nil {
			// Only the genuine seed may pass; anything else is a forgery.
			if authz != req.Header.Get("Authorization") || body != "{}" || path != "/clusters/c/x" {
				t.Fatalf("accepted a request it did not sign: %q %q %q", authz, path, body)
			}
			_ = res
		}
	})
}

func TestReplayedRequestsAreRefused(t *testing.T) {
	now := signedAt
	v := &Verifier{Service: "eks", Keys: NewStaticKeys(longKey), Now: func() time.Time { return now }, Replays: NewReplayCache(2)}
	send := func(r *http.Request) error {
		clone := r.Clone(r.Context())
		clone.Body = io.NopCloser(strings.NewReader("{}"))
		_, err := v.Verify(clone)
		return err
	}
	first := httptest.NewRequest("POST", "http://podid/x", strings.NewReader("{}"))
	sign(t, first, longKey, "eks", "us-east-1", signedAt)
	if err := send(first); err != nil {
		t.Fatal(err)
	}
	var verr *Error
	if err := send(first); !errors.As(err, &verr) || verr.Code != InvalidSignature || !strings.Contains(verr.Message, "already received") {
		t.Fatalf("replay: %v", err)
	}
	// A retry as the SDK makes it (another attempt header) is a new signature.
	retry := httptest.NewRequest("POST", "http://podid/x", strings.NewReader("{}"))
	retry.Header.Set("Amz-Sdk-Request", "attempt=2; max=3")
	sign(t, retry, longKey, "eks", "us-east-1", signedAt)
	if err := send(retry); err != nil {
		t.Fatalf("retry: %v", err)
	}
	// The cache (size 2) is full of live signatures: refuse rather than forget.
	third := httptest.NewRequest("POST", "http://podid/y", strings.NewReader("{}"))
	sign(t, third, longKey, "eks", "us-east-1", signedAt)
	if err := send(third); !errors.As(err, &verr) || verr.Code != Throttled {
		t.Fatalf("full cache: %v", err)
	}
	// Once the first two lapse, there is room again.
	now = signedAt.Add(defaultMaxSkew + time.Second)
	fourth := httptest.NewRequest("POST", "http://podid/y", strings.NewReader("{}"))
	sign(t, fourth, longKey, "eks", "us-east-1", now)
	if err := send(fourth); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

// BenchmarkVerifyWithReplayCache is a SigV4 request as podid's EKS APIs
// check it: signature, then the replay cache keyed by the signed content.
// Each iteration is a new request (its own amz-sdk-invocation-id), as
// clients send them; signing is outside the timer.
func BenchmarkVerifyWithReplayCache(b *testing.B) {
	now := signedAt
	v := &Verifier{Service: "eks-auth", Keys: NewStaticKeys(longKey), Now: func() time.Time { return now }, Replays: NewReplayCache(1 << 22)}
	body := `{"clusterName":"c","token":"` + strings.Repeat("t", 900) + `"}`
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		b.StopTimer()
		r := httptest.NewRequest("POST", "http://podid/clusters/c/assume-role-for-pod-identity", strings.NewReader(body))
		r.Header.Set("Amz-Sdk-Invocation-Id", strconv.Itoa(i))
		i++
		sign(b, r, longKey, "eks-auth", "us-east-1", signedAt)
		b.StartTimer()
		if _, err := v.Verify(r); err != nil {
			b.Fatal(err)
		}
	}
}
