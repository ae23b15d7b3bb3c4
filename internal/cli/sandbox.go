package cli

import (
	"github.com/spf13/cobra"

	"github.com/podid/podid/internal/logging"
	"github.com/podid/podid/internal/sandbox"
)

func newSandboxCommand(streams Streams) *cobra.Command {
	dir := ".sandbox"
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Run podid on this machine with no cloud account: a real API server, podid server and a sample association",
	}
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the sandbox and keep it running until Ctrl-C or `podid sandbox down`",
		Long: `Starts etcd and kube-apiserver (built into bin/ by 'make tools'), podid server,
and a sample association, then writes a kubeconfig and sandbox.env into --dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The narration is the sandbox's output; logs only when something is wrong.
			if _, err := setupLogging(streams.Err, logging.Options{Format: "text", Level: "warn"}); err != nil {
				return err
			}
			return sandbox.Up(cmd.Context(), sandbox.Options{Dir: dir, Identity: sandbox.DefaultIdentity, Out: streams.Out})
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
	cmd.PersistentFlags().StringVar(&dir, "dir", dir, "the sandbox's directory: kubeconfig, sandbox.env, pid file")
	cmd.AddCommand(up, down)
	return cmd
}
