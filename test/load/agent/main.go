// Command agent is a load command for podid agent: it prints the figures the
// agent's targets are stated in. Run it with
//
//	go run ./test/load/agent
//
// It measures, in this process: the resident memory of an agent holding
// 10,000 pods' credentials (tokens and session tokens of realistic size),
// and the time 100 concurrent first requests for one pod take when the
// upstream answers in 300 ms. Throughput and latency of cache hits are
// testing.B benchmarks in internal/agent.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/podid/podid/internal/agent"
	"github.com/podid/podid/internal/token"
)

const issuer = "https://kubernetes.default.svc"

type upstream struct {
	delay time.Duration
	calls atomic.Int32
}

func (u *upstream) Fetch(ctx context.Context, tok string) (agent.Credentials, error) {
	u.calls.Add(1)
	time.Sleep(u.delay)
	// Real STS session tokens are 700-1100 characters.
	return agent.Credentials{AccessKeyID: "ASIA" + strings.Repeat("X", 16), SecretAccessKey: strings.Repeat("s", 40),
		SessionToken: strings.Repeat("t", 1000), AccountID: "111122223333", Expiration: time.Now().Add(time.Hour)}, nil
}

func main() {
	pods := flag.Int("pods", 10000, "pods to cache for the memory figure")
	onDisk := flag.Bool("tokens-on-disk", true, "write the pods' tokens where the kubelet would, so the agent reads them instead of keeping copies")
	heapProfile := flag.String("heap-profile", "", "write a heap profile here once the pods are cached")
	flag.Parse()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	keys := token.NewKeySet(func(context.Context) (*jose.JSONWebKeySet, error) {
		return &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k", Algorithm: "ES256", Use: "sig"}}}, nil
	}, token.KeySetOptions{})
	verifier := token.NewVerifier(token.Options{Issuer: issuer, Keys: keys})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k"))
	check(err)
	tokenFor := func(i int) string {
		raw, err := jwt.Signed(signer).Claims(jwt.Claims{
			Issuer: issuer, Subject: "system:serviceaccount:team-namespace:application-service-account", Audience: jwt.Audience{"pods.eks.amazonaws.com"},
			Expiry: jwt.NewNumericDate(time.Now().Add(24 * time.Hour)), IssuedAt: jwt.NewNumericDate(time.Now()), NotBefore: jwt.NewNumericDate(time.Now()),
		}).Claims(map[string]any{"kubernetes.io": map[string]any{
			"namespace": "team-namespace", "serviceaccount": map[string]string{"name": "application-service-account", "uid": "5d7c1f3e-0b7a-4c4e-9f5e-1a2b3c4d5e6f"},
			"pod":  map[string]string{"name": fmt.Sprintf("application-deployment-7d9f8b6c5d-%05d", i), "uid": fmt.Sprintf("0b7c7e4e-3c1a-4f57-9a2e-%012d", i)},
			"node": map[string]string{"name": "ip-10-0-1-5.eu-west-1.compute.internal", "uid": "9c8b7a6d-5e4f-3a2b-1c0d-ef1234567890"},
		}}).Serialize()
		check(err)
		return raw
	}

	// Memory: an agent process with N pods cached. Tokens are made one at a
	// time, so only what the agent keeps of them counts.
	tokenFor(0) // warm the signer and the verifier up before the baseline
	kubeletDir, err := os.MkdirTemp("", "podid-agent-load-")
	check(err)
	defer os.RemoveAll(kubeletDir)
	opts := agent.CacheOptions{MaxEntries: *pods + 1, PodRate: 1000, PodBurst: 1000}
	if *onDisk {
		opts.Tokens = agent.KubeletTokens{Dir: kubeletDir}
	}
	before, heapBefore := rss(), heap()
	up := &upstream{}
	cache := agent.NewCache(up, opts)
	h := agent.NewHandler(agent.HandlerOptions{Cache: cache, Tokens: verifier, Hosts: []string{"169.254.170.23:80"}})
	for i := range *pods {
		tok := tokenFor(i)
		if *onDisk {
			dir := filepath.Join(kubeletDir, fmt.Sprintf("0b7c7e4e-3c1a-4f57-9a2e-%012d", i), "volumes", "kubernetes.io~projected", "eks-pod-identity-token")
			check(os.MkdirAll(dir, 0o755))
			check(os.WriteFile(filepath.Join(dir, "eks-pod-identity-token"), []byte(tok), 0o644))
		}
		req := httptest.NewRequest("GET", "http://169.254.170.23/v1/credentials", nil)
		req.Header.Set("Authorization", tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			check(fmt.Errorf("status %d: %s", w.Code, w.Body))
		}
	}
	after, heapAfter := rss(), heap()
	fmt.Printf("memory: %d pods cached; RSS %.1f MB before, %.1f MB after: %.1f MB for the cache (%.0f bytes/pod; live heap %.0f bytes/pod); whole process %.1f MB\n",
		cache.Len(), mb(before), mb(after), mb(after-before), float64(after-before)/float64(*pods), float64(heapAfter-heapBefore)/float64(*pods), mb(after))
	if *heapProfile != "" {
		f, err := os.Create(*heapProfile)
		check(err)
		check(pprof.WriteHeapProfile(f))
		f.Close()
	}
	runtime.KeepAlive(h)

	// 100 concurrent first requests for one pod, upstream taking 300 ms.
	slow := &upstream{delay: 300 * time.Millisecond}
	h = agent.NewHandler(agent.HandlerOptions{Cache: agent.NewCache(slow, agent.CacheOptions{}), Tokens: verifier, Hosts: []string{"169.254.170.23:80"}})
	tok := tokenFor(99999)
	var wg sync.WaitGroup
	start := time.Now()
	var worst atomic.Int64
	for range 100 {
		wg.Go(func() {
			req := httptest.NewRequest("GET", "http://169.254.170.23/v1/credentials", nil)
			req.Header.Set("Authorization", tok)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				check(fmt.Errorf("status %d", w.Code))
			}
			if d := int64(time.Since(start)); d > worst.Load() {
				worst.Store(d)
			}
		})
	}
	wg.Wait()
	fmt.Printf("100 concurrent first requests, 300 ms upstream: all answered in %s, %d upstream call(s)\n",
		time.Duration(worst.Load()).Round(time.Millisecond), slow.calls.Load())
}

// rss is the resident set after a full GC and returning memory to the OS.
func rss() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	data, err := os.ReadFile("/proc/self/status")
	check(err)
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb int64
			fmt.Sscanf(strings.TrimPrefix(line, "VmRSS:"), "%d", &kb)
			return kb * 1024
		}
	}
	return 0
}

func heap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent load:", err)
		os.Exit(1)
	}
}
