package credprovider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/spf13/pflag"

	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/internal/version"
)

// Main runs podid-credential-provider's command line: the plugin (args are
// the CredentialProviderConfig's), or `install` (the chart's init
// container).
func Main(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "install" {
		in, err := parseInstall(args[1:])
		if err != nil {
			return err
		}
		return install(in, stdout)
	}
	cfg, showVersion, err := parsePlugin(args)
	if err != nil {
		return err
	}
	if showVersion {
		fmt.Fprintln(stdout, version.String(PluginName))
		return nil
	}
	base, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("loading the AWS configuration: %w", err)
	}
	base.Credentials = nil // the pod's role, from the agent, and nothing else
	cfg.AWS = base
	return Run(ctx, cfg, stdin, stdout)
}

// Parse checks a command line without running it (the chart's tests parse
// what the chart renders).
func Parse(args []string) error {
	if len(args) > 0 && args[0] == "install" {
		_, err := parseInstall(args[1:])
		return err
	}
	_, _, err := parsePlugin(args)
	return err
}

func parsePlugin(args []string) (Config, bool, error) {
	cfg := Config{}
	fs := pflag.NewFlagSet(PluginName, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.AgentURL, "agent-url", podidentity.CredentialsURI, "the node's podid agent credentials endpoint")
	fs.StringSliceVar(&cfg.JFrogHosts, "jfrog-host", nil, "an Artifactory host (host[:port]) to answer with JFrog's passwordless token (repeatable)")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "how long one answer may take (the kubelet gives a plugin a minute)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return cfg, false, err
	}
	if fs.NArg() > 0 {
		return cfg, false, fmt.Errorf("unexpected arguments %q (the request comes on stdin)", fs.Args())
	}
	return cfg, *showVersion, nil
}

func parseInstall(args []string) (Install, error) {
	in := Install{}
	fs := pflag.NewFlagSet(PluginName+" install", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&in.BinDir, "bin-dir", "", "the kubelet's --image-credential-provider-bin-dir, as mounted here")
	fs.StringVar(&in.Config, "config", "", "the CredentialProviderConfig to install")
	fs.StringVar(&in.ConfigDir, "config-dir", "", "the directory the kubelet's --image-credential-provider-config names, as mounted here")
	if err := fs.Parse(args); err != nil {
		return in, err
	}
	if in.BinDir == "" || in.Config == "" || in.ConfigDir == "" || fs.NArg() > 0 {
		return in, errors.New("usage: install --bin-dir DIR --config FILE --config-dir DIR")
	}
	return in, nil
}

func install(in Install, out io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	in.Binary = self
	res, err := in.Run()
	if err != nil {
		return err
	}
	for _, f := range []struct {
		path    string
		changed bool
	}{{res.BinaryPath, res.BinaryChanged}, {res.ConfigPath, res.ConfigChanged}} {
		if f.changed {
			fmt.Fprintln(out, "installed", f.path)
		} else {
			fmt.Fprintln(out, "unchanged", f.path)
		}
	}
	if res.ConfigChanged {
		fmt.Fprintln(out, "the kubelet reads its credential providers when it starts: restart it, with --image-credential-provider-config and --image-credential-provider-bin-dir, for this to take effect")
	}
	return nil
}
