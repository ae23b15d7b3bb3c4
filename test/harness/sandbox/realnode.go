package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/accesskey"
	"github.com/podid/podid/internal/agent"
	"github.com/podid/podid/internal/kube"
	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/test/harness/localnode"
)

// NodeMode chooses the sandbox's node.
type NodeMode string

const (
	// NodeSimulated: the sandbox plays the kubelet, podid server and agent
	// run in its process (the zero value, what tests of those parts want).
	NodeSimulated NodeMode = ""
	// NodeReal: a real kubelet and container runtime (package localnode),
	// with podid installed by its Helm chart.
	NodeReal NodeMode = "real"
	// NodeAuto: real when the machine allows it, else simulated with a
	// notice saying why.
	NodeAuto NodeMode = "auto"
)

// RealNodeOptions tune the sandbox on a real node.
type RealNodeOptions struct {
	// TokenExpirationSeconds is the lifetime of the pod tokens the kubelet
	// writes (the chart's webhook.tokenExpirationSeconds); 0 keeps the
	// chart's default. Tests shorten it to see the kubelet rotate them.
	TokenExpirationSeconds int64
	// SessionDuration is the lifetime of issued credentials (the chart's
	// server.sessionDuration); "" keeps the chart's default.
	SessionDuration string
	// Images are built and imported besides podid's and the workload's.
	Images []localnode.Image
	// Rotator installs podid rotator (the chart's rotator.enabled) with the
	// sample role as its association's role and the emulator as its AWS
	// endpoint.
	Rotator bool
	// CredentialProvider installs podid-credential-provider with the chart
	// (credentialProvider.enabled) and restarts the kubelet with it.
	CredentialProvider *CredentialProviderOptions
	// IdentityCertificateLifetime is the lifetime of podid server's Roles
	// Anywhere certificate (the chart's
	// server.awsIdentity.rolesAnywhere.certificate.lifetime); "" keeps the
	// chart's default. Tests shorten it to see it renewed.
	IdentityCertificateLifetime string
}

// CredentialProviderOptions configure the kubelet credential provider the
// sandbox installs.
type CredentialProviderOptions struct {
	// JFrogHosts are the chart's credentialProvider.jfrogHosts.
	JFrogHosts []string
	// Env is the plugin's environment besides AWS_ENDPOINT_URL (the
	// emulator).
	Env map[string]string
	// TrustNodeCA makes the plugin trust only the node's CA (SSL_CERT_FILE),
	// for an Artifactory served on the node with a certificate from
	// localnode's ServingCertificate.
	TrustNodeCA bool
}

// credentialProviderDirs are where the chart installs the plugin on the
// node: under the node's directory, which Stop removes.
func (r *realSide) credentialProviderDirs() (bin, config string) {
	return filepath.Join(r.node.Dir, "credential-provider", "bin"), filepath.Join(r.node.Dir, "credential-provider", "config.d")
}

// Images of the real node, built from this module.
const (
	PodidImageRepository = "localnode.podid.io/podid"
	PodidImageTag        = "sandbox"
	WorkloadImage        = "localnode.podid.io/workload:1"
	releaseName          = "podid"
)

// RealNodeUnavailable says why this machine cannot run the sandbox on a
// real node, or returns nil.
func RealNodeUnavailable() error {
	bin := localnode.DefaultBinDir()
	if err := localnode.Check(bin); err != nil {
		return err
	}
	if _, err := exec.LookPath(filepath.Join(bin, "helm")); err != nil {
		return errors.New("helm not in bin/: run `make tools`")
	}
	if _, err := localnode.ModuleRoot(); err != nil {
		return err
	}
	return nil
}

// realSide is what the sandbox runs on a real node.
type realSide struct {
	node     *localnode.Node
	client   client.Client
	chartDir string
	// InstallTime is chart install → all podid pods Ready.
	installTime time.Duration
	// identityTime is the upgrade with the Roles Anywhere ARNs → podid
	// server acting as its role.
	identityTime time.Duration
}

// RealNode is the sandbox's real node, nil on a simulated one.
func (s *Sandbox) RealNode() *localnode.Node {
	if s.real == nil {
		return nil
	}
	return s.real.node
}

// Client reaches the sandbox's API server as an administrator, with
// podid's scheme.
func (s *Sandbox) Client() client.Client {
	if s.real != nil {
		return s.real.client
	}
	return s.cluster.Client
}

// WaitAssociationReady waits until podid server has marked pia Ready.
func (s *Sandbox) WaitAssociationReady(ctx context.Context, pia *v1alpha1.PodIdentityAssociation) error {
	_, err := waitReady(ctx, s.Client(), pia)
	return err
}

