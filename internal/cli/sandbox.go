package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/podid/podid/internal/logging"
	"github.com/podid/podid/internal/sandbox"
)

func newSandboxCommand(streams Streams) *cobra.Command {
	dir := ".sandbox"
	loopback := false
	node := string(sandbox.NodeAuto)
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Run the whole of podid on this machine with no cloud account: API server, podid server, a node with an agent, a sample workload",
	}
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the sandbox and keep it running until Ctrl-C or `podid sandbox down`",
		Long: `Starts a cluster, the STS/IAM emulator, podid, a sample association and a
sample workload that obtains credentials through the AWS SDK's default chain
and uses them. Writes a kubeconfig and sandbox.env into --dir.

On a real node (--node real; the default when this machine allows it: Linux,
root, the binaries 'make tools' builds, Debian's runc, CNI plugins and
iptables) the cluster is etcd, kube-apiserver, the controllers, containerd, a
kubelet, kube-proxy and CoreDNS; podid is installed by its Helm chart from
images built here; the workload runs as a Deployment. The host is restored
when the sandbox stops.

On a simulated node (--node simulated) podid server and agent run in this
process, one node is a network namespace as root (else this host's
loopback), and the sandbox plays the kubelet.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The narration is the sandbox's output; logs only when something is wrong.
			if _, err := setupLogging(streams.Err, logging.Options{Format: "text", Level: "warn"}); err != nil {
				return err
			}
			mode := sandbox.NodeMode(node)
			switch mode {
			case sandbox.NodeAuto, sandbox.NodeReal:
			case "simulated":
				mode = sandbox.NodeSimulated
			default:
				return fmt.Errorf("--node %q: use auto, real or simulated", node)
			}
			return sandbox.Up(cmd.Context(), sandbox.Options{Dir: dir, Identity: sandbox.DefaultIdentity, Out: streams.Out, Loopback: loopback, Node: mode})
		},
	}
	down := &cobra.Command{
		Use:   "down",
		Short: "Stop the sandbox running in --dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return sandbox.Down(cmd.Context(), dir)
		},
	}
	workload := &cobra.Command{
		Use:    "workload",
		Short:  "The sandbox's sample workload: the AWS SDK's default credential chain, then sts:GetCallerIdentity",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return sandbox.RunWorkload(cmd.Context(), os.Stdout)
		},
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", dir, "the sandbox's directory: kubeconfig, sandbox.env, pid file")
	up.Flags().StringVar(&node, "node", node, "auto (a real node when this machine allows it), real or simulated")
	up.Flags().BoolVar(&loopback, "loopback", false, "simulated node: put the agent on this host's loopback even as root (without root it always is)")
	cmd.AddCommand(up, down, workload)
	return cmd
}
