// Command podid-agent is `podid agent` on its own: the node agent, built
// without the Kubernetes client libraries that the podid binary links for
// the server and the CLI, so that the process on every node stays small.
// The DaemonSet runs it; its flags are podid agent's.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/podid/podid/internal/agentcmd"
	"github.com/podid/podid/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }()

	cmd := agentcmd.NewCommand()
	cmd.Use = "podid-agent"
	cmd.Version = version.String("podid-agent")
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "podid-agent:", err)
		os.Exit(1)
	}
}
