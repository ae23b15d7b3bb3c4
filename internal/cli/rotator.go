package cli

import (
	"os"
	"time"

	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/podid/podid/internal/kube"
	"github.com/podid/podid/internal/logging"
	"github.com/podid/podid/internal/rotator"
)

func newRotatorCommand() *cobra.Command {
	opts := rotator.Options{}
	logOpts := logging.Options{}
	conn := kube.NewConnectionFlags()
	var qps float32
	var burst int
	cmd := &cobra.Command{
		Use:   "rotator",
		Short: "Run the SecretRotator controller: registry pull secrets from the pod's AWS identity",
		Long: `podid rotator keeps docker pull secrets (and generic token secrets) fresh in
the namespaces each SecretRotator selects. It turns its own AWS identity —
Pod Identity through podid, or IRSA, then an optional chain of roles — into
short-lived registry tokens: JFrog Artifactory's passwordless exchange (the
AWS secret key never leaves the pod) or ECR's GetAuthorizationToken. One
token per rotation serves every namespace; it is renewed before it expires,
and failures back off exponentially.

SecretRotator manifests written for JFrog's Registry Operator work after
changing apiVersion to podid.io/v1alpha1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := setupLogging(os.Stderr, logOpts); err != nil {
				return err
			}
			cfg, err := conn.RESTConfig()
			if err != nil {
				return err
			}
			cfg.QPS, cfg.Burst = qps, burst
			if opts.Namespace == "" {
				opts.Namespace, _, err = conn.Namespace()
				if err != nil {
					return err
				}
			}
			mgr, err := rotator.New(cmd.Context(), cfg, opts)
			if err != nil {
				return err
			}
			ctrl.Log.Info("starting podid rotator", "namespace", opts.Namespace)
			return mgr.Start(cmd.Context())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&opts.Namespace, "pod-namespace", os.Getenv("POD_NAMESPACE"), "podid's namespace: the leader election Lease, and where a cluster-scoped rotator's security.certificateSecretName is looked for by default (default $POD_NAMESPACE, else the kubeconfig's)")
	fs.BoolVar(&opts.LeaderElection, "leader-elect", true, "elect one replica to run the controller")
	fs.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":8080", `address of the Prometheus metrics endpoint; "0" turns it off`)
	fs.StringVar(&opts.ProbeAddr, "health-probe-bind-address", ":8081", `address of /healthz and /readyz; "0" turns them off`)
	fs.IntVar(&opts.Workers, "workers", 16, "concurrent secret writes per SecretRotator")
	fs.DurationVar(&opts.Timeout, "timeout", 30*time.Second, "timeout of each call to a registry, STS or IAM")
	fs.StringSliceVar(&opts.Reach.ArtifactoryHosts, "artifactory-host", nil, `Artifactory hosts artifactoryUrl may name: "host", "host:port" or "*.domain" (repeatable); default any for cluster-scoped SecretRotators, none for namespaced ones`)
	fs.BoolVar(&opts.Reach.ServiceAccountTokens, "service-account-tokens", false, "let spec.serviceAccount name a ServiceAccount whose IRSA token the rotator mints (needs RBAC create on serviceaccounts/token)")
	fs.Float32Var(&qps, "kube-api-qps", 300, "sustained requests per second to the Kubernetes API (a rotation writes two secrets per namespace)")
	fs.IntVar(&burst, "kube-api-burst", 600, "burst of requests to the Kubernetes API")
	fs.StringVar(&logOpts.Format, "log-format", "json", "log format: json or text")
	fs.StringVar(&logOpts.Level, "log-level", "info", "log level: debug, info, warn or error")
	conn.AddFlags(fs)
	return cmd
}
