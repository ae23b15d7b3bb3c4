// Command agent is a load command for podid agent: it prints the figures the
// agent's targets are stated in, measured on the real podid-agent process.
// Run it with
//
//	go run ./test/load/agent
//
// It builds podid-agent, starts it against a stand-in API server (discovery,
// keys, an empty pod list and watch) and a stand-in EKS Auth upstream, both in
// this process, and then:
//
//   - memory: asks for credentials for -pods distinct pods, each with its own
//     signed token written where the kubelet would, and reads the agent's
//     resident set from /proc before and after;
//   - fan-in: sends 100 concurrent first requests for one new pod while the
//     upstream takes 300 ms, and reports when the last was answered and how
//     many upstream calls were made.
//
// Throughput and latency of cache hits are testing.B benchmarks in
// internal/agent (BenchmarkCredentialEndpoint).
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	agentpkg "github.com/podid/podid/internal/agent"
)

const (
	issuer  = "https://kubernetes.default.svc"
	cluster = "load"
)

func main() {
	pods := flag.Int("pods", 10000, "pods to cache for the memory figure")
	tokenBytes := flag.Int("session-token-bytes", 1000, "length of the session tokens the upstream issues (AWS's are 700-1,100 characters; the emulator's about 320)")
	onDisk := flag.Bool("tokens-on-disk", true, "write the pods' tokens where the kubelet would, so the agent reads them for refreshes instead of keeping copies")
	binary := flag.String("agent", "", "a built podid-agent (default: build ./cmd/podid-agent)")
	heapProfile := flag.String("heap-profile", "", "save the agent's heap profile here once the pods are cached")
	flag.Parse()
	dir, err := os.MkdirTemp("", "podid-agent-load-")
	check(err)
	defer os.RemoveAll(dir)
	if *binary == "" {
		*binary = filepath.Join(dir, "podid-agent")
		build := exec.Command("go", "build", "-trimpath", "-o", *binary, "./cmd/podid-agent")
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		check(build.Run())
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k"))
	check(err)
	kubeAPI := httptest.NewTLSServer(apiServer(&key.PublicKey))
	defer kubeAPI.Close()
	up := &upstream{tokenBytes: *tokenBytes}
	upSrv := httptest.NewServer(up)
	defer upSrv.Close()

	caFile, tokenFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "token")
	check(os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kubeAPI.Certificate().Raw}), 0o600))
	check(os.WriteFile(tokenFile, []byte("agent-token"), 0o600))
	kubeletDir := filepath.Join(dir, "pods")
	addr, metricsAddr := freeAddr(), freeAddr()
	agent := exec.Command(*binary, "--node-name", "node-a", "--cluster-name", cluster, "--region", "eu-west-1",
		"--server-url", upSrv.URL, "--agent-token-file", tokenFile, "--listen", addr,
		"--health-probe-bind-address", "", "--metrics-bind-address", metricsAddr, "--profiling", "--log-level", "warn",
		"--kube-api-server", kubeAPI.URL, "--kube-token-file", tokenFile, "--kube-ca-file", caFile,
		"--kubelet-pods-dir", kubeletDir,
		// The serving process alone, whose memory is measured below; the
		// keeper holding its sockets is the real-node suite's figure.
		"--keep-sockets=false")
	agent.Stderr = os.Stderr
	check(agent.Start())
	defer agent.Process.Kill()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 30 * time.Second}
	get := func(tok string) error {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/credentials", nil)
		req.Header.Set("Authorization", tok)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
		return nil
	}
	tokenFor := func(i int) string {
		uid := fmt.Sprintf("0b7c7e4e-3c1a-4f57-9a2e-%012d", i)
		raw, err := jwt.Signed(signer).Claims(jwt.Claims{
			Issuer: issuer, Subject: "system:serviceaccount:team-namespace:application-service-account", Audience: jwt.Audience{"pods.eks.amazonaws.com"},
			Expiry: jwt.NewNumericDate(time.Now().Add(24 * time.Hour)), IssuedAt: jwt.NewNumericDate(time.Now()), NotBefore: jwt.NewNumericDate(time.Now()),
		}).Claims(map[string]any{"kubernetes.io": map[string]any{
			"namespace": "team-namespace", "serviceaccount": map[string]string{"name": "application-service-account", "uid": "5d7c1f3e-0b7a-4c4e-9f5e-1a2b3c4d5e6f"},
			"pod":  map[string]string{"name": fmt.Sprintf("application-deployment-7d9f8b6c5d-%05d", i), "uid": uid},
			"node": map[string]string{"name": "node-a", "uid": "9c8b7a6d-5e4f-3a2b-1c0d-ef1234567890"},
		}}).Serialize()
		check(err)
		if *onDisk {
			file := agentpkg.KubeletTokens{Dir: kubeletDir}.Path(uid)
			check(os.MkdirAll(filepath.Dir(file), 0o755))
			check(os.WriteFile(file, []byte(raw), 0o644))
		}
		return raw
	}

	// Wait for the agent, and take the baseline with one pod served.
	deadline := time.Now().Add(30 * time.Second)
	for get(tokenFor(0)) != nil {
		if time.Now().After(deadline) {
			check(fmt.Errorf("the agent did not answer on %s", addr))
		}
		time.Sleep(100 * time.Millisecond)
	}
	base := status(agent.Process.Pid)

	// Memory: -pods distinct pods, 8 at a time.
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1)); i < *pods; i = int(next.Add(1)) {
				check(get(tokenFor(i)))
			}
		})
	}
	wg.Wait()
	after := status(agent.Process.Pid)
	fmt.Printf("memory: podid-agent with %d pods cached (%d-byte session tokens, tokens on disk %v, GOGC=%s GOMEMLIMIT=%s):\n", *pods, *tokenBytes, *onDisk, os.Getenv("GOGC"), os.Getenv("GOMEMLIMIT"))
	fmt.Printf("  RSS %.1f MB = %.1f MB anonymous + %.1f MB file-backed (the binary's pages); peak %.1f MB\n", mb(after.rss), mb(after.anon), mb(after.file), mb(after.peak))
	fmt.Printf("  idle with 1 pod: RSS %.1f MB = %.1f MB anonymous + %.1f MB file-backed\n", mb(base.rss), mb(base.anon), mb(base.file))
	fmt.Printf("  per pod: %.0f bytes of RSS; %d upstream calls\n", float64(after.rss-base.rss)/float64(*pods-1), up.calls.Load())

	if *heapProfile != "" {
		resp, err := http.Get("http://" + metricsAddr + "/debug/pprof/heap?gc=1")
		check(err)
		f, err := os.Create(*heapProfile)
		check(err)
		_, err = io.Copy(f, resp.Body)
		check(err)
		resp.Body.Close()
		f.Close()
	}

	// Fan-in: 100 concurrent first requests for one new pod, upstream 300 ms.
	up.delay.Store(int64(300 * time.Millisecond))
	calls := up.calls.Load()
	tok := tokenFor(*pods + 1)
	start := time.Now()
	var worst atomic.Int64
	for range 100 {
		wg.Go(func() {
			check(get(tok))
			if d := int64(time.Since(start)); d > worst.Load() {
				worst.Store(d)
			}
		})
	}
	wg.Wait()
	fmt.Printf("fan-in: 100 concurrent first requests for one pod, 300 ms upstream: the last answered after %s, %d upstream call(s)\n",
		time.Duration(worst.Load()).Round(time.Millisecond), up.calls.Load()-calls)
}

