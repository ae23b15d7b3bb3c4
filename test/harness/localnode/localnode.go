// Package localnode runs a real single-node Kubernetes cluster on this
// machine: etcd and kube-apiserver, kube-controller-manager and
// kube-scheduler, containerd v2 with runc and the CNI bridge, a kubelet that
// registers the node and runs pods, kube-proxy for Services and CoreDNS for
// cluster DNS. It exists so that podid's tests and sandbox install the Helm
// chart for real and watch a kubelet write and rotate tokens, instead of
// playing the kubelet.
//
// Images are built in-process from the project's Go programs
// (go-containerregistry) and imported; nothing is ever pulled, and no packet
// leaves the machine: the node's address, the pods and the routes to Service
// IPs live on a bridge this package creates, pods' traffic to anything else
// is dropped, and cluster DNS forwards nothing.
//
// A node changes the host: sysctls (the kubelet sets kernel.panic_on_oops),
// iptables chains, mounts, cgroups, a bridge and routes, and podid agent's
// addresses on lo. Everything is recorded in /run/podid-localnode before it
// changes and undone by Stop — or, after a run that was killed, by the next
// Start. One node runs per machine (a lock in the same place).
//
// It needs Linux, root, the binaries hack/tools.sh builds (node, containerd,
// coredns, kube) and Debian's runc, containernetworking-plugins and iptables;
// Check says what is missing. It is not a way to run production clusters.
package localnode

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podid/podid/test/harness/localcluster"
)

// Options configure Start.
type Options struct {
	// Dir holds the node's state: certificates, configurations, logs,
	// etcd's and containerd's data. It is removed by Stop. Default
	// /var/tmp/podid-localnode.
	Dir string
	// BinDir holds the binaries hack/tools.sh builds; default bin/ of the
	// podid checkout around the working directory.
	BinDir string
	// NodeName is the Node's name; default "localnode".
	NodeName string
	// Images are built and imported into the node's runtime, besides the
	// pause image.
	Images []Image
	// LockWait is how long to wait for another node on this machine to go;
	// default 20 minutes.
	LockWait time.Duration
	// Logf receives progress lines; default none.
	Logf func(format string, args ...any)
}

// Node is a running single-node cluster.
type Node struct {
	// Name is the Node's name.
	Name string
	// IP is the node's address, on its bridge; pods reach the host there.
	IP string
	// Config reaches the API server as a cluster administrator.
	Config *rest.Config
	// Clientset is a client of Config.
	Clientset kubernetes.Interface
	// Kubeconfig is the administrator's kubeconfig file.
	Kubeconfig string
	// Dir is the node's state directory; logs are in Dir/logs.
	Dir string

	bin, cniBin string
	extraEnv    []string
	logf        func(string, ...any)
	lock        *os.File
	rec         *record
	procs       []*process
	stopped     bool
	images      []Image // as built, in order: images/<n>.tar
	kubeletArgs []string
	pki         *pki
}

// Check returns nil when this machine can run a node, else an error saying
// what is missing and how to get it.
func Check(binDir string) error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("a real node needs Linux (this is %s)", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return errors.New("a real node needs root: it runs containerd and a kubelet, and changes mounts, cgroups and iptables")
	}
	var missing []string
	for _, b := range []string{"etcd", "kube-apiserver", "kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr", "coredns"} {
		if !executable(filepath.Join(binDir, b)) {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s not in %s: run `hack/tools.sh kube node containerd coredns` (about 10 minutes the first time)", strings.Join(missing, ", "), binDir)
	}
	for _, b := range []string{"runc", "iptables", "iptables-save", "iptables-restore", "ip"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s not found: apt-get install runc iptables iproute2 conntrack containernetworking-plugins", b)
		}
	}
	if cniBinDir() == "" {
		return errors.New("CNI plugins (bridge, host-local, loopback) not found in /usr/lib/cni or /opt/cni/bin: apt-get install containernetworking-plugins")
	}
	return nil
}

