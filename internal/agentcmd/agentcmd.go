// Package agentcmd is the `podid agent` command. It lives apart from the
// rest of the CLI so that the podid-agent binary, which runs on every node,
// links none of the Kubernetes client libraries the server and the CLI use:
// a test in cmd/podid-agent keeps it so.
package agentcmd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/spf13/cobra"

	"github.com/podid/podid/internal/agent"
	"github.com/podid/podid/internal/logging"
	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/internal/socketkeeper"
	"github.com/podid/podid/internal/token"
)

// agentFlags are `podid agent`'s settings.
type agentFlags struct {
	node, cluster, region    string
	upstream, upstreamCA     string
	upstreamAuth, agentToken string
	listen                   []string
	probeAddr, metricsAddr   string
	startupTaint, readyFile  string
	maxUpstream              int
	audience, kubeletPods    string
	kubeAPI, kubeToken       string
	kubeCA                   string
	profiling, keepSockets   bool
	socketStore              string
	log                      logging.Options
}

// NewCommand returns `podid agent` and its `init` subcommand.
func NewCommand() *cobra.Command {
	f := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent that serves pods credentials on 169.254.170.23",
		Long: `podid agent serves GET /v1/credentials on the link-local addresses the AWS
SDKs call (AWS_CONTAINER_CREDENTIALS_FULL_URI). It verifies each pod's token
locally, answers from a cache kept per pod, and otherwise exchanges the
token with podid server (or EKS Auth) once per pod. Run it as a DaemonSet
with hostNetwork after ` + "`podid agent init`" + ` has put the addresses on the node.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(os.Stderr, f.log)
			if err != nil {
				return err
			}
			if err := f.validate(); err != nil {
				return err
			}
			kept, restarts, err := socketkeeper.Inherited()
			switch {
			case err != nil:
				return err
			case kept == nil && f.keepSockets:
				return f.keep(cmd.Context(), log)
			}
			return f.run(cmd, log, f.sockets(kept), restarts)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.node, "node-name", os.Getenv("NODE_NAME"), "the node this agent serves (default $NODE_NAME, from the downward API)")
	fs.StringVar(&f.cluster, "cluster-name", "", "the cluster's name, as podid server knows it (required)")
	fs.StringVar(&f.region, "region", os.Getenv("AWS_REGION"), "the region SigV4 requests are signed for (default $AWS_REGION)")
	fs.StringVar(&f.upstream, "server-url", "", "the EKS Auth-compatible endpoint: podid server's API, e.g. https://podid.podid-system.svc:8443 (required)")
	fs.StringVar(&f.upstreamCA, "server-ca-file", "", "CA bundle that signs the server's certificate, re-read when it changes (podid's own is in ConfigMap podid-ca); default: the system roots")
	fs.StringVar(&f.upstreamAuth, "server-auth", "agent-token", "how to authenticate upstream: agent-token (podid server) or sigv4 (EKS Auth, standard AWS credential chain)")
	fs.StringVar(&f.agentToken, "agent-token-file", "/var/run/secrets/podid.io/agent/token", "the agent's own projected token (audience podid.io/agent), for --server-auth agent-token")
	fs.StringSliceVar(&f.listen, "listen", []string{net.JoinHostPort(podidentity.AgentIPv4, "80"), net.JoinHostPort(podidentity.AgentIPv6, "80")}, "addresses of the credential endpoint (repeatable); an IPv6 address the node cannot bind is skipped")
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", ":2703", `address of /healthz and /readyz; "" turns them off`)
	fs.IntVar(&f.maxUpstream, "max-upstream-requests", 16, "credential exchanges in flight to podid server at once; a burst of new pods queues beyond it")
	fs.StringVar(&f.readyFile, "ready-file", "", "a file written once the agent serves and removed when it stops, for an exec readiness probe (`podid-agent ready --file`): during a surge rollout two agents answer the node's probe port")
	fs.StringVar(&f.startupTaint, "startup-taint", "", `a taint key (e.g. `+agent.StartupTaintKey+`) to remove from the node once the agent serves, for nodes registered with it so that no pod is scheduled before; needs get and patch on nodes`)
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", "127.0.0.1:2705", `address of /metrics; "" turns it off`)
	fs.BoolVar(&f.profiling, "profiling", false, "serve Go's /debug/pprof/ on the metrics address")
	fs.BoolVar(&f.keepSockets, "keep-sockets", true, "bind the agent's addresses in a small parent process that restarts the serving process at once if it dies (a panic, the OOM killer), so that pods' connections wait instead of being refused; false serves in this process")
	fs.StringVar(&f.socketStore, "socket-store", "", "with --keep-sockets, the unix socket of a `podid-agent socket-store` in another container of this pod, which holds copies of the agent's sockets so that they outlive a restart of this container (SIGKILL, a failed liveness probe)")
	fs.StringVar(&f.kubeletPods, "kubelet-pods-dir", "/var/lib/kubelet/pods", `the kubelet's pods directory, mounted read-only: the agent reads pods' rotated tokens there for background refreshes instead of keeping copies; "" keeps copies`)
	fs.StringVar(&f.audience, "token-audience", podidentity.Audience, "audience of the pod tokens")
	fs.StringVar(&f.log.Format, "log-format", "json", "log format: json or text")
	fs.StringVar(&f.log.Level, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.kubeAPI, "kube-api-server", "", "the API server's URL (default: in-cluster, https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)")
	fs.StringVar(&f.kubeToken, "kube-token-file", "", "the agent's ServiceAccount token for the API server (default: the in-cluster token)")
	fs.StringVar(&f.kubeCA, "kube-ca-file", "", "CA bundle of the API server (default: the in-cluster ca.crt)")
	cmd.AddCommand(newAgentInitCommand(), newAgentReadyCommand(), newSocketStoreCommand())
	return cmd
}

func (f *agentFlags) validate() error {
	switch {
	case f.node == "":
		return errors.New("--node-name is required (set NODE_NAME from spec.nodeName with the downward API)")
	case f.cluster == "":
		return errors.New("--cluster-name is required")
	case f.upstream == "":
		return errors.New("--server-url is required: podid server's API address")
	}
	return nil
}

// keep reserves the agent's addresses and runs the agent as a child process
// serving them, restarted at once should it die (see socketkeeper).
//
// With a socket store, the sockets a previous keeper of this pod left there
// (this container restarted) are taken instead of reserved anew: they are
// the same addresses, still open, with the connections that waited; and the
// sockets are given to the store, to outlive this container.
func (f *agentFlags) keep(ctx context.Context, log *slog.Logger) error {
	lease, kept := f.claimStore(ctx, log)
	if kept == nil {
		reserved, err := agent.Reserve(ctx, agent.Options{Listen: f.listen, ProbeAddr: f.probeAddr, MetricsAddr: f.metricsAddr, Log: log})
		if reserved == nil {
			if lease != nil {
				lease.Close()
			}
			return err // nil if stopped while waiting for an address
		}
		for _, sock := range reserved.Credentials {
			kept = append(kept, socketkeeper.Socket{Name: "credentials " + sock.Name(), File: sock})
		}
		if reserved.Probes != nil {
			kept = append(kept, socketkeeper.Socket{Name: "probes", File: reserved.Probes})
		}
		if reserved.Metrics != nil {
			kept = append(kept, socketkeeper.Socket{Name: "metrics", File: reserved.Metrics})
		}
	}
	if lease != nil {
		go lease.Keep(ctx, kept, log)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this program to run the agent: %w", err)
	}
	return socketkeeper.Run(ctx, socketkeeper.Options{
		Command: func() *exec.Cmd { return exec.Command(self, os.Args[1:]...) },
		Sockets: kept,
		Log:     log,
	})
}

// claimStore reaches the socket store, waiting a little for its container
// to start, and returns the lease and the sockets it held (nil when this is
// the pod's first agent); a nil lease without a store.
func (f *agentFlags) claimStore(ctx context.Context, log *slog.Logger) (*socketkeeper.Lease, []socketkeeper.Socket) {
	if f.socketStore == "" {
		return nil, nil
	}
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		lease, held, claimErr := socketkeeper.Claim(f.socketStore)
		if claimErr == nil {
			if len(held) > 0 {
				log.Info("took the sockets a previous agent of this pod left in the socket store; the connections that waited are served", "sockets", len(held))
				return lease, held
			}
			return lease, nil
		}
		err = claimErr
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Warn("no socket store: a restart of this container will refuse connections until it serves again", "store", f.socketStore, "error", err.Error())
	return nil, nil
}

// sockets are the ones a keeper passed, as the agent serves them; nil
// without a keeper.
func (f *agentFlags) sockets(kept map[string]net.Listener) *agent.Sockets {
	if kept == nil {
		return nil
	}
	s := &agent.Sockets{Probes: kept["probes"], Metrics: kept["metrics"]}
	for name, l := range kept {
		if strings.HasPrefix(name, "credentials ") {
			s.Credentials = append(s.Credentials, l)
		}
	}
	slices.SortFunc(s.Credentials, func(a, b net.Listener) int { return strings.Compare(a.Addr().String(), b.Addr().String()) })
	return s
}

func (f *agentFlags) run(cmd *cobra.Command, log *slog.Logger, sockets *agent.Sockets, restarts int) error {
	api, err := agent.InCluster(f.kubeAPI, f.kubeToken, f.kubeCA)
	if err != nil {
		return err
	}
	verifier, err := token.ForAPIServer(cmd.Context(), api.Client, api.Host, nil)
	if err != nil {
		return err
	}
	var tlsConfig *tls.Config
	if f.upstreamCA != "" {
		ca, err := agent.NewServerCA(f.upstreamCA)
		if err != nil {
			return fmt.Errorf("--server-ca-file: %w", err)
		}
		tlsConfig = ca.TLSConfig()
	}
	httpClient := &http.Client{Transport: agent.UpstreamTransport(tlsConfig)}
	upOpts := agent.EKSAuthOptions{Endpoint: f.upstream, ClusterName: f.cluster, Region: f.region, HTTPClient: httpClient}
	switch f.upstreamAuth {
	case "agent-token":
		upOpts.AgentTokenFile = f.agentToken
	case "sigv4":
		awsCfg, err := awsconfig.LoadDefaultConfig(cmd.Context(), awsconfig.WithRegion(f.region))
		if err != nil {
			return fmt.Errorf("loading AWS configuration for SigV4: %w", err)
		}
		upOpts.Credentials = awsCfg.Credentials
	default:
		return fmt.Errorf("--server-auth %q: use agent-token or sigv4", f.upstreamAuth)
	}
	cacheOpts := agent.CacheOptions{Log: log, MaxUpstream: f.maxUpstream}
	if f.kubeletPods != "" {
		// Renewals read tokens from disk: each must be the pod's own.
		cacheOpts.TokenOwner = func(ctx context.Context, tok string) (string, error) {
			claims, err := verifier.Verify(ctx, tok, f.audience)
			if err != nil {
				return "", err
			}
			if claims.Pod == nil {
				return "", errors.New("the token is not bound to a pod")
			}
			return claims.Pod.UID, nil
		}
		var warned sync.Once
		cacheOpts.Tokens = agent.KubeletTokens{Dir: f.kubeletPods, Unreadable: func(path string, err error) {
			warned.Do(func() {
				log.Warn("cannot read pods' tokens in the kubelet's pods directory, so background renewals fall back to each pod's last token, which may have expired by then; run the agent with CAP_DAC_READ_SEARCH (the chart does)",
					"path", path, "err", err)
			})
		}}
	}
	a := agent.New(agent.Options{
		Node:        f.node,
		Listen:      f.listen,
		ProbeAddr:   f.probeAddr,
		MetricsAddr: f.metricsAddr,
		Profiling:   f.profiling,
		Cache:       agent.NewCache(agent.NewEKSAuth(upOpts), cacheOpts),
		Handler:     agent.HandlerOptions{Tokens: verifier, Audience: f.audience},
		APIServer:   api,
		Log:         log,
		// Removed once ready; the watch above needs the API server anyway.
		StartupTaint: f.startupTaint,
		ReadyFile:    f.readyFile,
		Sockets:      sockets,
		Restarts:     restarts,
	})
	log.Info("starting podid agent", "node", f.node, "cluster", f.cluster, "server", f.upstream)
	return a.Run(cmd.Context())
}

func newAgentInitCommand() *cobra.Command {
	var link string
	var addrs []string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Put the agent's addresses on the node (privileged, once per node boot)",
		Long: `podid agent init puts 169.254.170.23/32 and fd00:ec2::23/128 on a dummy
link (created if missing), idempotently. A node without IPv6 gets the IPv4
address only. Where the dummy kernel module is missing, use --link lo.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(os.Stderr, logging.Options{Format: "text", Level: "info"})
			if err != nil {
				return err
			}
			var ips []net.IP
			for _, a := range addrs {
				ip := net.ParseIP(a)
				if ip == nil {
					return fmt.Errorf("--address %q is not an IP address", a)
				}
				ips = append(ips, ip)
			}
			placed, err := agent.SetupAddresses(agent.AddressOptions{Link: link, IPs: ips, Log: log})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "addresses on %s: %v\n", link, placed)
			return nil
		},
	}
	cmd.Flags().StringVar(&link, "link", "podid0", "the link to hold the addresses; created as a dummy link unless it exists")
	cmd.Flags().StringSliceVar(&addrs, "address", []string{podidentity.AgentIPv4, podidentity.AgentIPv6}, "addresses to put on the link (repeatable)")
	return cmd
}

