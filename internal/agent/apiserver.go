package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// APIServer is how the agent reaches the Kubernetes API server: an address
// and an HTTP client carrying the agent's credentials. The agent needs two
// things from it, the ServiceAccount token keys and a watch on its node's
// pods, and asks for both with plain HTTP: client-go and the API types would
// add some 30 MB of resident memory to a process that runs on every node.
type APIServer struct {
	Host   string // https://host:port
	Client *http.Client
}

// In-cluster defaults: what the kubelet gives every pod.
const (
	inClusterTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	inClusterCAFile    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

// InCluster returns the API server a pod reaches: host (default
// https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT), authenticated
// with the ServiceAccount token in tokenFile (re-read as the kubelet rotates
// it) and trusted through caFile. Empty arguments take the in-cluster
// defaults.
func InCluster(host, tokenFile, caFile string) (*APIServer, error) {
	if host == "" {
		h, p := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if h == "" || p == "" {
			return nil, errors.New("not running in a pod (KUBERNETES_SERVICE_HOST is unset): give the API server's address with --kube-api-server")
		}
		host = "https://" + net.JoinHostPort(h, p)
	}
	if tokenFile == "" {
		tokenFile = inClusterTokenFile
	}
	if caFile == "" {
		caFile = inClusterCAFile
	}
	if _, err := os.Stat(tokenFile); err != nil {
		return nil, fmt.Errorf("the agent's ServiceAccount token: %w", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("the API server's CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("the API server's CA bundle %s holds no PEM certificate", caFile)
	}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	return &APIServer{Host: host, Client: &http.Client{Transport: &bearer{file: tokenFile, next: transport}}}, nil
}

// do sends one request to the API server, decoding a 2xx answer into into
// (when not nil); any other answer is an *apiError.
func (s *APIServer) do(ctx context.Context, method, u, accept, contentType string, body []byte, into any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Accept", accept)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return readAPIError(resp)
	}
	if into == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// apiError is an API server's answer other than 2xx.
type apiError struct {
	code   int
	status string
	body   []byte
}

func (e *apiError) Error() string {
	return fmt.Sprintf("the API server answered %s: %s", e.status, e.body)
}

// readAPIError reads the start of a refusal's body.
func readAPIError(resp *http.Response) *apiError {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	return &apiError{code: resp.StatusCode, status: resp.Status, body: bytes.TrimSpace(body)}
}

// watchEvent is one event of a watch: its type and its object, decoded by
// the watcher; an ERROR event's object is a Status.
type watchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// watch follows one watch of u (a URL with watch=true and timeoutSeconds)
// until the server ends it, handing each event but ERROR to handle. An
// ERROR event ends it with an error, errExpired for a resource version too
// old; the caller then lists or reads anew.
func (s *APIServer) watch(ctx context.Context, u, accept string, timeout time.Duration, handle func(watchEvent) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", accept)
	resp, err := s.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusGone {
		return errExpired
	}
	if resp.StatusCode != http.StatusOK {
		return readAPIError(resp)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev watchEvent
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil // the server's timeout, or shutting down
			}
			return fmt.Errorf("reading the watch: %w", err)
		}
		if ev.Type == "ERROR" {
			var status struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			json.Unmarshal(ev.Object, &status)
			if status.Code == http.StatusGone {
				return errExpired
			}
			return fmt.Errorf("the watch failed: %d %s", status.Code, status.Message)
		}
		if err := handle(ev); err != nil {
			return err
		}
	}
}

// errExpired means the watch's resource version is too old: relist.
var errExpired = errors.New("the watch's resource version expired")
