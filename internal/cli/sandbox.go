package cli

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/podid/podid/internal/logging"
	"github.com/podid/podid/internal/sandbox"
)

func newSandboxCommand(streams Streams) *cobra.Command {
	dir := ".sandbox"
	loopback := false
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Run the whole of podid on this machine with no cloud account: API server, podid server, a node with an agent, a sample workload",
	}
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the sandbox and keep it running until Ctrl-C or `podid sandbox down`",
		Long: `Starts etcd and kube-apiserver (built into bin/ by 'make tools'), the STS/IAM
emulator, podid server with its webhook, one node with podid agent (a network
namespace as root, else this host's loopback), a sample association and a
sample workload that obtains credentials through the AWS SDK's default chain
and uses them. Writes a kubeconfig and sandbox.env into --dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The narration is the sandbox's output; logs only when something is wrong.
			if _, err := setupLogging(streams.Err, logging.Options{Format: "text", Level: "warn"}); err != nil {
				return err
			}
			return sandbox.Up(cmd.Context(), sandbox.Options{Dir: dir, Identity: sandbox.DefaultIdentity, Out: streams.Out, Loopback: loopback})
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
	up.Flags().BoolVar(&loopback, "loopback", false, "put the node's agent on this host's loopback even as root (without root it always is)")
	cmd.AddCommand(up, down, workload)
	return cmd
}