// newAgentReadyCommand is the kubelet's readiness probe of one agent pod:
// the ready file in the pod's own volume, which only that pod's agent
// writes (its HTTP /readyz port is the node's, shared with the agent it
// replaces during a rollout).
func newSocketStoreCommand() *cobra.Command {
	store := &socketkeeper.Store{}
	cmd := &cobra.Command{
		Use:   "socket-store",
		Short: "Hold copies of the agent's sockets, in a second container of its pod, so that they outlive a restart of the agent's container",
		Long: `podid-agent socket-store runs beside the agent (podid-agent --socket-store):
the agent gives it copies of the node's addresses it serves, and takes them
back when its container restarts (SIGKILL, a failed liveness probe). In
between, the addresses stay open and pods' connections wait instead of being
refused. Sockets nobody claims within --hold are given up; all are, at once,
when the store stops.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(os.Stderr, logging.Options{Format: "json", Level: "info"})
			if err != nil {
				return err
			}
			store.Log = log
			return store.Serve(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&store.Path, "path", "/run/podid-agent/sockets", "the store's unix socket, in a directory the agent's container mounts too")
	cmd.Flags().DurationVar(&store.Hold, "hold", 15*time.Second, "how long the sockets of an agent gone are held for the next one")
	return cmd
}

func newAgentReadyCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "ready",
		Short: "Exit 0 if this pod's agent serves (its --ready-file exists)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := os.Stat(file); err != nil {
				return fmt.Errorf("not ready: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "/run/podid-agent/ready", "the agent's --ready-file")
	return cmd
}
