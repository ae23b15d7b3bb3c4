package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// A server replica whose network vanishes leaves the agent's HTTP/2
// connection open and silent. The upstream transport's ping finds it dead:
// the exchange in flight fails (the cache backs off and the pod's SDK
// retries) rather than waiting out its timeout, and the next one dials a
// live replica.
func TestUpstreamTransportDropsASilentConnection(t *testing.T) {
	upstreamPingAfter, upstreamPingTimeout = 300*time.Millisecond, time.Second
	t.Cleanup(func() { upstreamPingAfter, upstreamPingTimeout = 5*time.Second, 3*time.Second })

	var connections atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	proxy := newSilencingProxy(t, srv.Listener.Addr().String(), &connections)

	tlsConfig := &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, ServerName: "example.com"}
	// The client's own timeout is far longer than the health check, as the
	// exchange's is: a failure before it comes from the ping.
	client := &http.Client{Transport: UpstreamTransport(tlsConfig), Timeout: time.Minute}
	get := func() (string, error) {
		resp, err := client.Get("https://" + proxy.addr + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return string(body), err
	}
	if proto, err := get(); err != nil || proto != "HTTP/2.0" {
		t.Fatalf("first request: %q, %v; want HTTP/2.0", proto, err)
	}
	proxy.silence() // the replica's network vanishes: nothing passes, nothing closes
	errs := make(chan error, 1)
	go func() { _, err := get(); errs <- err }()
	select {
	case err := <-errs:
		if err == nil {
			t.Fatal("a request over the silenced connection succeeded")
		}
		t.Logf("the request over the silent connection failed: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("a request over a silent connection still waits after 30s: no health check")
	}
	if proto, err := get(); err != nil || proto != "HTTP/2.0" {
		t.Fatalf("after the silent connection: %q, %v; want a new connection to answer", proto, err)
	}
	if n := connections.Load(); n != 2 {
		t.Errorf("%d connections made, want 2 (the silenced one, then a new one)", n)
	}
}

// The exchange in flight when its connection is found dead is not lost:
// the upstream asks again at once over a new connection.
func TestExchangeRetriedOnANewConnection(t *testing.T) {
	upstreamPingAfter, upstreamPingTimeout = 300*time.Millisecond, time.Second
	t.Cleanup(func() { upstreamPingAfter, upstreamPingTimeout = 5*time.Second, 3*time.Second })
	var calls atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.URL.Path != "/clusters/c1/assume-role-for-pod-identity" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"assumedRoleUser":{"arn":"arn:aws:sts::111122223333:assumed-role/app/s","assumeRoleId":"AROA:s"},
			"credentials":{"accessKeyId":"ASIA%d","secretAccessKey":"secret","sessionToken":"session","expiration":%d}}`, calls.Load(), time.Now().Add(time.Hour).Unix())
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	var connections atomic.Int32
	proxy := newSilencingProxy(t, srv.Listener.Addr().String(), &connections)
	tlsConfig := &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, ServerName: "example.com"}
	up := NewEKSAuth(EKSAuthOptions{
		Endpoint: "https://" + proxy.addr, ClusterName: "c1", Region: "us-east-1", Credentials: aws.AnonymousCredentials{},
		HTTPClient: &http.Client{Transport: UpstreamTransport(tlsConfig)}, Timeout: time.Minute,
	})
	if c, err := up.Fetch(t.Context(), "token"); err != nil || c.AccountID != "111122223333" {
		t.Fatalf("first exchange: %+v, %v", c, err)
	}
	proxy.silence()
	c, err := up.Fetch(t.Context(), "token")
	if err != nil {
		t.Fatalf("the exchange over a connection found dead: %v; want it asked again over a new one", err)
	}
	// The lost request never reached the server: the second call it saw is
	// the one retried over the new connection.
	if connections.Load() != 2 || calls.Load() != 2 || c.AccessKeyID != "ASIA2" {
		t.Errorf("%d connections, %d calls, credentials %s: want 2, 2 and the second call's", connections.Load(), calls.Load(), c.AccessKeyID)
	}
}

// silencingProxy forwards TCP connections to a backend until silenced:
// then the connections it carries stay open but pass nothing, as when a
// peer's network disappears. New connections pass again.
type silencingProxy struct {
	addr string
	mu   sync.Mutex
	live []chan struct{} // closed to silence a connection
}

func newSilencingProxy(t *testing.T, backend string, connections *atomic.Int32) *silencingProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &silencingProxy{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			connections.Add(1)
			b, err := net.Dial("tcp", backend)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); b.Close() })
			quiet := make(chan struct{})
			p.mu.Lock()
			p.live = append(p.live, quiet)
			p.mu.Unlock()
			go pipe(c, b, quiet)
			go pipe(b, c, quiet)
		}
	}()
	return p
}

func (p *silencingProxy) silence() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, q := range p.live {
		close(q)
	}
	p.live = nil
}

// pipe copies from src to dst until quiet is closed; then it drops what it
// reads, and neither side is closed.
func pipe(dst, src net.Conn, quiet <-chan struct{}) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		select {
		case <-quiet:
			continue
		default:
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// Only a lost connection is retried at once: an answer, even a failure, is
// the cache's to retry with backoff.
func TestExchangeNotRetriedOnAnAnswer(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amzn-Errortype", "ServiceUnavailableException")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"message":"try later"}`)
	}))
	t.Cleanup(srv.Close)
	up := NewEKSAuth(EKSAuthOptions{Endpoint: srv.URL, ClusterName: "c1", Region: "us-east-1", Credentials: aws.AnonymousCredentials{}, HTTPClient: srv.Client()})
	_, err := up.Fetch(t.Context(), "token")
	var ue *UpstreamError
	if !errors.As(err, &ue) || ue.Status != http.StatusServiceUnavailable {
		t.Fatalf("Fetch = %v, want the 503 passed on", err)
	}
	if calls.Load() != 1 {
		t.Errorf("%d calls, want 1", calls.Load())
	}
}
