// Package rolesanywhere gives a podid component AWS credentials through IAM
// Roles Anywhere: a certificate from a CA the account registered as a trust
// anchor is exchanged (CreateSession, signed with the certificate's key) for
// a session of a role the profile lists. No long-lived AWS secret exists:
// the certificate is short-lived and renewed (internal/identitycert, or
// cert-manager), and a stolen one stops working when it expires or is
// revoked.
//
// The Provider is an aws.CredentialsProvider that caches the session,
// renews it a quarter of its lifetime before it expires and as soon as the
// certificate is renewed, keeps serving a valid session while a renewal
// fails, and refuses an expired or not yet valid certificate before calling
// AWS. CreateSession's X.509 signature is sigv4.SignX509: AWS's own helper
// cannot be linked into podid's static binaries (see internal/sigv4).
package rolesanywhere

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"golang.org/x/sync/singleflight"

	"github.com/podid/podid/internal/sigv4"
)

// Config says which session to ask for, with which certificate.
type Config struct {
	TrustAnchorARN string
	ProfileARN     string
	RoleARN        string
	// Duration of a session; zero leaves it to the profile (AWS: one hour).
	Duration time.Duration
	Source   Source
	// Endpoint is Roles Anywhere's base URL; empty means the public one of
	// the trust anchor's region.
	Endpoint   string
	HTTPClient *http.Client
	// Reload is how often the Source is read again to notice a renewed
	// certificate; zero means a minute.
	Reload  time.Duration
	Now     func() time.Time
	Log     *slog.Logger
	Metrics *Metrics
}

// Status is what the provider last saw, for doctor and the published
// identity.
type Status struct {
	Subject, Serial     string
	CertificateNotAfter time.Time
	SessionExpires      time.Time
	// Err is the last failure to create a session or read the certificate,
	// nil once a session was created after it.
	Err error
}

// Provider is an aws.CredentialsProvider over Roles Anywhere sessions.
type Provider struct {
	cfg    Config
	region string
	flight singleflight.Group

	mu       sync.Mutex
	identity *Identity
	loadedAt time.Time
	creds    aws.Credentials
	issuedAt time.Time
	serial   string // the certificate the session was made with
	status   Status
}

