package sandbox

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/podid/podid/internal/agent"
	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/internal/token"
	"github.com/podid/podid/test/harness/netns"
)

// NodeName is the sandbox's one node.
const NodeName = "sandbox-node"

// Where podid runs in the sandbox, as in a cluster.
const (
	systemNamespace     = "podid-system"
	agentServiceAccount = "podid-agent"
)

// node is the sandbox's node: a network namespace holding the agent's
// link-local addresses when the sandbox runs as root, else the host's
// loopback. It plays the kubelet too, writing pods' tokens into its pods
// directory.
type node struct {
	// netns is the namespace's name; "" on loopback.
	netns *netns.Node
	// agentURL is the credentials URL pods are given.
	agentURL string
	// podsDir stands for /var/lib/kubelet/pods.
	podsDir string
	// listeners are the agent's, opened in the node.
	listeners []net.Listener
	// stsInside is the emulator's URL as seen from inside the node.
	stsInside string
	// client dials from inside the node.
	client *http.Client
}

// newNode makes the node: a network namespace as root (with iproute2), the
// loopback otherwise.
func newNode(dir string, loopback bool) (*node, error) {
	n := &node{podsDir: filepath.Join(dir, "kubelet", "pods")}
	if err := os.MkdirAll(n.podsDir, 0o755); err != nil {
		return nil, err
	}
	if reason := whyNoNamespace(loopback); reason == "" {
		ns, err := netns.NewNode(fmt.Sprintf("podid-sandbox-%d", os.Getpid()))
		if err != nil {
			return nil, err
		}
		n.netns = ns
		l, err := ns.Listen("tcp", net.JoinHostPort(podidentity.AgentIPv4, "80"))
		if err != nil {
			n.close()
			return nil, fmt.Errorf("binding 169.254.170.23:80 in the node: %w", err)
		}
		n.listeners = append(n.listeners, l)
		if ns.IPv6 {
			if l6, err := ns.Listen("tcp", net.JoinHostPort(podidentity.AgentIPv6, "80")); err == nil {
				n.listeners = append(n.listeners, l6)
			}
		}
		n.agentURL = podidentity.CredentialsURI
		n.client = n.newClient()
		return n, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	n.listeners = []net.Listener{l}
	n.agentURL = "http://" + l.Addr().String() + "/v1/credentials"
	n.client = n.newClient()
	return n, nil
}

// whyNoNamespace says why the node is not a network namespace, or "".
func whyNoNamespace(loopback bool) string {
	if loopback {
		return "asked for the loopback"
	}
	if os.Geteuid() != 0 {
		return "not running as root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "iproute2's ip is not installed"
	}
	return ""
}

// netnsName is the namespace's name, "" on loopback.
func (n *node) netnsName() string {
	if n.netns == nil {
		return ""
	}
	return n.netns.Name
}

// listenInside opens a listener on the node's loopback.
func (n *node) listenInside() (net.Listener, error) {
	if n.netns == nil {
		return net.Listen("tcp", "127.0.0.1:0")
	}
	return n.netns.Listen("tcp", "127.0.0.1:0")
}

// command prepares a process on the node.
func (n *node) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if n.netns == nil {
		return exec.CommandContext(ctx, name, args...)
	}
	return n.netns.Command(ctx, name, args...)
}

func (n *node) close() {
	for _, l := range n.listeners {
		l.Close()
	}
	if n.netns != nil {
		_ = n.netns.Delete()
	}
}

// registerNode creates the Node object and the agent's ServiceAccount and
// Pod on it: podid server admits an agent by its own token bound to a pod
// running on the node it serves.
func registerNode(ctx context.Context, cs kubernetes.Interface) (*corev1.Pod, error) {
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: NodeName}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating Node %s: %w", NodeName, err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(systemNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: agentServiceAccount}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating the agent's ServiceAccount: %w", err)
	}
	pod, err := cs.CoreV1().Pods(systemNamespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "podid-agent-" + NodeName, Labels: map[string]string{"app.kubernetes.io/name": "podid-agent"}},
		Spec: corev1.PodSpec{ServiceAccountName: agentServiceAccount, NodeName: NodeName, HostNetwork: true,
			Containers: []corev1.Container{{Name: "agent", Image: "podid"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating the agent's Pod: %w", err)
	}
	return pod, nil
}

// agentTokenRefresher keeps the agent's own token file fresh, as the kubelet
// would, until ctx ends.
func agentTokenRefresher(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, file string) error {
	write := func() error {
		tr, err := cs.CoreV1().ServiceAccounts(systemNamespace).CreateToken(ctx, agentServiceAccount, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			Audiences: []string{"podid.io/agent"}, ExpirationSeconds: ptr.To(int64(3600)),
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		}}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("requesting the agent's token: %w", err)
		}
		return writeFileAtomic(file, []byte(tr.Status.Token))
	}
	if err := write(); err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(30 * time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = write() // the old token lasts another half hour: the next tick retries
			}
		}
	}()
	return nil
}

// startAgent runs podid agent for the node in this process until ctx ends.
func startAgent(ctx context.Context, cfg *rest.Config, n *node, serverURL, tokenFile, clusterName, region string) (<-chan error, error) {
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	api := &agent.APIServer{Host: strings.TrimSuffix(cfg.Host, "/"), Client: httpClient}
	verifier, err := token.ForAPIServer(ctx, api.Client, api.Host, nil)
	if err != nil {
		return nil, err
	}
	upstream := agent.NewEKSAuth(agent.EKSAuthOptions{Endpoint: serverURL, ClusterName: clusterName, Region: region, AgentTokenFile: tokenFile})
	a := agent.New(agent.Options{
		Node:      NodeName,
		Listeners: n.listeners,
		Cache:     agent.NewCache(upstream, agent.CacheOptions{Tokens: agent.KubeletTokens{Dir: n.podsDir}}),
		Handler:   agent.HandlerOptions{Tokens: verifier},
		APIServer: api,
	})
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return done, nil
}

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// newClient is an HTTP client that dials from inside the node.
func (n *node) newClient() *http.Client {
	dial := (&net.Dialer{}).DialContext
	if n.netns != nil {
		dial = n.netns.DialContext
	}
	return &http.Client{Transport: &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 8}, Timeout: 30 * time.Second}
}
