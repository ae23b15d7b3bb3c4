package cli

import (
	"os"

	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/podid/podid/internal/kube"
	"github.com/podid/podid/internal/logging"
	"github.com/podid/podid/internal/server"
)

func newServerCommand() *cobra.Command {
	opts := server.Options{}
	logOpts := logging.Options{}
	conn := kube.NewConnectionFlags()
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run podid's control plane: the association controller (and, later, the credential exchange and webhook)",
		Long: `podid server watches PodIdentityAssociations on every replica and, on the
elected leader, keeps their status up to date. Run two or more replicas.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := logging.Setup(os.Stderr, logOpts); err != nil {
				return err
			}
			cfg, err := conn.RESTConfig()
			if err != nil {
				return err
			}
			s, err := server.New(cmd.Context(), cfg, opts)
			if err != nil {
				return err
			}
			ctrl.Log.Info("starting podid server", "cluster", opts.Identity.ClusterName, "region", opts.Identity.Region)
			return s.Start(cmd.Context())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&opts.Identity.ClusterName, "cluster-name", "", "the cluster's name in EKS API paths, association ARNs and session tags (required)")
	fs.StringVar(&opts.Identity.Region, "region", os.Getenv("AWS_REGION"), "the AWS region in association ARNs (default $AWS_REGION)")
	fs.StringVar(&opts.Identity.AccountID, "account-id", "", "the 12-digit AWS account ID in association ARNs (required)")
	fs.StringVar(&opts.Identity.Partition, "partition", "aws", "the AWS partition in ARNs: aws, aws-cn, aws-us-gov, …")
	fs.BoolVar(&opts.LeaderElection, "leader-elect", true, "elect one replica to run the controllers")
	fs.StringVar(&opts.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader election Lease (default: the namespace podid runs in)")
	fs.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":8080", `address of the Prometheus metrics endpoint; "0" turns it off`)
	fs.StringVar(&opts.ProbeAddr, "health-probe-bind-address", ":8081", `address of /healthz and /readyz; "0" turns them off`)
	fs.StringVar(&logOpts.Format, "log-format", "json", "log format: json or text")
	fs.StringVar(&logOpts.Level, "log-level", "info", "log level: debug, info, warn or error")
	conn.AddFlags(fs)
	return cmd
}
