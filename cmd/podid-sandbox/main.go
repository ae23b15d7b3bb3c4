// Command podid-sandbox runs the whole of podid on one machine with no cloud
// account: a real API server, podid server, a node with its agent, the
// STS/IAM emulator as AWS, a sample association and a workload that gets
// credentials through the AWS SDK's default chain (`make sandbox`).
//
// It is its own binary, not a `podid` subcommand, because it links what a
// production binary must not: the emulator that mints credentials, envtest
// and the code that runs a node on this host (test/harness/sandbox).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/podid/podid/internal/logging"
	"github.com/podid/podid/test/harness/sandbox"
)

func main() {
	// Started by the sandbox as its simulated node's sample workload.
	sandbox.RunWorkloadIfAsked()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }()
	if err := newCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "podid-sandbox:", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	dir := ".sandbox"
	loopback := false
	node := string(sandbox.NodeAuto)
	root := &cobra.Command{
		Use:           "podid-sandbox",
		Short:         "Run the whole of podid on this machine with no cloud account: API server, podid server, a node with an agent, a sample workload",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the sandbox and keep it running until Ctrl-C or `podid-sandbox down`",
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
			logger, err := logging.New(cmd.ErrOrStderr(), logging.Options{Format: "text", Level: "warn"})
			if err != nil {
				return err
			}
			lr := logr.FromSlogHandler(logger.Handler())
			ctrl.SetLogger(lr)
			klog.SetLogger(lr)
			mode := sandbox.NodeMode(node)
			switch mode {
			case sandbox.NodeAuto, sandbox.NodeReal:
			case "simulated":
				mode = sandbox.NodeSimulated
			default:
				return fmt.Errorf("--node %q: use auto, real or simulated", node)
			}
			return sandbox.Up(cmd.Context(), sandbox.Options{Dir: dir, Identity: sandbox.DefaultIdentity, Out: cmd.OutOrStdout(), Loopback: loopback, Node: mode})
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
	root.PersistentFlags().StringVar(&dir, "dir", dir, "the sandbox's directory: kubeconfig, sandbox.env, pid file")
	up.Flags().StringVar(&node, "node", node, "auto (a real node when this machine allows it), real or simulated")
	up.Flags().BoolVar(&loopback, "loopback", false, "simulated node: put the agent on this host's loopback even as root (without root it always is)")
	root.AddCommand(up, down)
	return root
}
