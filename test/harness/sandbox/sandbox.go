// Package sandbox runs the whole of podid on one machine with no cloud
// account and no cluster: a real etcd and kube-apiserver (package
// localcluster), podid server with its webhook, one node with podid agent, the
// STS/IAM emulator as AWS, a sample association, and a sample workload that
// gets credentials through the AWS SDK's default chain and uses them. It
// prints each step and writes a kubeconfig and sandbox.env so that kubectl,
// the podid CLI, AWS clients and tests can drive it.
//
// As root (with iproute2) the node is a network namespace where the agent
// binds the real 169.254.170.23:80 and the workload runs; otherwise the agent
// listens on the host's loopback and pods are given that address. The
// sandbox plays the kubelet: it writes pods' tokens into the node's pods
// directory and runs the workload with the pod's environment.
package sandbox

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/internal/sigv4"
	"github.com/podid/podid/internal/webhook"
	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/harness/localcluster"
)

// Options configure Start and Up.
type Options struct {
	// Dir holds the kubeconfig, sandbox.env, the node's pods directory and
	// the pid file.
	Dir string
	// Identity names the sandbox cluster.
	Identity association.Identity
	// Out receives the narration.
	Out io.Writer
	// Ready, if set, is closed once the sandbox is up (for tests).
	Ready chan<- struct{}
	// WorkloadCommand runs the sample workload program (RunWorkload);
	// default: this executable (SelfWorkload), whose main calls
	// RunWorkloadIfAsked.
	WorkloadCommand []string
	// Loopback puts the simulated node on this host's loopback even as
	// root; without root it always is.
	Loopback bool
	// Node chooses a simulated node (the zero value), a real one, or the
	// real one when this machine allows it (NodeAuto, `podid-sandbox up`).
	Node NodeMode
	// RealNode tunes the real node.
	RealNode RealNodeOptions
}

// DefaultIdentity names the sandbox cluster.
var DefaultIdentity = association.Identity{Partition: "aws", Region: "us-east-1", AccountID: "111122223333", ClusterName: "sandbox"}

// Sandbox is a running sandbox.
type Sandbox struct {
	// Env is what sandbox.env exports.
	Env  map[string]string
	opts Options

	cluster *localcluster.Cluster
	real    *realSide
	cs      kubernetes.Interface
	aws     *awsSide
	node    *node
	server  *server.Server
	stop    context.CancelFunc
	// done receives the server's and the agent's ends; running counts
	// those not received yet, which Stop waits for.
	done     chan error
	running  int
	stopping []func()
}

// Emulator is the sandbox's AWS, for tests that look at the sessions it
// issued (their tags).
func (s *Sandbox) Emulator() *awsemu.Emulator { return s.aws.emulator }

// Up starts the sandbox, narrating, and runs it until ctx is cancelled.
func Up(ctx context.Context, opts Options) error {
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return err
	}
	pidFile := filepath.Join(dir, "sandbox.pid")
	if pid, err := readPID(pidFile); err == nil && processAlive(pid) {
		return fmt.Errorf("a sandbox is already running in %s (pid %d); stop it with `podid-sandbox down`", dir, pid)
	}
	s, err := Start(ctx, opts)
	if err != nil {
		return err
	}
	defer s.Stop()
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	defer os.Remove(pidFile)
	say := s.say
	say("sandbox up. In another shell:")
	fmt.Fprintf(s.opts.Out, "      source %s\n      podid association list\n      kubectl get pods -A\n", s.Env["PODID_ENV_FILE"])
	if ns := s.Env["PODID_NODE_NETNS"]; ns != "" {
		fmt.Fprintf(s.opts.Out, "      sudo ip netns exec %s curl -s -H \"Authorization: $(cat $PODID_SAMPLE_TOKEN_FILE)\" $PODID_AGENT_URL\n", ns)
	} else {
		fmt.Fprintf(s.opts.Out, "      curl -s -H \"Authorization: $(cat $PODID_SAMPLE_TOKEN_FILE)\" $PODID_AGENT_URL\n")
	}
	say("stop it with Ctrl-C or `podid-sandbox down --dir %s`", s.opts.Dir)
	if opts.Ready != nil {
		close(opts.Ready)
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.done:
		s.running--
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("it exited without being asked to")
		}
		return fmt.Errorf("the sandbox stopped: %w", err)
	}
}

func (s *Sandbox) say(format string, args ...any) {
	fmt.Fprintf(s.opts.Out, "==> "+format+"\n", args...)
}