// apiServer stands in for the API server: the token issuer's discovery and
// keys, and this node's pods (none listed; the watch stays open).
func apiServer(pub *ecdsa.PublicKey) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"issuer": issuer, "jwks_uri": issuer + "/openid/v1/jwks",
			"response_types_supported": []string{"id_token"}, "subject_types_supported": []string{"public"}, "id_token_signing_alg_values_supported": []string{"ES256"}})
	})
	mux.HandleFunc("/openid/v1/jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "k", Algorithm: "ES256", Use: "sig"}}})
	})
	mux.HandleFunc("/api/v1/pods", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") != "true" {
			fmt.Fprint(w, `{"metadata":{"resourceVersion":"1"},"items":[]}`)
			return
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	return mux
}

// upstream stands in for EKS Auth, issuing session tokens of a set size.
type upstream struct {
	tokenBytes int
	delay      atomic.Int64
	calls      atomic.Int64
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.calls.Add(1)
	time.Sleep(time.Duration(u.delay.Load()))
	secret := make([]byte, 30)
	rand.Read(secret)
	session := make([]byte, u.tokenBytes*3/4)
	rand.Read(session)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"assumedRoleUser": map[string]string{"arn": "arn:aws:sts::111122223333:assumed-role/app/eks-load-pod", "assumeRoleId": "AROAEXAMPLE:eks-load-pod"},
		"audience":        "pods.eks.amazonaws.com",
		"credentials": map[string]any{
			"accessKeyId": "ASIA" + strings.ToUpper(fmt.Sprintf("%016x", u.calls.Load()))[:16], "secretAccessKey": fmt.Sprintf("%x", secret)[:40],
			"sessionToken": fmt.Sprintf("%x", session)[:u.tokenBytes], "expiration": time.Now().Add(time.Hour).Unix(),
		},
		"podIdentityAssociation": map[string]string{"associationArn": "arn:aws:eks:eu-west-1:111122223333:podidentityassociation/load/a-1", "associationId": "a-1"},
		"subject":                map[string]string{"namespace": "team-namespace", "serviceAccount": "application-service-account"},
	})
}

type procStatus struct{ rss, anon, file, peak int64 }

func status(pid int) procStatus {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	check(err)
	var s procStatus
	for _, line := range strings.Split(string(data), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(line, "VmRSS: %d kB", &kb); err == nil {
			s.rss = kb << 10
		}
		if _, err := fmt.Sscanf(line, "RssAnon: %d kB", &kb); err == nil {
			s.anon = kb << 10
		}
		if _, err := fmt.Sscanf(line, "RssFile: %d kB", &kb); err == nil {
			s.file = kb << 10
		}
		if _, err := fmt.Sscanf(line, "VmHWM: %d kB", &kb); err == nil {
			s.peak = kb << 10
		}
	}
	return s
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return l.Addr().String()
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent load:", err)
		os.Exit(1)
	}
}
