package sigv4

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The aws-c-auth SigV4A test suite's credentials and the public key it
// publishes for them (v4a/get-vanilla/public-key.json), and the SDKs'
// second vector.
var v4aVectors = []struct {
	name, accessKeyID, secret string
	x, y, d                   string
}{
	{
		name: "aws-c-auth get-vanilla", accessKeyID: "AKIDEXAMPLE", secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
		x: "b6618f6a65740a99e650b33b6b4b5bd0d43b176d721a3edfea7e7d2d56d936b1",
		y: "865ed22a7eadc9c5cb9d2cbaca1b3699139fedc5043dc6661864218330c8e518",
		d: "7efc8c0e65a324242818c5a50c891c6060b6a00717b7ba3cbe3c5d765be9259c",
	},
	{
		name: "aws-sdk random key", accessKeyID: "AKISORANDOMAASORANDOM", secret: "q+jcrXGc+0zWN6uzclKVhvMmUsIfRPa4rlRandom",
		x: "15d242ceebf8d8169fd6a8b5a746c41140414c3b07579038da06af89190fffcb",
		y: "0515242cedd82e94799482e4c0514b505afccf2c0c98d6a553bf539f424c5ec0",
	},
}

func TestDeriveV4AKeyMatchesPublishedVectors(t *testing.T) {
	for _, v := range v4aVectors {
		t.Run(v.name, func(t *testing.T) {
			key, err := DeriveV4AKey(v.accessKeyID, v.secret)
			if err != nil {
				t.Fatal(err)
			}
			pub, err := key.PublicKey.Bytes() // 0x04 || X || Y
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(pub[1:33]); got != v.x {
				t.Errorf("X = %s, want %s", got, v.x)
			}
			if got := hex.EncodeToString(pub[33:]); got != v.y {
				t.Errorf("Y = %s, want %s", got, v.y)
			}
			if v.d != "" {
				d, _ := key.Bytes()
				if got := hex.EncodeToString(d); got != v.d {
					t.Errorf("d = %s, want %s", got, v.d)
				}
			}
		})
	}
}

// vectorPublicKey is get-vanilla's published public key, parsed on its own
// so that the signature check does not depend on DeriveV4AKey.
func vectorPublicKey(t *testing.T) *ecdsa.PublicKey {
	raw, _ := hex.DecodeString("04" + v4aVectors[0].x + v4aVectors[0].y)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func TestSignV4AMatchesGetVanilla(t *testing.T) {
	at := time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)
	r := httptest.NewRequest("GET", "https://example.amazonaws.com/", nil)
	creds := Credentials{AccessKeyID: v4aVectors[0].accessKeyID, SecretAccessKey: v4aVectors[0].secret}
	if err := SignV4A(r, creds, "service", []string{"us-east-1"}, at, ""); err != nil {
		t.Fatal(err)
	}
	wantPrefix := "AWS4-ECDSA-P256-SHA256 Credential=AKIDEXAMPLE/20150830/service/aws4_request, SignedHeaders=host;x-amz-date;x-amz-region-set, Signature="
	authz := r.Header.Get("Authorization")
	if !strings.HasPrefix(authz, wantPrefix) {
		t.Fatalf("Authorization = %q, want prefix %q", authz, wantPrefix)
	}
	// The suite's header-string-to-sign ends with this canonical request hash.
	canonical := canonicalRequest(r, []string{"host", "x-amz-date", "x-amz-region-set"}, emptyPayloadHash, "service")
	if sum := sha256.Sum256([]byte(canonical)); hex.EncodeToString(sum[:]) != "cf59db423e841c8b7e3444158185aa261b724a5c27cbe762676f3eed19f4dc02" {
		t.Fatalf("canonical request hash %x differs from the suite's; canonical request:\n%s", sum, canonical)
	}
	stringToSign := "AWS4-ECDSA-P256-SHA256\n20150830T123600Z\n20150830/service/aws4_request\ncf59db423e841c8b7e3444158185aa261b724a5c27cbe762676f3eed19f4dc02"
	digest := sha256.Sum256([]byte(stringToSign))
	sig, err := hex.DecodeString(strings.TrimPrefix(authz, wantPrefix))
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(vectorPublicKey(t), digest[:], sig) {
		t.Fatal("the signature does not verify under the suite's public key")
	}
}