// ChartInstallTime is how long `helm install` took until every podid pod
// was Ready, on a real node.
func (s *Sandbox) ChartInstallTime() time.Duration {
	if s.real == nil {
		return 0
	}
	return s.real.installTime
}

// startReal brings the sandbox up on a real node: the node, the emulator on
// the node's address (where podid server's pods reach it), podid installed
// by its chart, the sample association and the sample workload as a
// Deployment.
func (s *Sandbox) startReal(ctx, runCtx context.Context) error {
	opts, say := s.opts, s.say
	root, err := localnode.ModuleRoot()
	if err != nil {
		return err
	}
	r := &realSide{chartDir: filepath.Join(root, "charts", "podid")}
	s.real = r
	say("starting a real node: etcd, kube-apiserver, controller-manager, scheduler, containerd, kubelet, kube-proxy, CoreDNS")
	images := append([]localnode.Image{
		{Ref: PodidImageRepository + ":" + PodidImageTag, Programs: map[string]string{"/podid": "./cmd/podid", "/podid-agent": "./cmd/podid-agent", "/podid-credential-provider": "./cmd/podid-credential-provider"},
			Entrypoint: []string{"/podid"}, User: "65532:65532", LDFlags: "-X github.com/podid/podid/internal/version.Version=sandbox"},
		{Ref: WorkloadImage, Programs: map[string]string{"/workload": "./test/workload"}, Entrypoint: []string{"/workload"}, User: "65532:65532"},
	}, opts.RealNode.Images...)
	began := time.Now()
	r.node, err = localnode.Start(ctx, localnode.Options{Images: images, Logf: func(f string, a ...any) { say("    "+f, a...) }})
	if err != nil {
		return err
	}
	s.stopping = append(s.stopping, func() {
		say("stopping the node and restoring the host")
		if err := r.node.Stop(); err != nil {
			say("the node did not stop cleanly: %v", err)
		}
	})
	say("node %s Ready with cluster DNS and Services in %.1fs; its logs are in %s", r.node.Name, time.Since(began).Seconds(), filepath.Join(r.node.Dir, "logs"))
	s.cs = r.node.Clientset
	if r.client, err = client.New(r.node.Config, client.Options{Scheme: kube.NewScheme()}); err != nil {
		return err
	}
	kubeconfig := filepath.Join(opts.Dir, "kubeconfig")
	data, err := os.ReadFile(r.node.Kubeconfig)
	if err != nil {
		return err
	}
	if err := os.WriteFile(kubeconfig, data, 0o600); err != nil {
		return err
	}

	// podid server acts as the role `podid roles-anywhere setup` makes.
	serverRole := fmt.Sprintf("arn:%s:iam::%s:role/podid-server-%s", opts.Identity.Partition, opts.Identity.AccountID, opts.Identity.ClusterName)
	if s.aws, err = startAWS(runCtx, opts.Identity, net.JoinHostPort(r.node.IP, "0"), serverRole); err != nil {
		return err
	}
	say("STS, IAM and IAM Roles Anywhere at %s (on the node's bridge, where pods reach it); role %s trusts podid server's role", s.aws.endpoint, s.aws.sampleRole)

	values, err := s.writeChartValues()
	if err != nil {
		return err
	}
	say("helm install %s %s --namespace %s -f %s", releaseName, r.chartDir, systemNamespace, values)
	began = time.Now()
	if err := s.helmInstall(ctx, kubeconfig, values); err != nil {
		return err
	}
	// helm's --wait counts a DaemonSet of one node with maxUnavailable 10%
	// as ready with no pod ready: wait for the agent itself.
	if err := s.waitAgent(ctx); err != nil {
		return err
	}
	r.installTime = time.Since(began)
	say("podid installed: server (2 replicas), agent DaemonSet, webhook, all Ready in %.1fs", r.installTime.Seconds())
	if err := s.setupRolesAnywhere(ctx); err != nil {
		return err
	}
	if opts.RealNode.CredentialProvider != nil {
		bin, config := r.credentialProviderDirs()
		say("the agent's init container installed podid-credential-provider into %s and %s; restarting the kubelet with them", bin, config)
		if err := r.node.UseImageCredentialProviders(ctx, config, bin); err != nil {
			return err
		}
	}

	say("creating namespace demo, ServiceAccount demo-app and its association")
	pia, err := createSample(ctx, r.client, s.aws.sampleRole)
	if err != nil {
		return err
	}
	ready, err := waitReady(ctx, r.client, pia)
	if err != nil {
		return err
	}
	say("association %s: %s (%s)", pia.Status.AssociationID, ready.Message, ready.Reason)
	pod, id, err := s.runRealSample(ctx)
	if err != nil {
		return err
	}
	say("pod demo/%s runs the workload image; podid's webhook injected %s", pod.Name, injectedEnv(pod))
	say("the workload's AWS SDK got credentials %s from %s, expiring %s", id.AccessKeyID, id.Source, id.Expires.Format(time.RFC3339))
	say("GetCallerIdentity: %s", id.ARN)
	s.saySessionTags(id.AccessKeyID)

	if err := s.printPods(ctx); err != nil {
		return err
	}

	// The APIs, from this host: the chart's API Service at a pinned
	// ClusterIP (kube-proxy translates this host's packets too), with
	// podid's own CA, which the SDKs and the aws CLI read from
	// AWS_CA_BUNDLE and Node.js from NODE_EXTRA_CA_CERTS.
	caFile, err := s.saveServerCA(ctx)
	if err != nil {
		return err
	}
	return s.writeEnv(kubeconfig, nodeEnv{
		Mode: "real", ServerURL: "https://" + apiServiceIP, CABundle: caFile, AgentURL: podidentity.CredentialsURI, NodeName: r.node.Name,
		PodsDir: "/var/lib/kubelet/pods", SampleTokenFile: agent.KubeletTokens{}.Path(string(pod.UID)), NodeSTSEndpoint: s.aws.endpoint,
	})
}

