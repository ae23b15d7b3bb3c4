package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/eksauth"
	"github.com/aws/aws-sdk-go-v2/service/eksauth/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// UpstreamError is a refusal from the exchange API, with the status the
// agent passes on to the pod.
type UpstreamError struct {
	Status        int
	Code, Message string
}

func (e *UpstreamError) Error() string {
	return fmt.Sprintf("%s (%d): %s", e.Code, e.Status, e.Message)
}

// EKSAuth is an Upstream calling AssumeRoleForPodIdentity through the
// aws-sdk-go-v2 eksauth client: against podid server with the agent's own
// token as bearer, or against any EKS Auth-compatible endpoint (EKS itself)
// signed with SigV4 from the standard credential chain.
type EKSAuth struct {
	client  *eksauth.Client
	cluster string
}

// EKSAuthOptions configure an EKSAuth upstream.
type EKSAuthOptions struct {
	// Endpoint of the API, e.g. https://podid.podid-system.svc:8443.
	Endpoint string
	// ClusterName goes in the request path.
	ClusterName string
	// Region signs SigV4 requests.
	Region string
	// AgentTokenFile, when set, is the agent's own projected token, sent as
	// a bearer token (podid server); when empty, requests are signed with
	// Credentials (EKS Auth).
	AgentTokenFile string
	Credentials    aws.CredentialsProvider
	// HTTPClient carries the requests (TLS roots, timeouts).
	HTTPClient *http.Client
	// Timeout bounds one call; default 10 s.
	Timeout time.Duration
}

// UpstreamTransport is the HTTP transport for calls to the exchange API,
// trusting tlsConfig's roots (nil: the system's). It differs from
// http.DefaultTransport where a node agent needs it to:
//
//   - HTTP/2 health checks. Every exchange goes over one HTTP/2 connection to
//     a server replica. If that replica's node or pod network vanishes
//     without closing it, the connection would look alive for the ~15
//     minutes of TCP's retransmissions, and each exchange sent on it would
//     wait for its full timeout. A ping after a quiet spell finds it dead in
//     seconds, and the next exchange dials anew.
//   - Short dial and TLS timeouts: the server is inside the cluster, where a
//     connection that does not open within seconds is not going to.
func UpstreamTransport(tlsConfig *tls.Config) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: upstreamDialTimeout, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 5 * time.Second
	t.TLSClientConfig = tlsConfig
	t.ForceAttemptHTTP2 = true
	t.HTTP2 = &http.HTTP2Config{SendPingTimeout: upstreamPingAfter, PingTimeout: upstreamPingTimeout}
	return t
}

// The upstream transport's health check and dial timeout; variables for the
// tests.
var (
	upstreamPingAfter   = 5 * time.Second
	upstreamPingTimeout = 3 * time.Second
	upstreamDialTimeout = 3 * time.Second
)

// NewEKSAuth returns the upstream.
func NewEKSAuth(opts EKSAuthOptions) *EKSAuth {
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Transport: UpstreamTransport(nil)}
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	httpClient := *opts.HTTPClient
	httpClient.Timeout = opts.Timeout
	creds := opts.Credentials
	if opts.AgentTokenFile != "" {
		base := httpClient.Transport
		if base == nil {
			base = http.DefaultTransport
		}
		httpClient.Transport = &bearer{file: opts.AgentTokenFile, next: base}
		creds = aws.AnonymousCredentials{}
	}
	return &EKSAuth{
		cluster: opts.ClusterName,
		client: eksauth.New(eksauth.Options{
			Region: opts.Region, BaseEndpoint: aws.String(opts.Endpoint), Credentials: creds, HTTPClient: &httpClient,
			Retryer: retryLostConnection(),
		}),
	}
}

// retryLostConnection retries an exchange once, at once, when its
// connection failed before an answer came (refused, reset, found dead by the
// health check): the exchange is idempotent, and another connection most
// likely reaches a live replica. Nothing else is retried here: the cache
// retries with backoff, and the SDK should not multiply it; nor is a
// timeout, which has already spent the pod's patience.
func retryLostConnection() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 2
		o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		o.RateLimiter = ratelimit.None
		o.Retryables = []retry.IsErrorRetryable{retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
			var send *smithyhttp.RequestSendError
			var netErr net.Error
			if !errors.As(err, &send) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || (errors.As(err, &netErr) && netErr.Timeout()) {
				return aws.FalseTernary
			}
			return aws.TrueTernary
		})}
	})
}

// Fetch implements Upstream.
func (u *EKSAuth) Fetch(ctx context.Context, token string) (Credentials, error) {
	out, err := u.client.AssumeRoleForPodIdentity(ctx, &eksauth.AssumeRoleForPodIdentityInput{ClusterName: aws.String(u.cluster), Token: aws.String(token)})
	if err != nil {
		return Credentials{}, classify(err)
	}
	c := out.Credentials
	if c == nil || c.Expiration == nil {
		return Credentials{}, &UpstreamError{Status: http.StatusBadGateway, Code: "ServiceUnavailable", Message: "the credential service answered without credentials"}
	}
	return Credentials{
		AccessKeyID: aws.ToString(c.AccessKeyId), SecretAccessKey: aws.ToString(c.SecretAccessKey), SessionToken: aws.ToString(c.SessionToken),
		AccountID: accountOf(out.AssumedRoleUser), Expiration: *c.Expiration,
	}, nil
}

// accountOf reads the account from arn:aws:sts::ACCOUNT:assumed-role/….
func accountOf(u *types.AssumedRoleUser) string {
	if u == nil {
		return ""
	}
	parts := strings.SplitN(aws.ToString(u.Arn), ":", 6)
	if len(parts) < 6 {
		return ""
	}
	return parts[4]
}

// classify keeps the upstream's client-error status and code for the pod.
func classify(err error) error {
	var apiErr smithy.APIError
	var re *awshttp.ResponseError
	if errors.As(err, &apiErr) && errors.As(err, &re) {
		status := re.HTTPStatusCode()
		code := strings.TrimSuffix(apiErr.ErrorCode(), "Exception")
		if status >= 500 {
			return &UpstreamError{Status: status, Code: code, Message: "the credential service failed: " + apiErr.ErrorMessage()}
		}
		if code == "AccessDenied" {
			status = http.StatusForbidden
		}
		return &UpstreamError{Status: status, Code: code, Message: apiErr.ErrorMessage()}
	}
	return err
}

// bearer adds the agent's own token, re-read when the kubelet rotates it.
type bearer struct {
	file string
	next http.RoundTripper

	mu     sync.Mutex
	token  string
	readAt time.Time
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, err := b.read()
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return b.next.RoundTrip(r)
}

func (b *bearer) read() (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.token != "" && time.Since(b.readAt) < time.Minute {
		return b.token, nil
	}
	data, err := os.ReadFile(b.file)
	if err != nil {
		return "", fmt.Errorf("reading the agent's token: %w", err)
	}
	b.token, b.readAt = strings.TrimSpace(string(data)), time.Now()
	return b.token, nil
}