// v4aRequest is a JFrog-style passwordless request: GetCallerIdentity signed
// for every region with temporary credentials.
func v4aRequest(t testing.TB, k Key, at time.Time) *http.Request {
	r := httptest.NewRequest("GET", "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15", nil)
	if err := SignV4A(r, Credentials{k.AccessKeyID, k.SecretAccessKey, k.SessionToken}, "sts", []string{"*"}, at, ""); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestVerifyV4A(t *testing.T) {
	now := func() time.Time { return signedAt.Add(time.Minute) }
	v := &Verifier{Service: "sts", Region: "us-east-1", Keys: NewStaticKeys(longKey, tempKey), Now: now}

	for _, k := range []Key{longKey, tempKey} {
		res, err := v.Verify(v4aRequest(t, k, signedAt))
		if err != nil {
			t.Fatalf("%s: %v", k.AccessKeyID, err)
		}
		if res.Algorithm != AlgorithmV4A || res.Region != "*" || res.Key.Principal != k.Principal {
			t.Fatalf("result = %+v", res)
		}
	}

	refusals := map[string]struct {
		mutate func(*http.Request)
		code   Code
	}{
		"tampered query":                   {func(r *http.Request) { r.URL.RawQuery = "Action=GetCallerIdentity&Version=2011-06-16" }, InvalidSignature},
		"other host":                       {func(r *http.Request) { r.Host = "sts.eu-west-1.amazonaws.com" }, InvalidSignature},
		"region set changed after signing": {func(r *http.Request) { r.Header.Set("X-Amz-Region-Set", "us-*") }, InvalidSignature},
		"session token dropped":            {func(r *http.Request) { r.Header.Del("X-Amz-Security-Token") }, UnrecognizedClient},
		"signature from another key": {func(r *http.Request) {
			other := v4aRequest(t, Key{AccessKeyID: tempKey.AccessKeyID, SecretAccessKey: "wrong", SessionToken: tempKey.SessionToken}, signedAt)
			r.Header.Set("Authorization", other.Header.Get("Authorization"))
		}, InvalidSignature},
		"scope with a region": {func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/sts/", "/us-east-1/sts/", 1))
		}, IncompleteSignature},
	}
	for name, c := range refusals {
		t.Run(name, func(t *testing.T) {
			r := v4aRequest(t, tempKey, signedAt)
			c.mutate(r)
			_, err := v.Verify(r)
			var verr *Error
			if !errors.As(err, &verr) || verr.Code != c.code {
				t.Fatalf("err = %v, want code %s", err, c.code)
			}
		})
	}

	t.Run("region outside the set", func(t *testing.T) {
		r := httptest.NewRequest("GET", "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15", nil)
		if err := SignV4A(r, Credentials{longKey.AccessKeyID, longKey.SecretAccessKey, ""}, "sts", []string{"eu-*", "ap-south-1"}, signedAt, ""); err != nil {
			t.Fatal(err)
		}
		_, err := v.Verify(r)
		if err == nil || !strings.Contains(err.Error(), `does not include this endpoint's region "us-east-1"`) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("region set not signed", func(t *testing.T) {
		r := v4aRequest(t, longKey, signedAt)
		r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), ";x-amz-region-set", "", 1))
		if _, err := v.Verify(r); err == nil || !strings.Contains(err.Error(), "must sign X-Amz-Region-Set") {
			t.Fatalf("err = %v", err)
		}
	})
}

