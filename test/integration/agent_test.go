package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/go-jose/go-jose/v4/jwt"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/agent"
	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/internal/token"
	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/harness/netns"
	"github.com/podid/podid/test/harness/netns/netnstest"
	sdkworkload "github.com/podid/podid/test/harness/workload"
)

// countingUpstream counts the agent's upstream calls.
type countingUpstream struct {
	next  agent.Upstream
	calls atomic.Int32
	delay time.Duration // added before each call, as a slow server would
}

func (c *countingUpstream) Fetch(ctx context.Context, tok string) (agent.Credentials, error) {
	c.calls.Add(1)
	time.Sleep(c.delay)
	return c.next.Fetch(ctx, tok)
}

// switchableProxy stands between the agent and podid server, so a test can
// take the server away.
type switchableProxy struct {
	url  string
	down atomic.Bool
}

func newSwitchableProxy(t *testing.T) *switchableProxy {
	target, _ := url.Parse(srv.APIURL)
	rp := httputil.NewSingleHostReverseProxy(target)
	p := &switchableProxy{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			// As a dead server looks from the agent: the connection breaks.
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
					return
				}
			}
		}
		rp.ServeHTTP(w, r)
	})}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	p.url = "http://" + l.Addr().String()
	return p
}

// nodeWithAgent is a network-namespace node running podid agent on the real
// 169.254.170.23:80 (and [fd00:ec2::23]:80) inside it, and the STS emulator
// reachable from inside.
type nodeWithAgent struct {
	node        *netns.Node
	cache       *agent.Cache
	upstream    *countingUpstream
	proxy       *switchableProxy
	stsEndpoint string
	client      *http.Client // dials from inside the node
	stop        func()       // stops the agent and waits for its drain
}

// agentMode says how the agent authenticates to podid server.
type agentMode struct {
	sigv4 bool // sign with stockKey instead of the agent's own token
	delay time.Duration
}

func startNodeWithAgent(t *testing.T) *nodeWithAgent {
	t.Helper()
	n := &nodeWithAgent{node: netnstest.NewNode(t), proxy: newSwitchableProxy(t)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	// The emulator answers inside the node too, where the workloads are.
	stsListener, err := n.node.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { emu.Serve(ctx, stsListener) })
	n.stsEndpoint = "http://" + stsListener.Addr().String()
	n.client = &http.Client{Transport: &http.Transport{DialContext: n.node.DialContext, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	n.startAgent(t, agentMode{})
	return n
}

// startAgent starts a fresh agent, with an empty cache, on the node.
func (n *nodeWithAgent) startAgent(t *testing.T, mode agentMode) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	opts := agent.EKSAuthOptions{Endpoint: n.proxy.url, ClusterName: identity.ClusterName, Region: identity.Region, Timeout: 3 * time.Second}
	if mode.sigv4 {
		opts.Credentials = credentials.NewStaticCredentialsProvider(stockKey.AccessKeyID, stockKey.SecretAccessKey, "")
	} else {
		opts.AgentTokenFile = filepath.Join(t.TempDir(), "agent-token")
		if err := os.WriteFile(opts.AgentTokenFile, []byte(agentTokens["node-a"]), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n.upstream = &countingUpstream{next: agent.NewEKSAuth(opts), delay: mode.delay}
	// The agent reaches the API server as a pod would, with a client of its
	// own rather than client-go.
	kubeClient, err := rest.HTTPClientFor(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	api := &agent.APIServer{Host: strings.TrimSuffix(cluster.Config.Host, "/"), Client: kubeClient}
	verifier, err := token.ForAPIServer(ctx, api.Client, api.Host, nil)
	if err != nil {
		t.Fatal(err)
	}
	l4, err := n.node.Listen("tcp", "169.254.170.23:80")
	if err != nil {
		t.Fatal(err)
	}
	listeners := []net.Listener{l4}
	if n.node.IPv6 {
		l6, err := n.node.Listen("tcp", "[fd00:ec2::23]:80")
		if err != nil {
			t.Fatal(err)
		}
		listeners = append(listeners, l6)
	}
	n.cache = agent.NewCache(n.upstream, agent.CacheOptions{Tokens: agent.KubeletTokens{Dir: kubeletPodsDir}})
	a := agent.New(agent.Options{Node: "node-a", Listeners: listeners, Cache: n.cache, Handler: agent.HandlerOptions{Tokens: verifier}, APIServer: api})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.Run(ctx); err != nil {
			t.Errorf("agent: %v", err)
		}
	}()
	var once sync.Once
	n.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(n.stop)
}

// kubeletPodsDir stands for node-a's /var/lib/kubelet/pods.
var kubeletPodsDir = filepath.Join(os.TempDir(), fmt.Sprintf("podid-kubelet-pods-%d", os.Getpid()))

// podWithToken creates a pod on node-a for w's ServiceAccount and writes its
// token where a kubelet would, returning the file.
func (w *workload) podWithToken(t *testing.T, name string) (*corev1.Pod, string) {
	t.Helper()
	pod := w.newPod(t, name, "node-a")
	file := agent.KubeletTokens{Dir: kubeletPodsDir}.Path(string(pod.UID))
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(w.token(t, pod)), 0o644); err != nil {
		t.Fatal(err)
	}
	return pod, file
}

// env is all a workload gets: what the webhook injects, a region, and (AWS
// being unreachable here) where STS is.
func (n *nodeWithAgent) env(tokenFile string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.TempDir(),
		"AWS_CONTAINER_CREDENTIALS_FULL_URI=http://169.254.170.23/v1/credentials",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=" + tokenFile,
		"AWS_REGION=" + identity.Region,
		"AWS_ENDPOINT_URL_STS=" + n.stsEndpoint,
	}
}

var buildWorkload = sync.OnceValues(func() (string, error) {
	out := filepath.Join(os.TempDir(), fmt.Sprintf("podid-workload-%d", os.Getpid()))
	cmd := exec.Command("go", "build", "-o", out, "../workload")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the workload: %v: %s", err, b)
	}
	return out, nil
})

