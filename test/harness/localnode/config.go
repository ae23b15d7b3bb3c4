package localnode

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/podid/podid/internal/podidentity"
)

// The node's network: a bridge this package creates carries the node's
// address, the pods' subnet and the routes to Service IPs, so that every
// packet of the cluster stays on this machine.
const (
	bridgeName    = "podidnode0"
	nodeIP        = "10.88.0.1"
	podSubnet     = "10.88.0.0/24"
	serviceSubnet = "10.96.0.0/24"
	// kubernetesServiceIP is the first address of serviceSubnet, which the
	// API server gives the `kubernetes` Service.
	kubernetesServiceIP = "10.96.0.1"
	apiServerPort       = 6443
	kubeletPort         = 10250
	clusterDomain       = "cluster.local"
	kubeletRoot         = "/var/lib/kubelet"
	// pauseImage is the sandbox image containerd runs for every pod, built
	// here (nothing is ever pulled).
	pauseImage = "localnode.podid.io/pause:1"
	// agentIPv4 and agentIPv6 are the addresses podid agent's init container
	// puts on the host; the node records whether they were there before.
	agentIPv4 = podidentity.AgentIPv4
	agentIPv6 = podidentity.AgentIPv6
	// agentLink is the dummy link the chart's init container makes by default.
	agentLink = "podid0"
)

// NodeIP is the node's address on its bridge (Node.IP), known before the
// node starts, e.g. to configure a registry host it will serve.
const NodeIP = nodeIP

// render writes a file from a template over the node's settings.
func (n *Node) render(name, tmpl string) (string, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, n.vars()); err != nil {
		return "", fmt.Errorf("rendering %s: %w", name, err)
	}
	path := filepath.Join(n.Dir, name)
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}

func (n *Node) vars() map[string]any {
	return map[string]any{
		"Dir": n.Dir, "Run": runDir, "PKI": filepath.Join(n.Dir, "pki"), "Bin": n.bin,
		"NodeName": n.Name, "NodeIP": nodeIP, "PodSubnet": podSubnet, "ServiceSubnet": serviceSubnet,
		"Bridge": bridgeName, "APIServer": n.apiServerURL(), "KubeletPort": kubeletPort,
		"KubeletRoot": kubeletRoot, "ClusterDomain": clusterDomain, "PauseImage": pauseImage,
		"CNIBin": n.cniBin, "ContainerdSocket": n.containerdSocket(),
	}
}

func (n *Node) apiServerURL() string { return fmt.Sprintf("https://%s:%d", nodeIP, apiServerPort) }

func (n *Node) containerdSocket() string {
	return filepath.Join(runDir, "containerd", "containerd.sock")
}

const kubeconfigTemplate = `apiVersion: v1
kind: Config
clusters:
- name: localnode
  cluster:
    server: {{.APIServer}}
    certificate-authority: {{.PKI}}/ca.crt
users:
- name: %[1]s
  user:
    client-certificate: {{.PKI}}/%[1]s.crt
    client-key: {{.PKI}}/%[1]s.key
contexts:
- name: localnode
  context: {cluster: localnode, user: %[1]s}
current-context: localnode
`

// containerdConfig is containerd v2's configuration, every path kept off the
// host's defaults. restrict_oom_score_adj: this machine's root lacks
// CAP_SYS_RESOURCE, so runc cannot lower a process's oom_score_adj below
// containerd's own and every sandbox's -998 would fail; containerd clamps
// it instead.
const containerdConfig = `version = 3
root = "{{.Dir}}/containerd"
state = "{{.Run}}/containerd"
[grpc]
  address = "{{.ContainerdSocket}}"
[ttrpc]
  address = "{{.ContainerdSocket}}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{{.Dir}}/containerd-opt"
[plugins."io.containerd.nri.v1.nri"]
  disable = true
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{{.PauseImage}}"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "{{.Dir}}/certs.d"
[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{{.Run}}/runc"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{{.CNIBin}}"]
    conf_dir = "{{.Dir}}/cni"
`

// cniConfig gives pods addresses on the node's bridge, with the node as
// their gateway. No masquerade: pods only talk to the node and each other.
const cniConfig = `{
  "cniVersion": "1.0.0",
  "name": "localnode",
  "plugins": [{
    "type": "bridge", "bridge": "{{.Bridge}}", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "{{.PodSubnet}}", "gateway": "{{.NodeIP}}"}]],
             "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "{{.Run}}/cni"}
  }]
}
`

// kubeletConfig: cgroup v1 is allowed (failCgroupV1), the kubelet's own
// oom_score_adj is left alone (no CAP_SYS_RESOURCE), images are never
// garbage-collected (none can be pulled again), evictions never trigger on
// a shared disk, and the kubelet serves only on the node's address.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://{{.ContainerdSocket}}
address: {{.NodeIP}}
port: {{.KubeletPort}}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: {{.PKI}}/kubelet-serving.crt
tlsPrivateKeyFile: {{.PKI}}/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: {{.PKI}}/ca.crt}
authorization:
  mode: Webhook
clusterDNS: [{{.NodeIP}}]
clusterDomain: {{.ClusterDomain}}
resolvConf: {{.Dir}}/resolv.conf
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
protectKernelDefaults: false
oomScoreAdj: 0
volumePluginDir: {{.Dir}}/volume-plugins
serializeImagePulls: false
registerNode: true
maxPods: 110
`

// kubeProxyConfig: iptables mode; no conntrack sysctls touched; NodePorts
// only on the node's bridge address and never on localhost (which would set
// route_localnet).
const kubeProxyConfig = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {{.Dir}}/admin.kubeconfig
mode: iptables
hostnameOverride: {{.NodeName}}
bindAddress: {{.NodeIP}}
healthzBindAddress: {{.NodeIP}}:10256
metricsBindAddress: {{.NodeIP}}:10249
clusterCIDR: {{.PodSubnet}}
nodePortAddresses: [{{.NodeIP}}/32]
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`

// corefile serves the cluster's names on the node's address and forwards
// nothing: a query for any other name is refused, never sent off the
// machine.
const corefile = `{{.ClusterDomain}}:53 in-addr.arpa:53 ip6.arpa:53 {
    bind {{.NodeIP}}
    errors
    ready {{.NodeIP}}:8181
    kubernetes {{.ClusterDomain}} in-addr.arpa ip6.arpa {
        kubeconfig {{.Dir}}/admin.kubeconfig localnode
        pods insecure
    }
    cache 5
}
`