func FuzzVerifyV4A(f *testing.F) {
	genuine := v4aRequest(f, tempKey, signedAt)
	f.Add(genuine.Header.Get("Authorization"), genuine.Header.Get("X-Amz-Region-Set"), genuine.URL.RawQuery)
	f.Add("AWS4-ECDSA-P256-SHA256 Credential=a/b/c/aws4_request, SignedHeaders=host;x-amz-region-set, Signature=3006020101020101", "*", "")
	f.Add("AWS4-ECDSA-P256-SHA256 Credential=////, SignedHeaders=;, Signature=zz", ",,*", "a=%zz")
	v := &Verifier{Service: "sts", Keys: NewStaticKeys(tempKey), Now: func() time.Time { return signedAt }}
	f.Fuzz(func(t *testing.T, authz, regionSet, query string) {
		r := httptest.NewRequest("GET", "https://sts.amazonaws.com/", nil)
		r.URL.RawQuery = query
		for _, h := range []string{"X-Amz-Date", "X-Amz-Security-Token"} {
			r.Header.Set(h, genuine.Header.Get(h))
		}
		r.Header.Set("X-Amz-Region-Set", regionSet)
		r.Header.Set("Authorization", authz)
		if _, err := v.Verify(r); err == nil {
			// ECDSA signatures are randomised (each fuzz worker signs anew),
			// so only the signed content must be the genuine one's.
			signedPart := func(a string) string { p, _, _ := strings.Cut(a, "Signature="); return p }
			if signedPart(authz) != signedPart(genuine.Header.Get("Authorization")) || regionSet != genuine.Header.Get("X-Amz-Region-Set") || query != genuine.URL.RawQuery {
				t.Fatalf("accepted a request it did not sign: %q %q %q", authz, regionSet, query)
			}
		}
	})
}

func BenchmarkVerifyV4A(b *testing.B) {
	v := &Verifier{Service: "sts", Keys: NewStaticKeys(tempKey), Now: func() time.Time { return signedAt }}
	r := v4aRequest(b, tempKey, signedAt)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(r); err != nil {
			b.Fatal(err)
		}
	}
}

// A captured SigV4A request sent again with its signature rewritten
// without the key — in upper-case hex, or as ECDSA's other valid signature
// (r, n−s) — is the same request, and a replay; so is a second signature
// of the same content. A request with other content is not.
func TestV4AReplaysAreKnownByContent(t *testing.T) {
	v := &Verifier{Service: "sts", Keys: NewStaticKeys(tempKey), Now: func() time.Time { return signedAt }, Replays: NewReplayCache(100)}
	captured := v4aRequest(t, tempKey, signedAt)
	if _, err := v.Verify(captured); err != nil {
		t.Fatal(err)
	}
	authz := captured.Header.Get("Authorization")
	prefix, sigHex, _ := strings.Cut(authz, "Signature=")
	var sig struct{ R, S *big.Int }
	raw, _ := hex.DecodeString(sigHex)
	if _, err := asn1.Unmarshal(raw, &sig); err != nil {
		t.Fatal(err)
	}
	malleated, err := asn1.Marshal(struct{ R, S *big.Int }{sig.R, new(big.Int).Sub(elliptic.P256().Params().N, sig.S)})
	if err != nil {
		t.Fatal(err)
	}
	for name, signature := range map[string]string{
		"upper-case hex": strings.ToUpper(sigHex),
		"(r, n−s)":       hex.EncodeToString(malleated),
		"signed again":   strings.TrimPrefix(v4aRequest(t, tempKey, signedAt).Header.Get("Authorization"), prefix+"Signature="),
	} {
		r := v4aRequest(t, tempKey, signedAt)
		r.Header.Set("Authorization", prefix+"Signature="+signature)
		_, err := v.Verify(r)
		var verr *Error
		if !errors.As(err, &verr) || !strings.Contains(verr.Message, "already received") {
			t.Errorf("%s: %v, want a replay refusal", name, err)
		}
	}
	other := httptest.NewRequest("GET", "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&x=1", nil)
	if err := SignV4A(other, Credentials{tempKey.AccessKeyID, tempKey.SecretAccessKey, tempKey.SessionToken}, "sts", []string{"*"}, signedAt, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(other); err != nil {
		t.Errorf("another request: %v", err)
	}
}