func (n *nodeWithAgent) runWorkload(t *testing.T, tokenFile string, name string, args ...string) sdkworkload.Identity {
	t.Helper()
	return n.runWorkloadEnv(t, tokenFile, nil, name, args...)
}

// runWorkloadEnv is runWorkload with more of the pod's environment.
func (n *nodeWithAgent) runWorkloadEnv(t *testing.T, tokenFile string, env []string, name string, args ...string) sdkworkload.Identity {
	t.Helper()
	cmd := n.node.Command(t.Context(), name, args...)
	cmd.Env = append(n.env(tokenFile), env...)
	cmd.Dir = "js"
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, stderr.String())
	}
	var id sdkworkload.Identity
	if err := json.Unmarshal(out, &id); err != nil {
		t.Fatalf("%s printed %q: %v", name, out, err)
	}
	return id
}

func TestAgentServesTheSDKCredentialChains(t *testing.T) {
	n := startNodeWithAgent(t)
	role := createRole(t, "agent-app", awsemu.PodidTrust(serverARN))
	w := newWorkload(t, role, nil)
	_, tokenFile := w.podWithToken(t, "sdk-0")

	workloadBin, err := buildWorkload()
	if err != nil {
		t.Fatal(err)
	}
	goID := n.runWorkload(t, tokenFile, workloadBin, "once")
	if !strings.HasPrefix(goID.ARN, "arn:aws:sts::"+identity.AccountID+":assumed-role/agent-app/eks-"+identity.ClusterName+"-sdk-0-") {
		t.Fatalf("aws-sdk-go-v2 workload is %s", goID.ARN)
	}
	if left := time.Until(goID.Expires); left < 15*time.Minute {
		t.Fatalf("credentials with %s left", left)
	}

	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed; the JS SDK test needs Node 18 or later")
	}
	jsID := n.runWorkload(t, tokenFile, node, "workload.mjs")
	if jsID.ARN != goID.ARN || jsID.AccessKeyID != goID.AccessKeyID {
		t.Fatalf("JS workload is %s with %s; the Go one %s with %s (the second must come from the agent's cache)", jsID.ARN, jsID.AccessKeyID, goID.ARN, goID.AccessKeyID)
	}
	if calls := n.upstream.calls.Load(); calls != 1 {
		t.Fatalf("upstream calls = %d for two workloads of one pod, want 1", calls)
	}
}

func (n *nodeWithAgent) get(t *testing.T, host, authorization string) (int, string) {
	t.Helper()
	return n.getURL(t, "http://169.254.170.23/v1/credentials", host, authorization)
}