func cniBinDir() string {
	for _, d := range []string{"/usr/lib/cni", "/opt/cni/bin"} {
		if executable(filepath.Join(d, "bridge")) && executable(filepath.Join(d, "host-local")) && executable(filepath.Join(d, "loopback")) {
			return d
		}
	}
	return ""
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// DefaultBinDir is where the tools are: the directory localcluster finds
// kube-apiserver and etcd in ($KUBEBUILDER_ASSETS, else bin/ of the podid
// checkout around the working directory), where hack/tools.sh puts the
// node's binaries too.
func DefaultBinDir() string {
	if dir, err := localcluster.FindAssets(); err == nil {
		return dir
	}
	return "bin"
}

// Start brings a node up and returns once the Node is Ready, cluster DNS
// answers and the images are imported. Stop takes it down.
func Start(ctx context.Context, opts Options) (_ *Node, err error) {
	if opts.BinDir == "" {
		opts.BinDir = DefaultBinDir()
	}
	if err := Check(opts.BinDir); err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		opts.Dir = "/var/tmp/podid-localnode"
	}
	if opts.NodeName == "" {
		opts.NodeName = "localnode"
	}
	if opts.LockWait == 0 {
		opts.LockWait = 20 * time.Minute
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	n := &Node{
		Name: opts.NodeName, IP: nodeIP, Dir: opts.Dir, bin: opts.BinDir, cniBin: cniBinDir(),
		logf: opts.Logf,
		// containerd finds its shim on PATH.
		extraEnv: []string{"PATH=" + opts.BinDir + ":" + os.Getenv("PATH")},
	}
	if n.lock, err = lock(opts.LockWait); err != nil {
		return nil, err
	}
	if err := cleanupPrevious(n.logf); err != nil {
		n.lock.Close()
		return nil, fmt.Errorf("cleaning up after a previous node that was killed: %w", err)
	}
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()
	if n.rec, err = snapshot(n.Dir, bridgeName); err != nil {
		return nil, err
	}
	if err := n.rec.save(); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(n.Dir); err != nil {
		return nil, err
	}
	for _, d := range []string{"logs", "cni", "etcd", "volume-plugins"} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	began := time.Now()
	if err := n.network(); err != nil {
		return nil, err
	}
	if err := n.certificates(); err != nil {
		return nil, err
	}
	if err := n.controlPlane(ctx); err != nil {
		return nil, err
	}
	n.logf("API server ready at %s (%.1fs)", n.apiServerURL(), time.Since(began).Seconds())
	images := append([]Image{pauseImageSpec()}, opts.Images...)
	n.images = images
	built := make(chan error, 1)
	go func() { built <- buildImages(ctx, filepath.Join(n.Dir, "images"), images) }()
	if err := n.runtime(ctx); err != nil {
		return nil, err
	}
	if err := <-built; err != nil {
		return nil, err
	}
	if err := n.importImages(ctx, images); err != nil {
		return nil, err
	}
	n.logf("containerd up, %d images imported (%.1fs)", len(images), time.Since(began).Seconds())
	if err := n.kubelet(ctx); err != nil {
		return nil, err
	}
	n.logf("node %s Ready (%.1fs)", n.Name, time.Since(began).Seconds())
	if err := n.services(ctx); err != nil {
		return nil, err
	}
	n.logf("kube-proxy and cluster DNS up (%.1fs)", time.Since(began).Seconds())
	return n, nil
}

// cleanupPrevious undoes what a killed run left on the host.
func cleanupPrevious(logf func(string, ...any)) error {
	rec, err := loadRecord()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	logf("a previous node was not stopped; undoing its changes")
	killRecorded(rec.Procs)
	killShims(rec.ContainerdSocket)
	if rec.KubepodsNew {
		_ = killCgroup("kubepods")
	}
	time.Sleep(500 * time.Millisecond)
	if err := rec.restore(logf); err != nil {
		return err
	}
	return os.Remove(recordPath())
}

// network creates the bridge with the node's address, the route that keeps
// Service IPs on it, and the rule that drops pods' traffic to anything off
// the bridge.
func (n *Node) network() error {
	if err := run("ip", "link", "add", bridgeName, "type", "bridge"); err != nil {
		return err
	}
	n.rec.BridgeNew = true
	if err := n.rec.save(); err != nil {
		return err
	}
	if err := run("ip", "addr", "add", nodeIP+"/24", "dev", bridgeName); err != nil {
		return err
	}
	if err := run("ip", "link", "set", bridgeName, "up"); err != nil {
		return err
	}
	// Un-translated packets to a Service IP (kube-proxy not synced yet) go
	// to the bridge, where nothing answers, instead of the default route.
	route := serviceSubnet + " dev " + bridgeName
	n.rec.Routes = append(n.rec.Routes, route)
	if err := n.rec.save(); err != nil {
		return err
	}
	if err := run("ip", append([]string{"route", "add"}, strings.Fields(route)...)...); err != nil {
		return err
	}
	if err := run("iptables", "-N", guardChain); err != nil {
		return err
	}
	if err := run("iptables", "-A", guardChain, "-j", "DROP"); err != nil {
		return err
	}
	return run("iptables", "-I", "FORWARD", "1", "-i", bridgeName, "!", "-o", bridgeName, "-j", guardChain)
}

// guardChain drops what pods send off the node's bridge. Teardown removes it
// with the KUBE-* chains.
const guardChain = "PODID-LOCALNODE-GUARD"

func (n *Node) certificates() error {
	p, err := newPKI(filepath.Join(n.Dir, "pki"))
	if err != nil {
		return err
	}
	n.pki = p
	specs := []certSpec{
		{name: "apiserver", cn: "kube-apiserver", server: true,
			ips: ips("127.0.0.1", nodeIP, kubernetesServiceIP),
			dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + clusterDomain}},
		{name: "admin", cn: "podid-localnode-admin", orgs: []string{"system:masters"}},
		{name: "kubelet-client", cn: "system:node:" + n.Name, orgs: []string{"system:nodes"}},
		{name: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}},
		{name: "kubelet-serving", cn: n.Name, server: true, ips: ips(nodeIP, "127.0.0.1"), dns: []string{n.Name, "localhost"}},
	}
	for _, s := range specs {
		if err := p.issue(s); err != nil {
			return err
		}
	}
	if err := p.serviceAccountKey(); err != nil {
		return err
	}
	for _, user := range []string{"admin", "kubelet-client"} {
		name := strings.TrimSuffix(user, "-client") + ".kubeconfig"
		if _, err := n.render(name, fmt.Sprintf(kubeconfigTemplate, user)); err != nil {
			return err
		}
	}
	n.Kubeconfig = filepath.Join(n.Dir, "admin.kubeconfig")
	if n.Config, err = clientcmd.BuildConfigFromFlags("", n.Kubeconfig); err != nil {
		return err
	}
	n.Config.QPS, n.Config.Burst = 50, 100
	n.Clientset, err = kubernetes.NewForConfig(n.Config)
	return err
}