// apiServiceIP is the ClusterIP the sandbox pins for the chart's API Service
// (api.service), inside localnode's Service subnet (10.96.0.0/24), and names
// in podid's serving certificate (api.tlsNames).
const apiServiceIP = "10.96.0.80"

// saveServerCA writes the CA bundle podid publishes (ConfigMap podid-ca) into
// the sandbox's directory, for clients on this host.
func (s *Sandbox) saveServerCA(ctx context.Context) (string, error) {
	var bundle string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		cm, err := s.cs.CoreV1().ConfigMaps(systemNamespace).Get(ctx, "podid-ca", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		bundle = cm.Data["ca.crt"]
		return bundle != "", nil
	})
	if err != nil {
		return "", fmt.Errorf("waiting for podid's CA bundle (ConfigMap %s/podid-ca): %w", systemNamespace, err)
	}
	path := filepath.Join(s.opts.Dir, "podid-ca.crt")
	return path, os.WriteFile(path, []byte(bundle), 0o644)
}

// writeChartValues writes the values the sandbox installs the chart with:
// only what this machine needs (the image built here, the emulator as STS,
// the link for the agent's addresses) and the server's AWS identity source,
// IAM Roles Anywhere, as a user would give it.
func (s *Sandbox) writeChartValues() (string, error) {
	id := s.opts.Identity
	ctx := context.Background()
	if _, err := s.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: systemNamespace}}, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("creating namespace %s: %w", systemNamespace, err)
	}
	// sandbox.env's access key, admitted by podid's SigV4 APIs as a cluster
	// administrator, as `podid access-key create` would write it.
	entry := s.aws.clientKey.Principal.(accesskey.Entry)
	entry.AccessKeyID, entry.SecretAccessKey = s.aws.clientKey.AccessKeyID, s.aws.clientKey.SecretAccessKey
	keys, err := accesskey.Marshal([]accesskey.Entry{entry})
	if err != nil {
		return "", err
	}
	keysSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: systemNamespace, Name: "podid-access-keys"}, Data: map[string][]byte{accesskey.FileKey: keys}}
	if _, err := s.cs.CoreV1().Secrets(systemNamespace).Create(ctx, keysSecret, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("creating the access-keys Secret: %w", err)
	}
	link := "podid0"
	if !localnode.DummyLinks() {
		link = "lo" // this kernel has no dummy link type
	}
	// podid server's AWS identity: IAM Roles Anywhere with podid's own CA,
	// no key. The ARNs come after the install (setupRolesAnywhere), as
	// for a user following docs/on-premises.md.
	certificate := map[string]any{"issuer": "podid"}
	if l := s.opts.RealNode.IdentityCertificateLifetime; l != "" {
		certificate["lifetime"] = l
	}
	server := map[string]any{
		"stsEndpoint":      s.aws.endpoint,
		"accessKeysSecret": "podid-access-keys",
		"awsIdentity": map[string]any{"source": "rolesAnywhere", "rolesAnywhere": map[string]any{
			"endpoint": s.aws.endpoint, "certificate": certificate,
		}},
		// IAM (roles' MaxSessionDuration) at the emulator too.
		"extraEnv": []any{map[string]any{"name": "AWS_ENDPOINT_URL_IAM", "value": s.aws.endpoint}},
	}
	if d := s.opts.RealNode.SessionDuration; d != "" {
		server["sessionDuration"] = d
	}
	webhook := map[string]any{"injectRegion": id.Region}
	if e := s.opts.RealNode.TokenExpirationSeconds; e != 0 {
		webhook["tokenExpirationSeconds"] = e
	}
	values := map[string]any{
		"clusterName": id.ClusterName, "accountId": id.AccountID, "region": id.Region, "partition": id.Partition,
		"image":  map[string]any{"repository": PodidImageRepository, "tag": PodidImageTag},
		"server": server,
		// The probes on the node's address only, not every host address.
		"agent":   map[string]any{"initLink": link, "healthAddress": s.real.node.IP},
		"webhook": webhook,
		// The APIs reachable from this host, verified against podid's CA.
		"api": map[string]any{"service": map[string]any{"enabled": true, "clusterIP": apiServiceIP}, "tlsNames": []string{apiServiceIP}},
	}
	if s.opts.RealNode.Rotator {
		values["rotator"] = map[string]any{
			"enabled": true, "roleArn": s.aws.sampleRole,
			"extraEnv": []any{map[string]any{"name": "AWS_ENDPOINT_URL", "value": s.aws.endpoint}},
		}
	}
	if cp := s.opts.RealNode.CredentialProvider; cp != nil {
		bin, config := s.real.credentialProviderDirs()
		env := []any{map[string]any{"name": "AWS_ENDPOINT_URL", "value": s.aws.endpoint}}
		if cp.TrustNodeCA {
			env = append(env, map[string]any{"name": "SSL_CERT_FILE", "value": s.real.node.CAFile()})
		}
		for _, k := range slices.Sorted(maps.Keys(cp.Env)) {
			env = append(env, map[string]any{"name": k, "value": cp.Env[k]})
		}
		values["credentialProvider"] = map[string]any{
			"enabled": true, "hostBinDir": bin, "hostConfigDir": config, "jfrogHosts": cp.JFrogHosts, "env": env,
		}
	}
	// JSON is YAML; helm reads either.
	data, err := json.MarshalIndent(values, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(s.opts.Dir, "values.yaml")
	return path, os.WriteFile(path, data, 0o600)
}

