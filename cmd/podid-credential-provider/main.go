// Command podid-credential-provider is podid's kubelet image credential
// provider plugin (package credprovider): the kubelet runs it for images
// its CredentialProviderConfig matches, with a token of the pod being
// started, and reads back registry credentials of that pod's own role. It
// is a binary of its own, without the Kubernetes client libraries, because
// the kubelet starts it for every pull it does not have cached.
//
//	podid-credential-provider [--agent-url URL] [--jfrog-host HOST]... [--timeout 30s]
//	podid-credential-provider install --bin-dir DIR --config FILE --config-dir DIR
//
// install is the chart's init container on every node: it copies the
// plugin and its CredentialProviderConfig where the kubelet's
// --image-credential-provider-bin-dir and --image-credential-provider-config
// point, after checking the configuration as the kubelet will.
//
// The AWS region and endpoint overrides come from the environment
// (AWS_ENDPOINT_URL_ECR, …) as for any SDK program; credentials never do.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/podid/podid/internal/credprovider"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := credprovider.Main(ctx, os.Args[1:], os.Stdin, os.Stdout)
	stop()
	if err != nil {
		// The kubelet logs this line with the pull's failure: keep it short.
		fmt.Fprintln(os.Stderr, "podid-credential-provider:", err)
		os.Exit(1)
	}
}