// Start brings the sandbox up and returns once the sample workload has
// obtained credentials; Stop takes it down.
func Start(ctx context.Context, opts Options) (_ *Sandbox, err error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if len(opts.WorkloadCommand) == 0 {
		if opts.WorkloadCommand, err = SelfWorkload(); err != nil {
			return nil, err
		}
	}
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the sandbox directory: %w", err)
	}
	s := &Sandbox{opts: opts, done: make(chan error, 2)}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	say := s.say
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop

	mode := opts.Node
	if mode == NodeAuto {
		mode = NodeReal
		if why := RealNodeUnavailable(); why != nil {
			say("simulated node, the sandbox playing the kubelet: %v", why)
			mode = NodeSimulated
		}
	}
	if mode == NodeReal {
		if err := s.startReal(ctx, runCtx); err != nil {
			return nil, err
		}
		return s, nil
	}

	say("starting etcd and kube-apiserver")
	if s.cluster, err = localcluster.Start(localcluster.Options{}); err != nil {
		return nil, err
	}
	s.stopping = append(s.stopping, func() { say("stopping etcd and kube-apiserver"); _ = s.cluster.Stop() })
	kubeconfig := filepath.Join(opts.Dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, s.cluster.Kubeconfig, 0o600); err != nil {
		return nil, err
	}
	say("API server at %s, kubeconfig in %s", s.cluster.Config.Host, kubeconfig)
	cs, err := kubernetes.NewForConfig(s.cluster.Config)
	if err != nil {
		return nil, err
	}
	s.cs = cs

	say("starting the STS/IAM emulator")
	if s.aws, err = startAWS(runCtx, opts.Identity, "127.0.0.1:0", ""); err != nil {
		return nil, err
	}
	say("STS and IAM at %s; role %s trusts podid server's user", s.aws.endpoint, s.aws.sampleRole)

	if s.node, err = newNode(opts.Dir, opts.Loopback); err != nil {
		return nil, err
	}
	s.stopping = append(s.stopping, s.node.close)
	inside, err := s.node.listenInside()
	if err != nil {
		return nil, err
	}
	s.node.stsInside = s.aws.serveInside(runCtx, inside)
	if ns := s.node.netnsName(); ns != "" {
		say("node %s is network namespace %s; the agent binds 169.254.170.23:80 in it", NodeName, ns)
	} else {
		say("node %s is this host's loopback (%s: no network namespace); the agent listens on %s", NodeName, whyNoNamespace(opts.Loopback), s.node.agentURL)
	}

	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: systemNamespace}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating namespace %s: %w", systemNamespace, err)
	}
	webhookURL, err := createWebhookConfiguration(ctx, s.cluster.Client)
	if err != nil {
		return nil, err
	}

	say("starting podid server for cluster %q, with its webhook at %s", opts.Identity.ClusterName, webhookURL)
	s.server, err = server.New(runCtx, s.cluster.Config, server.Options{
		Identity: opts.Identity, MetricsAddr: "0", ProbeAddr: "0",
		API: server.APIOptions{
			// Loopback only, so plain HTTP is acceptable here and nowhere else.
			Addr: "127.0.0.1:0", InsecureHTTP: true,
			AccessKeys:           []sigv4.Key{s.aws.clientKey},
			AgentServiceAccounts: []string{systemNamespace + "/" + agentServiceAccount},
			STS:                  s.aws.stsForServer(),
		},
		Webhook: server.WebhookOptions{
			Addr:              strings.TrimPrefix(webhookURL, "https://"),
			Inject:            webhook.Config{CredentialsURI: s.node.agentURL, IRSA: true},
			Secret:            types.NamespacedName{Namespace: systemNamespace, Name: server.DefaultWebhookSecret},
			ConfigurationName: webhookConfigurationName,
			Hosts:             []string{"127.0.0.1"},
		},
	})
	if err != nil {
		return nil, err
	}
	go func() { s.done <- s.server.Start(runCtx) }()
	s.running++
	s.stopping = append(s.stopping, stop)
	if err := waitWebhook(ctx, s.cluster.Client, webhookURL); err != nil {
		return nil, err
	}

	say("starting podid agent on node %s", NodeName)
	agentPod, err := registerNode(ctx, cs)
	if err != nil {
		return nil, err
	}
	agentToken := filepath.Join(opts.Dir, "agent", "token")
	if err := agentTokenRefresher(runCtx, cs, agentPod, agentToken); err != nil {
		return nil, err
	}
	agentDone, err := startAgent(runCtx, s.cluster.Config, s.node, s.server.APIURL, agentToken, opts.Identity.ClusterName, opts.Identity.Region)
	if err != nil {
		return nil, err
	}
	go func() { s.done <- <-agentDone }()
	s.running++

	say("creating namespace demo, ServiceAccount demo-app and its association")
	pia, err := createSample(ctx, s.cluster.Client, s.aws.sampleRole)
	if err != nil {
		return nil, err
	}
	ready, err := waitReady(ctx, s.cluster.Client, pia)
	if err != nil {
		return nil, err
	}
	say("association %s: %s (%s)", pia.Status.AssociationID, ready.Message, ready.Reason)
	if err := waitIndexed(ctx, s.server.Index, pia); err != nil {
		return nil, err
	}
	sampleToken, err := s.runSampleWorkload(ctx, say)
	if err != nil {
		return nil, err
	}

	if err := s.writeEnv(kubeconfig, nodeEnv{
		Mode: "simulated", ServerURL: s.server.APIURL, AgentURL: s.node.agentURL, NetNS: s.node.netnsName(),
		NodeName: NodeName, PodsDir: s.node.podsDir, SampleTokenFile: sampleToken, NodeSTSEndpoint: s.node.stsInside,
	}); err != nil {
		return nil, err
	}
	return s, nil
}

