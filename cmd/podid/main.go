// Command podid is Pod Identity for any Kubernetes cluster: the control plane
// (podid server), the node agent, the sandbox and the operator's CLI, in one
// binary. See the README.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/podid/podid/internal/cli"
)

func main() {
	// The first signal cancels the context so servers drain; a second one
	// kills the process the usual way.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }()

	cmd := cli.NewRootCommand(cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "podid:", err)
		os.Exit(1)
	}
}