// New checks cfg and returns a Provider; it makes no call.
func New(cfg Config) (*Provider, error) {
	anchor, err := arn.Parse(cfg.TrustAnchorARN)
	if err != nil || anchor.Service != "rolesanywhere" || !strings.HasPrefix(anchor.Resource, "trust-anchor/") {
		return nil, fmt.Errorf("trust anchor ARN %q is not arn:<partition>:rolesanywhere:<region>:<account>:trust-anchor/<id>", cfg.TrustAnchorARN)
	}
	profile, err := arn.Parse(cfg.ProfileARN)
	if err != nil || profile.Service != "rolesanywhere" || !strings.HasPrefix(profile.Resource, "profile/") {
		return nil, fmt.Errorf("profile ARN %q is not arn:<partition>:rolesanywhere:<region>:<account>:profile/<id>", cfg.ProfileARN)
	}
	if profile.Region != anchor.Region {
		return nil, fmt.Errorf("the trust anchor is in %s and the profile in %s: Roles Anywhere needs both in one region", anchor.Region, profile.Region)
	}
	if role, err := arn.Parse(cfg.RoleARN); err != nil || role.Service != "iam" || !strings.HasPrefix(role.Resource, "role/") {
		return nil, fmt.Errorf("role ARN %q is not an IAM role ARN", cfg.RoleARN)
	}
	if d := cfg.Duration; d != 0 && (d < 15*time.Minute || d > 12*time.Hour) {
		return nil, fmt.Errorf("a Roles Anywhere session lasts 15m to 12h, not %s", d)
	}
	if cfg.Source == nil {
		return nil, errors.New("no certificate source")
	}
	if cfg.Endpoint == "" {
		suffix := "amazonaws.com"
		if anchor.Partition == "aws-cn" {
			suffix = "amazonaws.com.cn"
		}
		cfg.Endpoint = "https://rolesanywhere." + anchor.Region + "." + suffix
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Reload == 0 {
		cfg.Reload = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Provider{cfg: cfg, region: anchor.Region}, nil
}

// Retrieve returns the cached session while it has more than a quarter of
// its lifetime left and was made with the current certificate; otherwise it
// creates a new one. A renewal that fails while the session is still good
// is logged and retried at the next call; the session is served meanwhile.
func (p *Provider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	now := p.cfg.Now()
	p.mu.Lock()
	have := p.identity != nil
	due := !have || now.Sub(p.loadedAt) >= p.cfg.Reload
	if due && have {
		p.loadedAt = now // one reload per interval
	}
	p.mu.Unlock()
	switch {
	case due && have:
		// Read in the background: a slow API server delays no caller.
		p.flight.DoChan("load", func() (any, error) {
			loadCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			p.reload(loadCtx)
			return nil, nil
		})
	case due:
		p.flight.Do("load", func() (any, error) { p.reload(ctx); return nil, nil })
	}
	p.mu.Lock()
	creds, fresh := p.creds, p.freshLocked(now)
	p.mu.Unlock()
	if fresh {
		return creds, nil
	}
	if creds.HasKeys() && now.Before(creds.Expires.Add(-time.Minute)) {
		// Still good: renew without making this caller wait.
		// DoChan's buffered channel is left unread: no goroutine waits.
		p.flight.DoChan("session", func() (any, error) {
			renewCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return p.renew(renewCtx)
		})
		return creds, nil
	}
	v, err, _ := p.flight.Do("session", func() (any, error) { return p.renew(ctx) })
	if err != nil {
		return aws.Credentials{}, err
	}
	return v.(aws.Credentials), nil
}

// reload reads the source again; a failure keeps the identity it had.
func (p *Provider) reload(ctx context.Context) {
	id, err := p.cfg.Source.Load(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.loadedAt = p.cfg.Now()
	if err != nil {
		p.cfg.Log.Error("reading the Roles Anywhere certificate", "err", err)
		p.status.Err = err
		return
	}
	if p.identity == nil || !p.identity.Certificate.Equal(id.Certificate) {
		p.cfg.Log.Info("Roles Anywhere certificate loaded", "subject", id.Certificate.Subject.String(), "serial", serialHex(id.Certificate), "not_after", id.Certificate.NotAfter.UTC())
		p.cfg.Metrics.certificate(id.Certificate)
	}
	p.identity = id
	p.status.Subject, p.status.Serial, p.status.CertificateNotAfter = id.Certificate.Subject.String(), serialHex(id.Certificate), id.Certificate.NotAfter
}

// freshLocked: the session needs no renewal yet.
func (p *Provider) freshLocked(now time.Time) bool {
	if !p.creds.HasKeys() {
		return false
	}
	if p.identity != nil && serialHex(p.identity.Certificate) != p.serial {
		return false // the certificate was renewed: move to it
	}
	window := p.creds.Expires.Sub(p.issuedAt) / 4
	return now.Before(p.creds.Expires.Add(-window))
}

func (p *Provider) renew(ctx context.Context) (aws.Credentials, error) {
	p.mu.Lock()
	now := p.cfg.Now()
	if p.freshLocked(now) { // another caller renewed meanwhile
		defer p.mu.Unlock()
		return p.creds, nil
	}
	id := p.identity
	p.mu.Unlock()
	if id == nil {
		err := p.Status().Err
		if err == nil {
			err = errors.New("no Roles Anywhere certificate has been read")
		}
		return aws.Credentials{}, err
	}
	creds, err := p.createSession(ctx, id, now)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.status.Err = err
		p.cfg.Log.Error("creating a Roles Anywhere session", "err", err, "serial", serialHex(id.Certificate))
		return aws.Credentials{}, err
	}
	p.creds, p.issuedAt, p.serial = creds, now, serialHex(id.Certificate)
	p.status.SessionExpires, p.status.Err = creds.Expires, nil
	p.cfg.Metrics.session(creds.Expires)
	p.cfg.Log.Info("Roles Anywhere session created", "role", p.cfg.RoleARN, "serial", p.serial, "expires", creds.Expires.UTC())
	return creds, nil
}

// Status returns what the provider last saw.
func (p *Provider) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Error is a refusal from Roles Anywhere, with what to do about it.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("rolesanywhere:CreateSession refused (%s, HTTP %d): %s", e.Code, e.Status, e.Message)
	if hint := e.hint(); hint != "" {
		msg += ": " + hint
	}
	return msg
}

func (e *Error) hint() string {
	m := strings.ToLower(e.Message)
	switch {
	case strings.Contains(m, "untrusted"):
		return "the trust anchor does not hold the CA that issued this certificate; run `podid roles-anywhere setup` to put podid's CA bundle in it"
	case strings.Contains(m, "revoked"):
		return "the certificate was revoked; renew it (delete the Secret podid-aws-identity for podid's own CA, or `cmctl renew` for cert-manager)"
	case strings.Contains(m, "disabled"):
		return "enable it (aws rolesanywhere enable-trust-anchor / enable-profile)"
	case strings.Contains(m, "trust policy"), strings.Contains(m, "not among the roles"):
		return "`podid roles-anywhere setup` prints the profile's roles and the role's trust statement podid needs"
	case strings.Contains(m, "expired"):
		return "the certificate expired before it was renewed; run `podid doctor`"
	}
	return ""
}

// Temporary says a retry may succeed (throttling, AWS's own failures).
func (e *Error) Temporary() bool { return e.Status == http.StatusTooManyRequests || e.Status >= 500 }

func (p *Provider) createSession(ctx context.Context, id *Identity, now time.Time) (aws.Credentials, error) {
	if err := checkValidity(id, now); err != nil {
		p.cfg.Metrics.result("refused")
		return aws.Credentials{}, err
	}
	var body struct {
		DurationSeconds int `json:"durationSeconds,omitempty"`
	}
	body.DurationSeconds = int(p.cfg.Duration / time.Second)
	payload, err := json.Marshal(body)
	if err != nil {
		return aws.Credentials{}, err
	}
	q := url.Values{"profileArn": {p.cfg.ProfileARN}, "roleArn": {p.cfg.RoleARN}, "trustAnchorArn": {p.cfg.TrustAnchorARN}}
	var lastErr error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return aws.Credentials{}, ctx.Err()
			case <-time.After(time.Duration(attempt) * time.Second):
			}
		}
		creds, err := p.post(ctx, id, strings.TrimRight(p.cfg.Endpoint, "/")+"/sessions?"+q.Encode(), payload)
		if err == nil {
			p.cfg.Metrics.result("granted")
			return creds, nil
		}
		lastErr = err
		var rerr *Error
		if errors.As(err, &rerr) && !rerr.Temporary() {
			p.cfg.Metrics.result("refused")
			return aws.Credentials{}, err
		}
	}
	p.cfg.Metrics.result("error")
	return aws.Credentials{}, lastErr
}