// helmInstall installs the chart as shipped with values, waiting for every
// pod to be Ready.
func (s *Sandbox) helmInstall(ctx context.Context, kubeconfig, values string) error {
	return s.helm(ctx, "install", releaseName, s.real.chartDir, "--namespace", systemNamespace,
		"--kubeconfig", kubeconfig, "-f", values, "--wait", "--timeout", "5m")
}

// UpgradeChart runs `helm upgrade` of the installed release with its
// values and set (KEY=VALUE, as --set), as an operator changing a value
// does, waiting as helm waits.
func (s *Sandbox) UpgradeChart(ctx context.Context, set ...string) error {
	args := []string{"upgrade", releaseName, s.real.chartDir, "--namespace", systemNamespace,
		"--kubeconfig", s.real.node.Kubeconfig, "-f", filepath.Join(s.opts.Dir, "values.yaml"), "--wait", "--timeout", "5m"}
	for _, kv := range set {
		args = append(args, "--set", kv)
	}
	return s.helm(ctx, args...)
}

func (s *Sandbox) helm(ctx context.Context, args ...string) error {
	helm := filepath.Join(localnode.DefaultBinDir(), "helm")
	cmd := exec.CommandContext(ctx, helm, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(s.opts.Dir, "helm", "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(s.opts.Dir, "helm", "config"), "HELM_DATA_HOME="+filepath.Join(s.opts.Dir, "helm", "data"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("helm %s: %w: %s\n%s", args[0], err, strings.TrimSpace(string(out)), s.PodsReport(ctx))
	}
	return nil
}

// waitAgent waits until podid agent is ready on every node.
func (s *Sandbox) waitAgent(ctx context.Context) error {
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		ds, err := s.cs.AppsV1().DaemonSets(systemNamespace).Get(ctx, "podid-agent", metav1.GetOptions{})
		return err == nil && ds.Status.DesiredNumberScheduled > 0 && ds.Status.NumberReady == ds.Status.DesiredNumberScheduled, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for podid agent to be ready: %w\n%s", err, s.PodsReport(ctx))
	}
	return nil
}

// PodsReport describes podid's pods (phase, each container's readiness,
// restarts, waiting reason and last exit), for a failure message.
func (s *Sandbox) PodsReport(ctx context.Context) string {
	pods, err := s.cs.CoreV1().Pods(systemNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "pod %s: %s", p.Name, p.Status.Phase)
		for _, c := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			fmt.Fprintf(&b, "; %s ready=%v restarts=%d", c.Name, c.Ready, c.RestartCount)
			if c.State.Waiting != nil {
				fmt.Fprintf(&b, "; %s waiting: %s %s", c.Name, c.State.Waiting.Reason, c.State.Waiting.Message)
			}
			if c.LastTerminationState.Terminated != nil {
				fmt.Fprintf(&b, "; %s last exited %d: %s", c.Name, c.LastTerminationState.Terminated.ExitCode, c.LastTerminationState.Terminated.Message)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}
