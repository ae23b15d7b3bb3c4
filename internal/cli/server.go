package cli

import (
	"os"

	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/podid/podid/internal/auth"
	"github.com/podid/podid/internal/eksapi"
	"github.com/podid/podid/internal/identitycert"
	"github.com/podid/podid/internal/kube"
	"github.com/podid/podid/internal/logging"
	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/internal/sts"
)

func newServerCommand() *cobra.Command {
	opts := server.Options{}
	ra := &server.RolesAnywhereOptions{}
	opts.API.RolesAnywhere = ra
	logOpts := logging.Options{}
	conn := kube.NewConnectionFlags()
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run podid's control plane: the credential exchange API and the association controller",
		Long: `podid server watches PodIdentityAssociations and pods on every replica, serves
the EKS Auth-compatible credential exchange (POST
/clusters/{cluster}/assume-role-for-pod-identity) to podid agents and to
SigV4 callers with configured access keys, and, on the elected leader, keeps
association status up to date. Run two or more replicas.

Its own AWS identity is an IAM Roles Anywhere session when
--roles-anywhere-trust-anchor-arn is set (a short-lived certificate, from
podid's own CA or cert-manager, instead of any long-lived key; see
docs/on-premises.md), else the standard SDK credential chain (web identity,
instance profile, environment); every role an association names must trust
that identity with sts:AssumeRole and sts:TagSession.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := setupLogging(os.Stderr, logOpts); err != nil {
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
	fs.StringVar(&opts.API.Addr, "api-bind-address", ":8443", `address of the credential exchange API; "0" turns it off`)
	fs.StringVar(&opts.API.TLSCertFile, "tls-cert-file", "", "TLS certificate of the credential API (PEM; reloaded when it changes); default: podid's own, the webhook's")
	fs.StringVar(&opts.API.TLSKeyFile, "tls-key-file", "", "TLS private key of the credential API (PEM)")
	fs.BoolVar(&opts.API.InsecureHTTP, "insecure-http", false, "serve the credential API over plain HTTP (tests and the sandbox only)")
	fs.StringVar(&opts.API.Audience, "token-audience", podidentity.Audience, "audience of the pod tokens the API accepts")
	fs.StringVar(&opts.API.AgentAudience, "agent-token-audience", auth.DefaultAgentAudience, "audience of podid agents' own tokens")
	fs.StringSliceVar(&opts.API.AgentServiceAccounts, "agent-service-account", []string{"podid-system/podid-agent"}, "namespace/name of the ServiceAccount podid agents run as (repeatable)")
	fs.StringVar(&opts.API.TokenIssuer, "token-issuer", "", "OIDC issuer URL of the cluster's ServiceAccount tokens (default: discovered from the API server)")
	fs.StringVar(&opts.API.AccessKeysFile, "access-keys-file", "", "file of access keys SigV4 callers (the stock EKS Pod Identity Agent) may sign with")
	fs.StringVar(&opts.API.STSEndpoint, "sts-endpoint", "", "STS endpoint URL (default: the SDK's regional endpoint)")
	fs.StringVar(&opts.API.STSRegion, "sts-region", "", "region to call STS in (default --region)")
	fs.IntVar(&opts.API.AssociationLimit, "association-limit", eksapi.DefaultLimit, "most associations the EKS-compatible API lets exist in the cluster")
	fs.DurationVar(&opts.API.SessionDuration, "session-duration", sts.DefaultDuration, "lifetime of issued credentials (15m to 12h), as EKS: bounded by each role's MaxSessionDuration (read with iam:GetRole), and 59m at most with targetRoleArn")
	fs.StringVar(&ra.TrustAnchorARN, "roles-anywhere-trust-anchor-arn", "", "IAM Roles Anywhere trust anchor: podid server's own AWS identity is then a Roles Anywhere session (podid roles-anywhere setup makes the anchor, profile and role)")
	fs.StringVar(&ra.ProfileARN, "roles-anywhere-profile-arn", "", "IAM Roles Anywhere profile listing --roles-anywhere-role-arn")
	fs.StringVar(&ra.RoleARN, "roles-anywhere-role-arn", "", "the role podid server acts as through Roles Anywhere")
	fs.DurationVar(&ra.SessionDuration, "roles-anywhere-session-duration", 0, "lifetime of podid's own Roles Anywhere session (15m to 12h; default the profile's, one hour)")
	fs.StringVar(&ra.Secret, "roles-anywhere-certificate-secret", identitycert.SecretName, "kubernetes.io/tls Secret in podid's namespace holding the certificate (tls.crt with intermediates) and key (tls.key): podid's own with --roles-anywhere-own-ca, else cert-manager's")
	fs.BoolVar(&ra.OwnCA, "roles-anywhere-own-ca", false, "keep the certificate from podid's own CA (Secret "+identitycert.CASecretName+", its certificate in ConfigMap "+identitycert.CAConfigMap+")")
	fs.DurationVar(&ra.CertificateLifetime, "roles-anywhere-certificate-lifetime", identitycert.DefaultLifetime, "lifetime of certificates from podid's own CA, renewed with a third left")
	fs.StringVar(&ra.CertificateFile, "roles-anywhere-certificate-file", "", "PEM certificate (and intermediates) to read instead of the Secret, e.g. from a CSI driver")
	fs.StringVar(&ra.KeyFile, "roles-anywhere-key-file", "", "PEM private key of --roles-anywhere-certificate-file")
	fs.StringVar(&ra.Endpoint, "roles-anywhere-endpoint", "", "Roles Anywhere endpoint URL (default $AWS_ENDPOINT_URL_ROLESANYWHERE, else the region's public one)")
	fs.StringVar(&opts.Webhook.Addr, "webhook-bind-address", ":9443", `address of the mutating webhook's HTTPS server; "0" turns the webhook off`)
	fs.StringVar(&opts.Webhook.CertDir, "webhook-cert-dir", "", "directory with the webhook's tls.crt and tls.key issued by someone else, e.g. cert-manager (default: podid keeps its own CA and certificate in --webhook-secret)")
	fs.StringVar(&opts.Webhook.Secret.Name, "webhook-secret", server.DefaultWebhookSecret, "Secret holding the webhook's self-managed CA and certificate")
	fs.StringVar(&opts.Webhook.Secret.Namespace, "webhook-secret-namespace", "", "namespace of --webhook-secret (default: the namespace podid runs in)")
	fs.StringVar(&opts.Webhook.ConfigurationName, "webhook-configuration", "podid", `MutatingWebhookConfiguration whose caBundle podid keeps; "" leaves it alone`)
	fs.StringSliceVar(&opts.Webhook.Hosts, "webhook-host", nil, "DNS name or IP the API server calls the webhook by, for its certificate (repeatable), e.g. podid.podid-system.svc")
	fs.StringVar(&opts.Webhook.CAConfigMap, "ca-configmap", "podid-ca", `ConfigMap (beside --webhook-secret) podid keeps holding its CA bundle, for agents to trust the credential API when it is served with podid's own certificate; "" turns it off`)
	fs.StringVar(&opts.Webhook.Inject.CredentialsURI, "inject-credentials-uri", podidentity.CredentialsURI, "AWS_CONTAINER_CREDENTIALS_FULL_URI given to pods ("+podidentity.CredentialsURIv6+" on IPv6 clusters)")
	fs.StringVar(&opts.Webhook.Inject.Audience, "inject-token-audience", podidentity.Audience, "audience of the token projected into pods (keep it equal to --token-audience)")
	fs.Int64Var(&opts.Webhook.Inject.ExpirationSeconds, "inject-token-expiration", podidentity.TokenExpirationSeconds, "lifetime in seconds of the token projected into pods (the kubelet rotates it at 80%)")
	fs.StringVar(&opts.Webhook.Inject.Region, "inject-region", "", "inject AWS_REGION and AWS_DEFAULT_REGION with this region into containers that set neither")
	fs.BoolVar(&opts.Webhook.Inject.IRSA, "irsa", true, "inject IRSA (AWS_ROLE_ARN, web identity token) for ServiceAccounts with the eks.amazonaws.com/role-arn annotation and no association")
	fs.BoolVar(&opts.API.CheckRequesterBound, "check-requester-bound", false, "podid.io/requested-by on PodIdentityChecks is bound to their creator by an admission policy (the chart's, on Kubernetes 1.30+): believe it in the audit log; without it the requester is logged as unknown")
	fs.StringVar(&logOpts.Format, "log-format", "json", "log format: json or text")
	fs.StringVar(&logOpts.Level, "log-level", "info", "log level: debug, info, warn or error")
	conn.AddFlags(fs)
	return cmd
}
