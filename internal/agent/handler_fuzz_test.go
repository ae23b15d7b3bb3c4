package agent

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzCredentialEndpoint sends the endpoint arbitrary tokens, Hosts and
// paths: it must never panic, never serve credentials for a token the
// cluster did not sign, and answer every refusal with the JSON the SDKs
// parse.
func FuzzCredentialEndpoint(f *testing.F) {
	signer, verifier := newBenchSigner(f)
	good := signer.token(f, "app-0", "uid-0")
	f.Add(good, "169.254.170.23", "/v1/credentials")
	f.Add("Bearer "+good, "169.254.170.23", "/v1/credentials")
	f.Add(good[:len(good)-3]+"AAA", "169.254.170.23", "/v1/credentials")
	f.Add(good, "evil.example.com", "/v1/credentials")
	f.Add("", "[fd00:ec2::23]", "/v1/credentials")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "169.254.170.23", "/v1/credentials/../x")
	h := NewHandler(HandlerOptions{
		Cache: NewCache(staticUpstream{}, CacheOptions{}), Tokens: verifier,
		Hosts: []string{"169.254.170.23:80", "[fd00:ec2::23]:80"},
	})
	f.Fuzz(func(t *testing.T, auth, host, path string) {
		req := httptest.NewRequest(http.MethodGet, "http://169.254.170.23/", nil)
		req.Host, req.URL.Path = host, path
		req.Header["Authorization"] = []string{auth}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code == http.StatusOK {
			if auth != good || path != "/v1/credentials" {
				t.Fatalf("served credentials for Authorization %q, Host %q, path %q", auth, host, path)
			}
			return
		}
		var body struct{ Code, Message string }
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Code == "" || body.Message == "" {
			t.Fatalf("status %d with a body the SDKs cannot parse: %q", w.Code, w.Body)
		}
	})
}