func TestAgentConcurrencyRotationAndFaults(t *testing.T) {
	n := startNodeWithAgent(t)
	role := createRole(t, "agent-faults", awsemu.PodidTrust(serverARN))
	w := newWorkload(t, role, nil)
	pod, _ := w.podWithToken(t, "busy-0")
	tok := w.token(t, pod)

	// 100 concurrent first requests: one upstream call.
	var wg sync.WaitGroup
	statuses := make(chan int, 100)
	for range 100 {
		wg.Go(func() {
			status, _ := n.get(t, "", tok)
			statuses <- status
		})
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != 200 {
			t.Fatalf("a concurrent first request got %d", s)
		}
	}
	if calls := n.upstream.calls.Load(); calls != 1 {
		t.Fatalf("upstream calls for 100 concurrent first requests = %d, want 1", calls)
	}

	// The kubelet rotates the token: no upstream call.
	if status, _ := n.get(t, "", w.token(t, pod)); status != 200 || n.upstream.calls.Load() != 1 {
		t.Fatalf("after rotation: %d, calls %d", status, n.upstream.calls.Load())
	}

	// Upstream goes away: cached credentials are still served; a fresh pod
	// gets a clear 5xx.
	n.proxy.down.Store(true)
	if status, _ := n.get(t, "", tok); status != 200 {
		t.Fatalf("cached pod while upstream is down: %d", status)
	}
	fresh, _ := w.podWithToken(t, "fresh-0")
	status, body := n.get(t, "", w.token(t, fresh))
	var e struct{ Code, Message string }
	if status < 500 || json.Unmarshal([]byte(body), &e) != nil || e.Message == "" {
		t.Fatalf("fresh pod while upstream is down: %d %s", status, body)
	}
	n.proxy.down.Store(false)

	// The pods are deleted: the agent forgets them, so nothing renews them.
	for _, p := range []*corev1.Pod{pod, fresh} {
		if err := k8s.Delete(t.Context(), p, client.GracePeriodSeconds(0)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the agent to forget the deleted pods", func(context.Context) (bool, error) {
		return n.cache.Len() == 0, nil
	})
}

func TestAgentRefusesBadRequests(t *testing.T) {
	n := startNodeWithAgent(t)
	role := createRole(t, "agent-bad", awsemu.PodidTrust(serverARN))
	w := newWorkload(t, role, nil)
	pod, _ := w.podWithToken(t, "bad-0")
	good := w.token(t, pod)
	f := newForger(t)
	expired := f.forge(t, pod, func(c *jwt.Claims, _ map[string]any) {
		c.Expiry = jwt.NewNumericDate(time.Now().Add(-time.Hour))
		c.IssuedAt, c.NotBefore = jwt.NewNumericDate(time.Now().Add(-2*time.Hour)), jwt.NewNumericDate(time.Now().Add(-2*time.Hour))
	})
	cases := []struct {
		name, host, authorization string
		status                    int
	}{
		{"no Authorization", "", "", 400},
		{"Bearer prefix", "", "Bearer " + good, 400},
		{"garbage", "", "garbage", 400},
		{"oversized header", "", strings.Repeat("a", 40<<10), 431},
		{"expired token", "", expired, 400},
		{"wrong Host (DNS rebinding)", "evil.example", good, 403},
		{"good", "", good, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := n.get(t, c.host, c.authorization)
			if status != c.status {
				t.Fatalf("status %d (%s), want %d", status, body, c.status)
			}
			if status == 200 {
				var creds struct{ AccessKeyId, SecretAccessKey, Token, AccountId, Expiration string }
				if err := json.Unmarshal([]byte(body), &creds); err != nil || creds.AccessKeyId == "" || creds.AccountId != identity.AccountID {
					t.Fatalf("body %s: %v", body, err)
				}
				if _, err := time.Parse(time.RFC3339, creds.Expiration); err != nil {
					t.Fatalf("Expiration %q is not RFC 3339", creds.Expiration)
				}
			}
		})
	}
}

// The troubleshooting guides' probe from a pod (wget -O-
// 169.254.170.23/latest/meta-data/) reaches the agent and is told what it
// is; other paths stay 404.
func TestAgentAnswersTheGuidesProbe(t *testing.T) {
	n := startNodeWithAgent(t)
	for _, path := range []string{"/latest/meta-data/", "/"} {
		status, body := n.getURL(t, "http://169.254.170.23"+path, "", "")
		if status != 200 || !strings.Contains(body, "podid agent: reachable") || !strings.Contains(body, "GET /v1/credentials") || !strings.Contains(body, "podid doctor pod") {
			t.Errorf("GET %s: %d %q", path, status, body)
		}
	}
	if status, body := n.getURL(t, "http://169.254.170.23/v2/credentials", "", ""); status != 404 || !strings.Contains(body, "GET /v1/credentials") {
		t.Errorf("GET /v2/credentials: %d %q", status, body)
	}
}