// Stop takes the sandbox down, the server and agent first, then the API
// server; it is safe to call twice.
func (s *Sandbox) Stop() {
	if s.stop != nil {
		s.stop()
	}
	timeout := time.After(15 * time.Second)
	for ; s.running > 0; s.running-- {
		select {
		case <-s.done:
		case <-timeout:
			s.running = 0
		}
	}
	for i := len(s.stopping) - 1; i >= 0; i-- {
		s.stopping[i]()
	}
	s.stopping = nil
}

const webhookConfigurationName = "podid"

// createWebhookConfiguration registers podid's webhook with the API server
// at a free loopback port, and returns its URL. podid server fills in the
// caBundle.
func createWebhookConfiguration(ctx context.Context, c client.Client) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	url := "https://" + l.Addr().String()
	l.Close()
	cfg := webhook.Configuration(webhook.ConfigurationOptions{
		Name: webhookConfigurationName, URL: url,
		ExcludeNamespaces: []string{systemNamespace, metav1.NamespaceSystem},
	})
	if err := c.Create(ctx, cfg); err != nil {
		return "", fmt.Errorf("registering the webhook: %w", err)
	}
	return url, nil
}

// waitWebhook waits until the API server would trust the webhook: its
// caBundle is filled in and the webhook serves a certificate it verifies.
func waitWebhook(ctx context.Context, c client.Client, url string) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := c.Get(ctx, types.NamespacedName{Name: webhookConfigurationName}, cfg); err != nil {
			return false, err
		}
		pool := x509.NewCertPool()
		if len(cfg.Webhooks) == 0 || !pool.AppendCertsFromPEM(cfg.Webhooks[0].ClientConfig.CABundle) {
			last = errors.New("the caBundle is not filled in yet")
			return false, nil
		}
		conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			last = err
			return false, nil
		}
		conn.Close()
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for podid's webhook to be trusted: %w (last: %v)", err, last)
	}
	return nil
}

func createSample(ctx context.Context, c client.Client, role string) (*v1alpha1.PodIdentityAssociation, error) {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "demo-app"}},
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			return nil, fmt.Errorf("creating %s: %w", o.GetName(), err)
		}
	}
	pia := &v1alpha1.PodIdentityAssociation{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "demo-app"},
		Spec: v1alpha1.PodIdentityAssociationSpec{
			ServiceAccount: "demo-app",
			RoleARN:        role,
		},
	}
	if err := c.Create(ctx, pia); err != nil {
		return nil, fmt.Errorf("creating the sample association: %w", err)
	}
	return pia, nil
}

func waitReady(ctx context.Context, c client.Client, pia *v1alpha1.PodIdentityAssociation) (*metav1.Condition, error) {
	var ready *metav1.Condition
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(pia), pia); err != nil {
			return false, err
		}
		for i, cond := range pia.Status.Conditions {
			if cond.Type == v1alpha1.ConditionReady && cond.Status == metav1.ConditionTrue {
				ready = &pia.Status.Conditions[i]
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for podid server to mark the sample association Ready: %w", err)
	}
	return ready, nil
}

// waitIndexed waits until the server's index serves pia: the exchange reads
// the index, which the Ready condition does not prove.
func waitIndexed(ctx context.Context, index *association.Index, pia *v1alpha1.PodIdentityAssociation) error {
	return wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		_, ok := index.Lookup(pia.Namespace, pia.Name)
		return ok, nil
	})
}

