package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/podid/podid/internal/token"
)

const benchIssuer = "https://kubernetes.default.svc"

// benchSigner makes tokens as a cluster would, and a verifier for them.
type benchSigner struct {
	key *ecdsa.PrivateKey
}

func newBenchSigner(tb testing.TB) (*benchSigner, *token.Verifier) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	keys := token.NewKeySet(func(context.Context) (*jose.JSONWebKeySet, error) {
		return &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k", Algorithm: "ES256", Use: "sig"}}}, nil
	}, token.KeySetOptions{})
	return &benchSigner{key}, token.NewVerifier(token.Options{Issuer: benchIssuer, Keys: keys})
}

func (s *benchSigner) token(tb testing.TB, podName, uid string) string {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: s.key}, (&jose.SignerOptions{}).WithHeader("kid", "k"))
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := jwt.Signed(sig).Claims(jwt.Claims{
		Issuer: benchIssuer, Subject: "system:serviceaccount:demo:app", Audience: jwt.Audience{"pods.eks.amazonaws.com"},
		Expiry: jwt.NewNumericDate(time.Now().Add(24 * time.Hour)), IssuedAt: jwt.NewNumericDate(time.Now()),
	}).Claims(map[string]any{"kubernetes.io": map[string]any{
		"namespace": "demo", "serviceaccount": map[string]string{"name": "app", "uid": "sa"},
		"pod": map[string]string{"name": podName, "uid": uid}, "node": map[string]string{"name": "node-a", "uid": "n"},
	}}).Serialize()
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// staticUpstream answers at once with long-lived credentials.
type staticUpstream struct{}

func (staticUpstream) Fetch(context.Context, string) (Credentials, error) {
	return benchCredentials, nil
}

// benchCredentials have a session token of AWS's size (1,000 characters).
var benchCredentials = Credentials{AccessKeyID: "ASIAEXAMPLEEXAMPLE00", SecretAccessKey: "secretsecretsecretsecretsecretsecret0000",
	SessionToken: strings.Repeat("IQoJb3JpZ2luX2VjEFAaCXVzLWVhc3QtMSJHMEUCIQ", 25), AccountID: "111122223333", Expiration: time.Now().Add(time.Hour)}

// serveOn runs h on a loopback listener for the benchmark.
func serveOn(tb testing.TB, h http.Handler) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	tb.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

type lateHandler struct{ h http.Handler }

func (l *lateHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) { l.h.ServeHTTP(w, r) }

// BenchmarkCredentialEndpoint measures the cache-hit path over real HTTP on
// loopback, side by side with a bare net/http handler writing a body of the
// same size: the ceiling the agent is held against.
//
//	go test ./internal/agent -run '^$' -bench CredentialEndpoint -benchtime 5s
func BenchmarkCredentialEndpoint(b *testing.B) {
	signer, verifier := newBenchSigner(b)
	tok := signer.token(b, "app-0", "uid-0")
	cache := NewCache(staticUpstream{}, CacheOptions{})
	// The handler checks Host, so it learns its address once bound.
	handler := &lateHandler{}
	agentAddr := serveOn(b, handler)
	handler.h = NewHandler(HandlerOptions{Cache: cache, Tokens: verifier, Hosts: []string{agentAddr}})
	// The ceiling: net/http with nothing to do but write the same body.
	body := []byte(render(benchCredentials).Body)
	bareAddr := serveOn(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))

	// Parallel: throughput with both cores busy (client and server share
	// them, so latency includes queueing). Serial: one request at a time,
	// the latency a pod sees.
	for _, mode := range []string{"parallel", "serial"} {
		for _, c := range []struct{ name, addr string }{{"agent-cache-hit", agentAddr}, {"bare-net-http", bareAddr}} {
			b.Run(mode+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
				url := "http://" + c.addr + "/v1/credentials"
				var mu sync.Mutex
				var all []time.Duration
				run := func(next func() bool) {
					var mine []time.Duration
					req, _ := http.NewRequest("GET", url, nil)
					req.Header.Set("Authorization", tok)
					for next() {
						start := time.Now()
						resp, err := client.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							b.Errorf("status %d", resp.StatusCode)
							return
						}
						mine = append(mine, time.Since(start))
					}
					mu.Lock()
					all = append(all, mine...)
					mu.Unlock()
				}
				if mode == "parallel" {
					b.RunParallel(func(pb *testing.PB) { run(pb.Next) })
				} else {
					i := 0
					run(func() bool { i++; return i <= b.N })
				}
				sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
				if len(all) > 0 {
					b.ReportMetric(float64(all[len(all)/2].Nanoseconds())/1e3, "p50-µs")
					b.ReportMetric(float64(all[len(all)*99/100].Nanoseconds())/1e3, "p99-µs")
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			})
		}
	}
}

// BenchmarkCacheHitHandler is the agent's own time for a cache hit, without
// the HTTP transport: Host check, token lookup, cache lookup, JSON.
//
//	go test ./internal/agent -run '^$' -bench CacheHitHandler -benchtime 3s
func BenchmarkCacheHitHandler(b *testing.B) {
	signer, verifier := newBenchSigner(b)
	tok := signer.token(b, "app-0", "uid-0")
	h := NewHandler(HandlerOptions{Cache: NewCache(staticUpstream{}, CacheOptions{}), Tokens: verifier, Hosts: []string{"169.254.170.23:80"}})
	req, _ := http.NewRequest("GET", "http://169.254.170.23/v1/credentials", nil)
	req.Header.Set("Authorization", tok)
	b.ReportAllocs()
	latencies := make([]time.Duration, 0, 1<<20)
	for b.Loop() {
		w := &discardWriter{header: http.Header{}}
		start := time.Now()
		h.ServeHTTP(w, req)
		latencies = append(latencies, time.Since(start))
		if w.status != 0 && w.status != 200 {
			b.Fatalf("status %d", w.status)
		}
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	b.ReportMetric(float64(latencies[len(latencies)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Nanoseconds())/1e3, "p99-µs")
}

type discardWriter struct {
	header http.Header
	status int
}

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(s int)           { d.status = s }
