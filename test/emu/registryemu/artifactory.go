package registryemu

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Artifactory emulates JFrog Artifactory's passwordless AWS token exchange
// (`POST /access/api/v1/aws/token`), its role mapping
// (`PUT /access/api/v1/aws/iam_role`) and its docker registry, which admits
// the tokens the exchange issued.
type Artifactory struct {
	// STSEndpoint is where signed GetCallerIdentity requests are replayed
	// (the awsemu emulator's URL); the Host header stays the signed one.
	STSEndpoint string
	// AdminToken authorises role mappings (a JFrog admin access token).
	AdminToken string
	// MaxExpiresIn caps the lifetime asked for; zero means no cap.
	MaxExpiresIn time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Client replays to STS; nil means a client with a 10-second timeout.
	Client *http.Client
	// Log receives one line per refusal; nil discards.
	Log *slog.Logger

	registry *Registry
	mu       sync.Mutex
	roles    map[string]string // role ARN → JFrog user
	tokens   map[string]ArtifactoryToken
	// regional counts the exchanges that asked for each regional STS.
	regional map[string]int
	calls    int
	failing  int // answer this many token calls with 503
}

// ArtifactoryToken is a token the exchange issued.
type ArtifactoryToken struct {
	Username   string
	RoleARN    string
	Expiration time.Time
}

// NewArtifactory returns an Artifactory replaying to stsEndpoint.
func NewArtifactory(stsEndpoint, adminToken string) *Artifactory {
	a := &Artifactory{STSEndpoint: stsEndpoint, AdminToken: adminToken, roles: map[string]string{}, tokens: map[string]ArtifactoryToken{}, regional: map[string]int{}}
	a.registry = NewRegistry("Artifactory", func(user, password, _ string) (string, bool) {
		tok, ok := a.Token(password)
		return "", ok && tok.Username == user
	})
	a.registry.AdminPassword = adminToken
	return a
}

// Registry is the docker registry behind the exchange's tokens.
func (a *Artifactory) Registry() *Registry { return a.registry }

func (a *Artifactory) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Artifactory) log() *slog.Logger {
	if a.Log != nil {
		return a.Log
	}
	return slog.New(slog.DiscardHandler)
}

// MapRole registers roleARN as user, as the iam_role API does.
func (a *Artifactory) MapRole(roleARN, user string) {
	a.mu.Lock()
	a.roles[roleARN] = user
	a.mu.Unlock()
}

// Fail makes the next n token calls answer 503 (n < 0: until Fail(0)).
func (a *Artifactory) Fail(n int) {
	a.mu.Lock()
	a.failing = n
	a.mu.Unlock()
}

// TokenCalls counts token requests received, answered or not.
func (a *Artifactory) TokenCalls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

// Token reports whether access is an unexpired token the exchange issued.
func (a *Artifactory) Token(access string) (ArtifactoryToken, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.tokens[access]
	if !ok || !a.now().Before(t.Expiration) {
		return ArtifactoryToken{}, false
	}
	return t, true
}

// ServeHTTP implements http.Handler.
func (a *Artifactory) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/access/api/v1/aws/token" && r.Method == http.MethodPost:
		a.token(w, r)
	case r.URL.Path == "/access/api/v1/aws/iam_role" && r.Method == http.MethodPut:
		a.putRole(w, r)
	case strings.HasPrefix(r.URL.Path, "/v2/"):
		a.registry.ServeHTTP(w, r)
	default:
		jfrogError(w, http.StatusNotFound, "no such endpoint in the emulator: "+r.Method+" "+r.URL.Path)
	}
}