// nodeEnv is what sandbox.env says about the node, which differs between a
// simulated and a real one.
type nodeEnv struct {
	// Mode is "simulated" or "real".
	Mode string
	// ServerURL is where podid's APIs are reached from this host, and
	// CABundle the CA to verify it with ("" for plain HTTP).
	ServerURL, CABundle string
	// AgentURL is reached from inside NetNS (empty: from this host).
	AgentURL, NetNS string
	NodeName        string
	// PodsDir is the kubelet's pods directory, SampleTokenFile the sample
	// pod's token in it.
	PodsDir, SampleTokenFile string
	// NodeSTSEndpoint is the emulator's STS as the node reaches it.
	NodeSTSEndpoint string
}

// envOrder is sandbox.env's order: the most used first.
var envOrder = []string{
	"KUBECONFIG", "PODID_NODE", "PODID_CLUSTER_NAME", "PODID_SERVER_URL", "PODID_AGENT_URL", "PODID_NODE_NETNS", "PODID_NODE_NAME",
	"PODID_KUBELET_PODS_DIR", "PODID_SAMPLE_TOKEN_FILE", "PODID_STS_ENDPOINT", "PODID_NODE_STS_ENDPOINT",
	"PODID_SERVER_ROLE_PRINCIPAL", "PODID_SAMPLE_ROLE_ARN", "PODID_ENV_FILE", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
	"AWS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
}

// writeEnv sets s.Env and writes it as sandbox.env in the sandbox's
// directory, for either node.
func (s *Sandbox) writeEnv(kubeconfig string, node nodeEnv) error {
	path := filepath.Join(s.opts.Dir, "sandbox.env")
	s.Env = map[string]string{
		"KUBECONFIG":                  kubeconfig,
		"PODID_NODE":                  node.Mode,
		"PODID_CLUSTER_NAME":          s.opts.Identity.ClusterName,
		"PODID_SERVER_URL":            node.ServerURL,
		"PODID_AGENT_URL":             node.AgentURL,
		"PODID_NODE_NETNS":            node.NetNS,
		"PODID_NODE_NAME":             node.NodeName,
		"PODID_KUBELET_PODS_DIR":      node.PodsDir,
		"PODID_SAMPLE_TOKEN_FILE":     node.SampleTokenFile,
		"PODID_STS_ENDPOINT":          s.aws.endpoint,
		"PODID_NODE_STS_ENDPOINT":     node.NodeSTSEndpoint,
		"PODID_SERVER_ROLE_PRINCIPAL": s.aws.serverARN,
		"PODID_SAMPLE_ROLE_ARN":       s.aws.sampleRole,
		"PODID_ENV_FILE":              path,
		"AWS_REGION":                  s.opts.Identity.Region,
		"AWS_ACCESS_KEY_ID":           s.aws.clientKey.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":       s.aws.clientKey.SecretAccessKey,
	}
	if node.CABundle != "" {
		// The CA of PODID_SERVER_URL, for the aws CLI and the SDKs (Go,
		// Python, Java read AWS_CA_BUNDLE; Node.js its own variable).
		s.Env["AWS_CA_BUNDLE"], s.Env["NODE_EXTRA_CA_CERTS"] = node.CABundle, node.CABundle
	}
	var b strings.Builder
	b.WriteString("# Written by `podid-sandbox up`; source it to point kubectl, podid and AWS clients at the sandbox.\n")
	b.WriteString("# PODID_AGENT_URL is reached from inside PODID_NODE_NETNS (empty: from this host), as a pod would;\n")
	b.WriteString("# the AWS key is accepted by podid's SigV4 APIs and by the emulator's IAM and STS.\n")
	for _, k := range envOrder {
		if v, ok := s.Env[k]; ok {
			fmt.Fprintf(&b, "export %s=%q\n", k, v)
		}
	}
	// It holds a secret key: readable by its owner only.
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return err
	}
	s.say("wrote %s", path)
	return nil
}

// Down stops the sandbox running in dir and waits for it to finish.
func Down(ctx context.Context, dir string) error {
	pidFile := filepath.Join(dir, "sandbox.pid")
	pid, err := readPID(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no sandbox is running in %s (no sandbox.pid)", dir)
	}
	if err != nil {
		return err
	}
	if !processAlive(pid) {
		_ = os.Remove(pidFile)
		return fmt.Errorf("the sandbox in %s (pid %d) is not running any more; removed its stale pid file", dir, pid)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping the sandbox (pid %d): %w", pid, err)
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		return !processAlive(pid), nil
	})
}

func readPID(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s does not hold a process ID", path)
	}
	return pid, nil
}

func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}