// getURL asks the agent at url from inside the node, with host as the Host
// header ("" for url's) and the Authorization header unless empty.
func (n *nodeWithAgent) getURL(t *testing.T, url, host, authorization string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if host != "" {
		req.Host = host
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := n.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestAgentModesAddressesRestartAndDrain(t *testing.T) {
	n := startNodeWithAgent(t)
	role := createRole(t, "agent-modes", awsemu.PodidTrust(serverARN))
	w := newWorkload(t, role, nil)

	t.Run("IPv6 address", func(t *testing.T) {
		if !n.node.IPv6 {
			t.Fatal("the node has no IPv6; this machine's namespaces should")
		}
		pod, tokenFile := w.podWithToken(t, "v6-0")
		if status, body := n.getURL(t, "http://[fd00:ec2::23]/v1/credentials", "", w.token(t, pod)); status != 200 {
			t.Fatalf("over IPv6: %d %s", status, body)
		}
		// And through the SDK, as an IPv6 cluster's webhook would configure it.
		bin, err := buildWorkload()
		if err != nil {
			t.Fatal(err)
		}
		cmd := n.node.Command(t.Context(), bin, "once")
		cmd.Env = append(n.env(tokenFile), podidentity.EnvCredentialsFullURI+"="+podidentity.CredentialsURIv6)
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "assumed-role/agent-modes/") {
			t.Fatalf("Go SDK over IPv6: %v %s", err, out)
		}
	})

	t.Run("restart refills one call per pod", func(t *testing.T) {
		var tokens []string
		for i := range 20 {
			pod, _ := w.podWithToken(t, fmt.Sprintf("restart-%d", i))
			tokens = append(tokens, w.token(t, pod))
		}
		for _, tok := range tokens {
			if status, body := n.get(t, "", tok); status != 200 {
				t.Fatalf("before the restart: %d %s", status, body)
			}
		}
		n.stop()
		n.startAgent(t, agentMode{})
		// Every pod's SDK comes back at once, several times each.
		var wg sync.WaitGroup
		for _, tok := range tokens {
			for range 5 {
				wg.Go(func() {
					if status, body := n.get(t, "", tok); status != 200 {
						t.Errorf("after the restart: %d %s", status, body)
					}
				})
			}
		}
		wg.Wait()
		if calls := n.upstream.calls.Load(); calls != int32(len(tokens)) {
			t.Fatalf("upstream calls after a restart = %d for %d pods, want one each", calls, len(tokens))
		}
	})

	t.Run("drains in-flight requests on shutdown", func(t *testing.T) {
		n.stop()
		n.startAgent(t, agentMode{delay: 500 * time.Millisecond})
		pod, _ := w.podWithToken(t, "drain-0")
		result := make(chan int, 1)
		go func() {
			status, _ := n.get(t, "", w.token(t, pod))
			result <- status
		}()
		eventually(t, "the request to reach upstream", func(context.Context) (bool, error) { return n.upstream.calls.Load() == 1, nil })
		n.stop() // while the upstream call is in flight
		if status := <-result; status != 200 {
			t.Fatalf("a request in flight at shutdown got %d", status)
		}
	})

	t.Run("SigV4 to the exchange, as against EKS Auth", func(t *testing.T) {
		n.stop()
		n.startAgent(t, agentMode{sigv4: true})
		pod, _ := w.podWithToken(t, "sigv4-0")
		if status, body := n.get(t, "", w.token(t, pod)); status != 200 || !strings.Contains(body, `"AccountId":"`+identity.AccountID+`"`) {
			t.Fatalf("through a SigV4-signing agent: %d %s", status, body)
		}
	})
}

// Crossplane's path (Upbound's AWS provider, credentials.source: PodIdentity
// with an assumeRoleChain of two hops, the first with an external ID), run
// by the real SDK in a process on the node: the default chain reaches the
// agent, then stscreds assumes each hop with the previous credentials, and
// the program ends up as the last role. The session tags podid set are
// transitive, so each hop's trust allows sts:TagSession, as Upbound's guide
// says.
func TestCrossplaneAssumeRoleChain(t *testing.T) {
	n := startNodeWithAgent(t)
	base := createRole(t, "xp-provider", awsemu.PodidTrust(serverARN))
	hop1 := createRole(t, "xp-hop1", awsemu.TrustPolicy(base, awsemu.PodidActions, `{"StringEquals":{"sts:ExternalId":"xp-external-id"}}`))
	hop2 := createRole(t, "xp-hop2", awsemu.TrustPolicy(hop1, awsemu.PodidActions, ""))
	w := newWorkload(t, base, nil)
	_, tokenFile := w.podWithToken(t, "provider-aws-0")
	workloadBin, err := buildWorkload()
	if err != nil {
		t.Fatal(err)
	}
	chain := sdkworkload.EnvAssumeRoleChain + "=" + hop1 + "|xp-external-id," + hop2
	got := n.runWorkloadEnv(t, tokenFile, []string{chain}, workloadBin, "once")
	if !strings.HasPrefix(got.ARN, "arn:aws:sts::"+identity.AccountID+":assumed-role/xp-hop2/") {
		t.Fatalf("the provider's chain ended as %s, want the second hop's role", got.ARN)
	}
	// Without the external ID, the first hop is refused: the condition is
	// evaluated, not ignored.
	bad := n.node.Command(t.Context(), workloadBin, "once")
	bad.Env = append(n.env(tokenFile), sdkworkload.EnvAssumeRoleChain+"="+hop1+","+hop2)
	if out, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(out), "AccessDenied") {
		t.Fatalf("a chain without the external ID: %v\n%s", err, out)
	}
}