func (a *Artifactory) putRole(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+a.AdminToken {
		jfrogError(w, http.StatusUnauthorized, "an admin access token is required")
		return
	}
	var in struct {
		Username string `json:"username"`
		IAMRole  string `json:"iam_role"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&in); err != nil || in.Username == "" || !strings.HasPrefix(in.IAMRole, "arn:") {
		jfrogError(w, http.StatusBadRequest, `the body must be {"username": "...", "iam_role": "arn:..."}`)
		return
	}
	a.MapRole(in.IAMRole, in.Username)
	w.WriteHeader(http.StatusOK)
}

// token is the exchange: the caller proves its AWS identity with a signed
// request it did not send, and gets a token for the JFrog user its role maps to.
func (a *Artifactory) token(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.calls++
	failing := a.failing != 0
	if a.failing > 0 {
		a.failing--
	}
	a.mu.Unlock()
	if failing {
		jfrogError(w, http.StatusServiceUnavailable, "fault injected by the emulator")
		return
	}
	var in struct {
		ExpiresIn int64 `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&in); err != nil || in.ExpiresIn < 0 {
		jfrogError(w, http.StatusBadRequest, `the body must be {"expires_in": seconds}`)
		return
	}
	callerARN, err := a.replay(r)
	if err != nil {
		a.log().Info("refused", "reason", err.Error())
		jfrogError(w, http.StatusUnauthorized, "the AWS signature was not accepted by STS: "+err.Error())
		return
	}
	roleARN, user, ok := a.userFor(callerARN)
	if !ok {
		jfrogError(w, http.StatusForbidden, "no JFrog user is mapped to the IAM role of "+callerARN)
		return
	}
	lifetime := time.Duration(in.ExpiresIn) * time.Second
	if lifetime == 0 || (a.MaxExpiresIn > 0 && lifetime > a.MaxExpiresIn) {
		lifetime = a.MaxExpiresIn
	}
	if lifetime == 0 {
		lifetime = 3 * time.Hour
	}
	access := randomHex(48)
	a.mu.Lock()
	a.tokens[access] = ArtifactoryToken{Username: user, RoleARN: roleARN, Expiration: a.now().Add(lifetime)}
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"token_id":     randomHex(16),
		"access_token": access,
		"scope":        "applied-permissions/user",
		"token_type":   "Bearer",
		"expires_in":   int64(lifetime / time.Second),
		"username":     user,
	})
}

// RegionalExchanges is how many token exchanges named region's STS
// (?region=).
func (a *Artifactory) RegionalExchanges(region string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.regional[region]
}

// replay sends the signed GetCallerIdentity to STS, with the STS host the
// request was signed for: global, or regional when ?region= is given.
func (a *Artifactory) replay(r *http.Request) (string, error) {
	host := "sts.amazonaws.com"
	if region := r.URL.Query().Get("region"); region != "" {
		host = "sts." + region + ".amazonaws.com"
		if strings.HasPrefix(region, "cn-") {
			host += ".cn"
		}
		a.mu.Lock()
		a.regional[region]++
		a.mu.Unlock()
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, a.STSEndpoint+"/?Action=GetCallerIdentity&Version=2011-06-15", nil)
	if err != nil {
		return "", err
	}
	req.Host = host
	for _, h := range []string{"Authorization", "X-Amz-Date", "X-Amz-Region-Set", "X-Amz-Security-Token"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	client := a.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("replaying to STS: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var out struct {
		Arn  string `xml:"GetCallerIdentityResult>Arn"`
		Code string `xml:"Error>Code"`
	}
	xml.Unmarshal(body, &out)
	if resp.StatusCode != http.StatusOK || out.Arn == "" {
		return "", fmt.Errorf("STS answered %d %s", resp.StatusCode, out.Code)
	}
	return out.Arn, nil
}

// userFor maps an assumed-role ARN (arn:P:sts::A:assumed-role/NAME/SESSION)
// to a registered role: the session ARN drops the role's path, so roles match
// by partition, account and name.
func (a *Artifactory) userFor(callerARN string) (roleARN, user string, ok bool) {
	f := strings.SplitN(callerARN, ":", 6)
	if len(f) != 6 || f[2] != "sts" || !strings.HasPrefix(f[5], "assumed-role/") {
		return "", "", false
	}
	name, _, _ := strings.Cut(strings.TrimPrefix(f[5], "assumed-role/"), "/")
	a.mu.Lock()
	defer a.mu.Unlock()
	for arn, u := range a.roles {
		g := strings.SplitN(arn, ":", 6)
		if len(g) == 6 && g[1] == f[1] && g[4] == f[4] && strings.HasPrefix(g[5], "role/") && g[5][strings.LastIndex(g[5], "/")+1:] == name {
			return arn, u, true
		}
	}
	return "", "", false
}

func jfrogError(w http.ResponseWriter, status int, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]any{{"status": status, "message": message}}})
}

func randomHex(n int) string {
	b := make([]byte, n/2)
	rand.Read(b)
	return hex.EncodeToString(b)
}