// controlPlane starts etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler.
func (n *Node) controlPlane(ctx context.Context) error {
	etcdPort, err := freePort()
	if err != nil {
		return err
	}
	peerPort, err := freePort()
	if err != nil {
		return err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	if _, err := n.start("etcd", filepath.Join(n.bin, "etcd"), "--name=localnode", "--data-dir="+filepath.Join(n.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=localnode="+peerURL, "--unsafe-no-fsync", "--log-level=warn"); err != nil {
		return err
	}
	pki := filepath.Join(n.Dir, "pki")
	api, err := n.start("kube-apiserver", filepath.Join(n.bin, "kube-apiserver"),
		"--etcd-servers="+etcdURL,
		fmt.Sprintf("--secure-port=%d", apiServerPort), "--bind-address="+nodeIP, "--advertise-address="+nodeIP,
		"--tls-cert-file="+pki+"/apiserver.crt", "--tls-private-key-file="+pki+"/apiserver.key",
		"--client-ca-file="+pki+"/ca.crt",
		// The Node authorizer and NodeRestriction: the kubelet may mint
		// tokens only for pods bound to it, as on a real cluster.
		"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
		"--service-account-issuer=https://kubernetes.default.svc."+clusterDomain,
		"--service-account-key-file="+pki+"/sa.pub", "--service-account-signing-key-file="+pki+"/sa.key",
		"--service-cluster-ip-range="+serviceSubnet, "--allow-privileged=true",
		"--kubelet-client-certificate="+pki+"/apiserver-kubelet-client.crt", "--kubelet-client-key="+pki+"/apiserver-kubelet-client.key",
		"--kubelet-certificate-authority="+pki+"/ca.crt", "--kubelet-preferred-address-types=InternalIP",
		"--profiling=false", "--v=1")
	if err != nil {
		return err
	}
	if err := n.waitFor(ctx, "kube-apiserver /readyz", 90*time.Second, api, readyz(n.Clientset)); err != nil {
		return err
	}
	if _, err := n.start("kube-controller-manager", filepath.Join(n.bin, "kube-controller-manager"),
		"--kubeconfig="+n.Kubeconfig, "--service-account-private-key-file="+pki+"/sa.key",
		"--root-ca-file="+pki+"/ca.crt", "--cluster-signing-cert-file="+pki+"/ca.crt", "--cluster-signing-key-file="+pki+"/ca.key",
		"--use-service-account-credentials=false", "--leader-elect=false", "--secure-port=0",
		"--flex-volume-plugin-dir="+filepath.Join(n.Dir, "volume-plugins"), "--v=1"); err != nil {
		return err
	}
	_, err = n.start("kube-scheduler", filepath.Join(n.bin, "kube-scheduler"),
		"--kubeconfig="+n.Kubeconfig, "--leader-elect=false", "--secure-port=0", "--v=1")
	return err
}

// runtime starts containerd with its configuration and the CNI network.
func (n *Node) runtime(ctx context.Context) error {
	if _, err := n.render("cni/10-localnode.conflist", cniConfig); err != nil {
		return err
	}
	cfg, err := n.render("containerd.toml", containerdConfig)
	if err != nil {
		return err
	}
	n.rec.ContainerdSocket = n.containerdSocket()
	ctrd, err := n.start("containerd", filepath.Join(n.bin, "containerd"), "--config="+cfg, "--log-level=warn")
	if err != nil {
		return err
	}
	return n.waitFor(ctx, "containerd", 60*time.Second, ctrd, func(ctx context.Context) error {
		return exec.CommandContext(ctx, filepath.Join(n.bin, "ctr"), "--address", n.containerdSocket(), "version").Run()
	})
}

// kubelet starts the kubelet and waits for the Node to be Ready.
func (n *Node) kubelet(ctx context.Context) error {
	if err := os.WriteFile(filepath.Join(n.Dir, "resolv.conf"), []byte("# pods use cluster DNS; nothing is resolved off this machine\n"), 0o644); err != nil {
		return err
	}
	cfg, err := n.render("kubelet.yaml", kubeletConfig)
	if err != nil {
		return err
	}
	n.kubeletArgs = []string{"--config=" + cfg,
		"--kubeconfig=" + filepath.Join(n.Dir, "kubelet.kubeconfig"),
		"--hostname-override=" + n.Name, "--node-ip=" + nodeIP, "--root-dir=" + kubeletRoot, "--v=1"}
	return n.startKubelet(ctx, time.Time{})
}

// startKubelet starts the kubelet with its arguments and waits until it is
// healthy and the Node Ready, with a heartbeat after since.
func (n *Node) startKubelet(ctx context.Context, since time.Time) error {
	kubelet, err := n.start("kubelet", filepath.Join(n.bin, "kubelet"), n.kubeletArgs...)
	if err != nil {
		return err
	}
	return n.waitFor(ctx, "Node "+n.Name+" Ready", 120*time.Second, kubelet, func(ctx context.Context) error {
		if err := getOK(ctx, "http://127.0.0.1:10248/healthz"); err != nil {
			return fmt.Errorf("kubelet %w", err)
		}
		node, err := n.Clientset.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && !c.LastHeartbeatTime.Time.Before(since.Truncate(time.Second)) {
				return nil
			}
		}
		return errors.New("not Ready yet")
	})
}

// UseImageCredentialProviders restarts the kubelet with
// --image-credential-provider-config and --image-credential-provider-bin-dir,
// as an operator does once the plugin and its configuration are on the node
// (the kubelet reads them only when it starts). Running pods keep running.
func (n *Node) UseImageCredentialProviders(ctx context.Context, config, binDir string) error {
	n.kubeletArgs = append(slices.DeleteFunc(n.kubeletArgs, func(a string) bool {
		return strings.HasPrefix(a, "--image-credential-provider-")
	}), "--image-credential-provider-config="+config, "--image-credential-provider-bin-dir="+binDir)
	began := time.Now()
	n.stopNamed("kubelet", 15*time.Second)
	if err := n.startKubelet(ctx, began); err != nil {
		return err
	}
	n.logf("kubelet restarted with image credential providers from %s (%.1fs)", config, time.Since(began).Seconds())
	return nil
}

// Reregister stops the kubelet, deletes its Node and starts the kubelet
// again with extra flags (--register-with-taints, --node-labels), so that
// the node registers anew as a machine joining the cluster does. Pods bound
// to the node keep running (the Node is back before the pod garbage
// collector's grace); pods the caller deleted meanwhile are stopped by the
// kubelet when it starts. kube-proxy, which exits when its Node is deleted,
// is started again.
func (n *Node) Reregister(ctx context.Context, beforeStart func(context.Context) error, extra ...string) error {
	began := time.Now()
	n.stopNamed("kubelet", 15*time.Second)
	if err := n.Clientset.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Node %s: %w", n.Name, err)
	}
	if beforeStart != nil {
		if err := beforeStart(ctx); err != nil {
			return err
		}
	}
	n.kubeletArgs = append(n.kubeletArgs, extra...)
	if err := n.startKubelet(ctx, began); err != nil {
		return err
	}
	// kube-proxy exits when its Node is deleted ("Node is being deleted"),
	// for its DaemonSet or unit to start it again on the new Node; left
	// dead, the Services' rules would stay as they were, routing to pods
	// long gone. Start it again, as they would.
	if err := n.restart(ctx, "kube-proxy", func(ctx context.Context) error {
		return getOK(ctx, "http://"+nodeIP+":10256/healthz")
	}); err != nil {
		return err
	}
	n.logf("node %s registered again with %v (%.1fs)", n.Name, extra, time.Since(began).Seconds())
	return nil
}

