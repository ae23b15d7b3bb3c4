// Command podid-credential-provider is podid's kubelet image credential
// provider plugin (package credprovider): the kubelet runs it for images
// its CredentialProviderConfig matches, with a token of the pod being
// started, and reads back registry credentials of that pod's own role. It
// is a binary of its own, without the Kubernetes client libraries, because
// the kubelet starts it for every pull it does not have cached.
//
//	podid-credential-provider [--agent-url URL] [--jfrog-host HOST]... [--timeout 30s]
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
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/spf13/pflag"

	"github.com/podid/podid/internal/credprovider"
	"github.com/podid/podid/internal/version"
)

func main() {
	if err := run(); err != nil {
		// The kubelet puts this line into the pod's events: keep it short.
		fmt.Fprintln(os.Stderr, "podid-credential-provider:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := credprovider.Config{}
	fs := pflag.NewFlagSet("podid-credential-provider", pflag.ContinueOnError)
	fs.StringVar(&cfg.AgentURL, "agent-url", credprovider.DefaultAgentURL, "the node's podid agent credentials endpoint")
	fs.StringSliceVar(&cfg.JFrogHosts, "jfrog-host", nil, "an Artifactory host (host[:port]) to answer with JFrog's passwordless token (repeatable)")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "how long one answer may take")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println(version.String("podid-credential-provider"))
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	base, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("loading the AWS configuration: %w", err)
	}
	base.Credentials = nil // the pod's role, from the agent, and nothing else
	cfg.AWS = base
	return credprovider.Run(ctx, cfg, os.Stdin, os.Stdout)
}
