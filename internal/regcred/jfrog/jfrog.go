// Package jfrog is the Artifactory exchanger: JFrog's passwordless AWS
// token exchange, in which the AWS secret key never leaves the pod. It signs
// an STS GetCallerIdentity request with SigV4A without sending it, hands the
// signed headers to Artifactory, which replays them to STS to learn the
// caller's role, and gets back an access token for the JFrog user that role
// is mapped to.
package jfrog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/podid/podid/internal/regcred"
	"github.com/podid/podid/internal/sigv4"
)

// DefaultLifetime is asked for when the role's MaxSessionDuration cannot be
// read (JFrog's default too).
const DefaultLifetime = 3 * time.Hour

// Exchanger implements regcred.Exchanger for one Artifactory.
type Exchanger struct {
	// URL is the Artifactory host, as in SecretRotator's artifactoryUrl; a
	// leading https:// or http:// is dropped (the exchange is always HTTPS).
	URL string
	// Subdomains are further registry hosts that take the same token.
	Subdomains []string
	// Region selects the regional variant: the request is signed for
	// STSHost(Region) and Artifactory is told ?region=<Region>. Empty: the
	// global sts.amazonaws.com, signed for every region (partition aws only:
	// aws-cn and GovCloud have no global endpoint).
	Region string
	// HTTPClient carries the TLS settings (SecretRotator's security); nil
	// means http.DefaultClient. Every call also has Timeout.
	HTTPClient *http.Client
	// AWS is the configuration for STS GetCallerIdentity and IAM GetRole,
	// which size the token's lifetime; its Credentials are replaced by the
	// provider Exchange is given.
	AWS aws.Config
	// Timeout bounds each call; zero means 30 s.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Provider implements regcred.Exchanger.
func (x *Exchanger) Provider() string { return "jfrog" }

// Host is the Artifactory host the docker config is keyed by.
func (x *Exchanger) Host() string {
	h := strings.TrimPrefix(strings.TrimPrefix(x.URL, "https://"), "http://")
	return strings.TrimRight(h, "/")
}

func (x *Exchanger) now() time.Time {
	if x.Now != nil {
		return x.Now()
	}
	return time.Now()
}

func (x *Exchanger) call(ctx context.Context) (context.Context, context.CancelFunc) {
	t := x.Timeout
	if t == 0 {
		t = 30 * time.Second
	}
	return context.WithTimeout(ctx, t)
}

// Exchange implements regcred.Exchanger.
func (x *Exchanger) Exchange(ctx context.Context, provider aws.CredentialsProvider) (*regcred.Credentials, error) {
	if x.Host() == "" {
		return nil, errors.New("artifactoryUrl is empty")
	}
	cctx, cancel := x.call(ctx)
	creds, err := regcred.Retrieve(cctx, provider)
	cancel()
	if err != nil {
		return nil, err
	}
	identity, lifetime, note := x.lifetime(ctx, provider)

	stsHost, regionSet := "sts.amazonaws.com", []string{"*"}
	if x.Region != "" {
		stsHost, regionSet = STSHost(x.Region), []string{x.Region}
	}
	signed, err := http.NewRequest(http.MethodGet, "https://"+stsHost+"/?Action=GetCallerIdentity&Version=2011-06-15", nil)
	if err != nil {
		return nil, err
	}
	if err := sigv4.SignV4A(signed, sigv4.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: creds.SessionToken}, "sts", regionSet, x.now(), ""); err != nil {
		return nil, err
	}

	tokenURL := "https://" + x.Host() + "/access/api/v1/aws/token"
	if x.Region != "" {
		tokenURL += "?region=" + url.QueryEscape(x.Region)
	}
	body, _ := json.Marshal(map[string]int64{"expires_in": int64(lifetime / time.Second)})
	cctx, cancel = x.call(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, tokenURL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("artifactoryUrl %q does not make a valid URL: %w", x.URL, err)
	}
	req.Header.Set("Content-Type", "application/json")
	// The signed headers travel as they are; the Host header does not, so the
	// request goes to Artifactory, which knows which STS host was signed.
	for _, h := range []string{"Authorization", "X-Amz-Date", "X-Amz-Region-Set", "X-Amz-Security-Token"} {
		if v := signed.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	// A redirect would take the signed request, which can be replayed to
	// STS for a quarter of an hour, wherever the first host says: never
	// followed.
	client := http.Client{}
	if x.HTTPClient != nil {
		client = *x.HTTPClient
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calling Artifactory's token exchange at %s: %w", tokenURL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading Artifactory's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &HTTPError{Status: resp.StatusCode, Message: errorMessage(resp, raw)}
	}
	var out struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
		Username    string `json:"username"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.AccessToken == "" || out.Username == "" {
		return nil, fmt.Errorf("Artifactory's token answer has no access_token or username (HTTP %d, %d bytes)", resp.StatusCode, len(raw))
	}
	expiresIn := time.Duration(out.ExpiresIn) * time.Second
	if expiresIn <= 0 {
		expiresIn = lifetime
	}
	c := &regcred.Credentials{ExpiresAt: x.now().Add(expiresIn), Identity: identity}
	if note != "" {
		c.Notes = append(c.Notes, note)
	}
	for _, host := range append([]string{x.Host()}, x.Subdomains...) {
		c.Auths = append(c.Auths, regcred.Auth{Host: host, Username: out.Username, Password: out.AccessToken})
	}
	return c, nil
}

// HTTPError is a refusal from Artifactory.
type HTTPError struct {
	Status  int
	Message string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("Artifactory refused the token exchange (HTTP %d): %s", e.Status, e.Message)
}

// errorMessage is JFrog's own message from {"errors":[{"message"}]},
// sanitised and cut short. Any other body is not echoed: the host may be
// something other than Artifactory, and what it says ends up in a
// SecretRotator's status, which its readers may not be meant to see.
func errorMessage(resp *http.Response, raw []byte) string {
	if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
		return "a redirect, which podid does not follow: set the Artifactory host that answers the exchange itself"
	}
	var body struct {
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(raw, &body) == nil && len(body.Errors) > 0 && body.Errors[0].Message != "" {
		return sanitize(body.Errors[0].Message, 200)
	}
	ct := sanitize(resp.Header.Get("Content-Type"), 64)
	if ct == "" {
		ct = "no stated type"
	}
	return fmt.Sprintf("no JFrog error message (%d bytes of %s)", len(raw), ct)
}

// sanitize keeps printable characters of s, at most n of them.
func sanitize(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= n {
			b.WriteString("…")
			break
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			r = ' '
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// lifetime finds the caller's role and its MaxSessionDuration, the longest
// a token tied to that role should live. Role paths do not matter (GetRole
// takes the name) and the partition comes from the ARN. Anything unreadable
// gives DefaultLifetime: a shorter token is renewed, never wrong.
// note says why, when the default was taken.
func (x *Exchanger) lifetime(ctx context.Context, provider aws.CredentialsProvider) (identity string, d time.Duration, note string) {
	cfg := x.AWS.Copy()
	cfg.Credentials = provider
	cctx, cancel := x.call(ctx)
	defer cancel()
	fallback := fmt.Sprintf("the token lasts the %s default, not the role's MaxSessionDuration", DefaultLifetime)
	who, err := sts.NewFromConfig(cfg).GetCallerIdentity(cctx, &sts.GetCallerIdentityInput{})
	if err != nil || who.Arn == nil {
		return "", DefaultLifetime, fmt.Sprintf("sts:GetCallerIdentity failed (%v): %s", err, fallback)
	}
	name, ok := RoleName(*who.Arn)
	if !ok {
		return *who.Arn, DefaultLifetime, fmt.Sprintf("%s is not a role session: %s", *who.Arn, fallback)
	}
	role, err := iam.NewFromConfig(cfg).GetRole(cctx, &iam.GetRoleInput{RoleName: aws.String(name)})
	if err != nil {
		return *who.Arn, DefaultLifetime, fmt.Sprintf("iam:GetRole on role %s was refused or failed (%s): %s; allow iam:GetRole on the role itself to size tokens by it", name, shortAWSError(err), fallback)
	}
	if role.Role == nil || role.Role.MaxSessionDuration == nil {
		return *who.Arn, DefaultLifetime, fmt.Sprintf("iam:GetRole on role %s gave no MaxSessionDuration: %s", name, fallback)
	}
	return *who.Arn, time.Duration(*role.Role.MaxSessionDuration) * time.Second, ""
}

// RoleName is the role name in an assumed-role session ARN
// (arn:<partition>:sts::<account>:assumed-role/<name>/<session>) or a role
// ARN (arn:<partition>:iam::<account>:role/<path>/<name>), in any partition.
func RoleName(s string) (string, bool) {
	a, err := arn.Parse(s)
	if err != nil {
		return "", false
	}
	switch {
	case a.Service == "sts" && strings.HasPrefix(a.Resource, "assumed-role/"):
		parts := strings.Split(a.Resource, "/")
		if len(parts) == 3 && parts[1] != "" {
			return parts[1], true
		}
	case a.Service == "iam" && strings.HasPrefix(a.Resource, "role/"):
		name := a.Resource[strings.LastIndex(a.Resource, "/")+1:]
		return name, name != ""
	}
	return "", false
}

// STSHost is the regional STS endpoint's host of region, in its
// partition's domain (sts.cn-north-1.amazonaws.com.cn in China).
func STSHost(region string) string {
	if strings.HasPrefix(region, "cn-") {
		return "sts." + region + ".amazonaws.com.cn"
	}
	return "sts." + region + ".amazonaws.com"
}

// HasGlobalSTS reports whether region's partition has the global endpoint
// sts.amazonaws.com: only the commercial partition does.
func HasGlobalSTS(region string) bool {
	for _, p := range []string{"cn-", "us-gov-", "us-iso", "eusc-"} {
		if strings.HasPrefix(region, p) {
			return false
		}
	}
	return true
}

// shortAWSError is an AWS error's code, or the error when it has none.
func shortAWSError(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return err.Error()
}