// services starts kube-proxy and CoreDNS and waits until the `kubernetes`
// Service answers through its ClusterIP and DNS is ready.
func (n *Node) services(ctx context.Context) error {
	cfg, err := n.render("kube-proxy.yaml", kubeProxyConfig)
	if err != nil {
		return err
	}
	proxy, err := n.start("kube-proxy", filepath.Join(n.bin, "kube-proxy"), "--config="+cfg, "--v=1")
	if err != nil {
		return err
	}
	core, err := n.render("Corefile", corefile)
	if err != nil {
		return err
	}
	dns, err := n.start("coredns", filepath.Join(n.bin, "coredns"), "-conf="+core)
	if err != nil {
		return err
	}
	viaService := rest.CopyConfig(n.Config)
	viaService.Host = "https://" + kubernetesServiceIP
	cs, err := kubernetes.NewForConfig(viaService)
	if err != nil {
		return err
	}
	if err := n.waitFor(ctx, "the kubernetes Service through kube-proxy", 60*time.Second, proxy, readyz(cs)); err != nil {
		return err
	}
	return n.waitFor(ctx, "CoreDNS", 60*time.Second, dns, func(ctx context.Context) error {
		return getOK(ctx, "http://"+nodeIP+":8181/ready")
	})
}

// getOK GETs a component's health endpoint and wants 200.
func getOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// waitFor polls check until it succeeds, p exits (its log's tail is then
// the error) or timeout passes.
func (n *Node) waitFor(ctx context.Context, what string, timeout time.Duration, p *process, check func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if ok, err := p.exited(); ok {
			return false, fmt.Errorf("%s exited (%v); the end of %s:\n%s", p.name, err, n.logPath(p.name), tail(n.logPath(p.name), 15))
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		last = check(cctx)
		return last == nil, nil
	})
	if err != nil {
		if last != nil && wait.Interrupted(err) {
			return fmt.Errorf("waiting for %s: %w (last: %v; logs in %s)", what, err, last, filepath.Join(n.Dir, "logs"))
		}
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

// readyz asks the API server behind cs whether it is ready.
func readyz(cs kubernetes.Interface) func(context.Context) error {
	return func(ctx context.Context) error {
		return cs.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
	}
}

func (n *Node) logPath(name string) string { return filepath.Join(n.Dir, "logs", name+".log") }

func tail(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// DummyLinks reports whether this kernel can make dummy links, where podid
// agent's init container puts its addresses by default; without them the
// chart's agent.initLink must be lo.
func DummyLinks() bool {
	const probe = "podidprobe0"
	if exec.Command("ip", "link", "add", probe, "type", "dummy").Run() != nil {
		return false
	}
	_ = exec.Command("ip", "link", "del", probe).Run()
	return true
}

// PodIP returns the address of a running pod, waiting up to a minute for it.
func (n *Node) PodIP(ctx context.Context, namespace, name string) (string, error) {
	var ip string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pod, err := n.Clientset.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		ip = pod.Status.PodIP
		return ip != "" && pod.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		return "", fmt.Errorf("waiting for pod %s/%s to run: %w", namespace, name, err)
	}
	return ip, nil
}
