package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/internal/token"
)

// TokenVerifier checks a pod's token locally; *token.Verifier is one.
type TokenVerifier interface {
	Verify(ctx context.Context, raw, audience string) (*token.Claims, error)
}

// HandlerOptions configure a Handler.
type HandlerOptions struct {
	Cache  *Cache
	Tokens TokenVerifier
	// Audience of pod tokens; default pods.eks.amazonaws.com.
	Audience string
	// Hosts are the bind addresses ("169.254.170.23:80", "[fd00:ec2::23]:80",
	// "127.0.0.1:8080"): a request for any other Host is refused, against DNS
	// rebinding and SSRF through other names.
	Hosts []string
	Log   *slog.Logger
}

// Handler serves GET /v1/credentials.
type Handler struct {
	opts     HandlerOptions
	hosts    map[string]bool
	verified *token.Remembered[Pod]
	now      func() time.Time
	// count, when set, counts answers by status (the agent's metrics).
	count func(status int)
}

// NewHandler returns the credential endpoint.
func NewHandler(opts HandlerOptions) *Handler {
	if opts.Audience == "" {
		opts.Audience = podidentity.Audience
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{opts: opts, hosts: map[string]bool{}, verified: token.NewRemembered[Pod](5*time.Minute, 50000), now: time.Now}
	for _, addr := range opts.Hosts {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			h.hosts[strings.ToLower(addr)] = true
			continue
		}
		h.hosts[strings.ToLower(net.JoinHostPort(host, port))] = true
		// On port 80 the SDKs send the Host without a port.
		if port == "80" {
			if strings.Contains(host, ":") {
				host = "[" + host + "]"
			}
			h.hosts[strings.ToLower(host)] = true
		}
	}
	return h
}

// response is the body the SDKs parse; every value is a string.
type response struct {
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	Token           string `json:"Token"`
	AccountID       string `json:"AccountId"`
	Expiration      string `json:"Expiration"`
}

// errorBody is what the SDKs parse from an error.
type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (h *Handler) writeError(w http.ResponseWriter, status int, code, message string) {
	if h.count != nil {
		h.count(status)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(errorBody{Code: code, Message: message})
}

// probeHint answers a metadata-style probe: 200, so that the guides'
// reachability check passes, with what the endpoint really is.
const probeHint = `podid agent: reachable from this pod.
This is not an instance metadata service. Pod Identity credentials are at
  GET /v1/credentials
with the pod's token (the file AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE names) as
the Authorization header, which the AWS SDKs send by themselves when
AWS_CONTAINER_CREDENTIALS_FULL_URI is set. To check a pod end to end:
  podid doctor pod NAMESPACE/NAME
`

func (h *Handler) writeProbeHint(w http.ResponseWriter) {
	if h.count != nil {
		h.count(http.StatusOK)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, probeHint)
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.hosts[strings.ToLower(r.Host)] {
		h.writeError(w, http.StatusForbidden, "AccessDenied", "this endpoint answers only at its own address")
		return
	}
	if r.URL.Path != podidentity.CredentialsPath {
		if r.Method == http.MethodGet && (r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, "/latest/") || r.URL.Path == "/latest") {
			// The probe troubleshooting guides run from a pod
			// (wget -O- 169.254.170.23/latest/meta-data/): say it
			// reached the agent, and how credentials are asked for.
			h.writeProbeHint(w)
			return
		}
		h.writeError(w, http.StatusNotFound, "NotFound", "the credential endpoint is GET /v1/credentials")
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		h.writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "use GET")
		return
	}
	raw := r.Header.Get("Authorization")
	switch {
	case raw == "":
		h.writeError(w, http.StatusBadRequest, "InvalidToken", "the Authorization header is missing: send the pod's projected ServiceAccount token (the file named by AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)")
		return
	case strings.HasPrefix(raw, "Bearer ") || strings.HasPrefix(raw, "bearer "):
		h.writeError(w, http.StatusBadRequest, "InvalidToken", "send the token as is, without a 'Bearer ' prefix, as the AWS SDKs do")
		return
	}
	pod, ok := h.verified.Get(raw, h.now())
	if !ok {
		var failed bool
		if pod, failed = h.verify(w, r, raw); failed {
			return
		}
	}
	served, err := h.opts.Cache.Get(r.Context(), pod, raw)
	if err != nil {
		status, code, message := upstreamStatus(err)
		h.opts.Log.Info("credentials refused", "namespace", pod.Namespace, "pod", pod.Name, "status", status, "code", code, "error", err.Error())
		h.writeError(w, status, code, message)
		return
	}
	if h.count != nil {
		h.count(http.StatusOK)
	}
	header := w.Header()
	header["Content-Type"] = contentTypeJSON
	header["Content-Length"] = []string{strconv.Itoa(len(served.Body))}
	io.WriteString(w, served.Body)
}

var contentTypeJSON = []string{"application/json"}

// render turns credentials into the body the SDKs parse, once per fetch.
func render(c Credentials) Served {
	body, _ := json.Marshal(response{ // strings only: cannot fail
		AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, Token: c.SessionToken,
		AccountID: c.AccountID, Expiration: c.Expiration.UTC().Format(time.RFC3339),
	})
	return Served{Body: string(body), Expiration: c.Expiration}
}

// upstreamStatus maps a failure to the status and code the SDKs expect:
// client errors keep their status, throttling is 429, the rest 5xx.
func upstreamStatus(err error) (int, string, string) {
	var ue *UpstreamError
	switch {
	case errors.Is(err, ErrRateLimited):
		return http.StatusTooManyRequests, "TooManyRequests", err.Error()
	case errors.As(err, &ue):
		return ue.Status, ue.Code, ue.Message
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "ServiceUnavailable", "the credential service did not answer in time; retry"
	}
	return http.StatusBadGateway, "ServiceUnavailable", "the credential service could not be reached; retry"
}

// verify checks raw's signature and claims, remembers it, and returns its
// pod; when it fails it has written the error and returns failed.
func (h *Handler) verify(w http.ResponseWriter, r *http.Request, raw string) (pod Pod, failed bool) {
	claims, err := h.opts.Tokens.Verify(r.Context(), raw, h.opts.Audience)
	if err != nil {
		var terr *token.Error
		switch {
		case errors.As(err, &terr) && terr.Reason == token.KeysUnavailable:
			h.writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "the cluster's token signing keys are unavailable; retry later")
		case errors.As(err, &terr):
			h.writeError(w, http.StatusBadRequest, "InvalidToken", terr.Message)
		default:
			h.writeError(w, http.StatusBadRequest, "InvalidToken", "the token is invalid")
		}
		return Pod{}, true
	}
	if claims.Pod == nil {
		h.writeError(w, http.StatusBadRequest, "InvalidToken", "the token is not bound to a pod")
		return Pod{}, true
	}
	pod = Pod{UID: claims.Pod.UID, Namespace: claims.Namespace, Name: claims.Pod.Name}
	h.verified.Put(raw, pod, claims.Expiry, h.now())
	return pod, false
}