type sessionResponse struct {
	CredentialSet []struct {
		Credentials struct {
			AccessKeyID     string `json:"accessKeyId"`
			SecretAccessKey string `json:"secretAccessKey"`
			SessionToken    string `json:"sessionToken"`
			Expiration      string `json:"expiration"`
		} `json:"credentials"`
		AssumedRoleUser struct {
			Arn string `json:"arn"`
		} `json:"assumedRoleUser"`
	} `json:"credentialSet"`
}

func (p *Provider) post(ctx context.Context, id *Identity, endpoint string, payload []byte) (aws.Credentials, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(payload))
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("building CreateSession: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if err := sigv4.SignX509(req, id.Key, id.Certificate, id.Chain, "rolesanywhere", p.region, p.cfg.Now(), sigv4.PayloadHash(payload)); err != nil {
		return aws.Credentials{}, err
	}
	resp, err := p.cfg.HTTPClient.Do(req)
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("calling Roles Anywhere at %s: %w", p.cfg.Endpoint, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("reading CreateSession's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Message string `json:"message"`
			Type    string `json:"__type"`
		}
		_ = json.Unmarshal(raw, &e)
		code := resp.Header.Get("X-Amzn-ErrorType")
		if code == "" {
			code = e.Type
		}
		code, _, _ = strings.Cut(code, ":")
		if e.Message == "" {
			e.Message = strings.TrimSpace(string(raw))
		}
		return aws.Credentials{}, &Error{Status: resp.StatusCode, Code: code, Message: e.Message}
	}
	var out sessionResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		return aws.Credentials{}, fmt.Errorf("CreateSession answered with unreadable JSON: %w", err)
	}
	if len(out.CredentialSet) == 0 {
		return aws.Credentials{}, errors.New("CreateSession answered without credentials")
	}
	c := out.CredentialSet[0].Credentials
	expires, err := time.Parse(time.RFC3339, c.Expiration)
	if err != nil || c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return aws.Credentials{}, errors.New("CreateSession answered with incomplete credentials")
	}
	return aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken,
		Source: "RolesAnywhere", CanExpire: true, Expires: expires}, nil
}
