package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/iam"
	ra "github.com/aws/aws-sdk-go-v2/service/rolesanywhere"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/identitycert"
	"github.com/podid/podid/internal/kube"
	"github.com/podid/podid/internal/rolesanywhere"
	"github.com/podid/podid/internal/serveridentity"
)

type rolesAnywhereFlags struct {
	streams                                             Streams
	conn                                                *kube.ConnectionFlags
	cluster, roleName, caBundle, podidNamespace, region string
	sessionDuration                                     time.Duration
	approve                                             bool
}

func newRolesAnywhereCommand(streams Streams) *cobra.Command {
	f := &rolesAnywhereFlags{streams: streams, conn: kube.NewConnectionFlags()}
	cmd := &cobra.Command{
		Use:   "roles-anywhere",
		Short: "podid server's own AWS identity through IAM Roles Anywhere, with no long-lived key",
	}
	setup := &cobra.Command{
		Use:   "setup",
		Short: "Create or check the trust anchor, the profile and the role podid server acts as",
		Long: `Makes, with your own AWS credentials, what podid server needs to act as a role
through IAM Roles Anywhere instead of with an access key:

  - a trust anchor podid-<cluster> holding the CA that issues podid's certificate:
    podid's own (ConfigMap podid-identity-ca, written by podid server installed
    with server.awsIdentity.source=rolesAnywhere) or, with --ca-bundle, your
    cert-manager issuer's;
  - the role (--role-name, made when missing), whose trust admits Roles Anywhere
    only for a certificate of CN podid-server.<cluster> vouched for by that
    trust anchor, so that another cluster's certificate, even from the same CA,
    cannot act as this cluster's podid;
  - a profile podid-<cluster> listing the role.

Existing ones are checked and only what differs is changed; other statements of
the role's trust are kept. Without --approve it prints the plan and changes
nothing. It ends with the chart values to set.`,
		Example: `  podid roles-anywhere setup --cluster-name lab --role-name podid-server-lab
  podid roles-anywhere setup --cluster-name lab --role-name podid-server-lab --approve`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return f.setup(cmd.Context()) },
	}
	fs := setup.Flags()
	fs.StringVar(&f.cluster, "cluster-name", "", "the cluster's name, as podid's chart clusterName (default: the one podid server published)")
	fs.StringVar(&f.roleName, "role-name", "", "the IAM role podid server acts as (default podid-server-<cluster>)")
	fs.StringVar(&f.caBundle, "ca-bundle", "", "PEM file of the CA(s) that issue podid's certificate (default: podid's own CA, from ConfigMap podid-identity-ca)")
	fs.DurationVar(&f.sessionDuration, "session-duration", time.Hour, "lifetime of podid server's sessions (the profile's; 15m to 12h)")
	fs.StringVar(&f.region, "region", "", "the region of the trust anchor and profile (default your AWS configuration's)")
	fs.BoolVar(&f.approve, "approve", false, "make the changes; without it, print the plan and change nothing")
	fs.StringVar(&f.podidNamespace, "podid-namespace", "podid-system", "where podid server runs")
	f.conn.AddFlags(cmd.PersistentFlags())
	cmd.AddCommand(setup)
	return cmd
}

func (f *rolesAnywhereFlags) setup(ctx context.Context) error {
	if f.sessionDuration < 15*time.Minute || f.sessionDuration > 12*time.Hour {
		return fmt.Errorf("--session-duration %s: a Roles Anywhere session lasts 15m to 12h", f.sessionDuration)
	}
	var c client.Client
	kubeClient := func() (client.Client, error) {
		if c != nil {
			return c, nil
		}
		var err error
		c, _, err = connect(f.conn)
		return c, err
	}
	if f.cluster == "" {
		kc, err := kubeClient()
		if err != nil {
			return err
		}
		var cm corev1.ConfigMap
		if err := kc.Get(ctx, client.ObjectKey{Namespace: f.podidNamespace, Name: serveridentity.ConfigMapName}, &cm); err != nil || cm.Data[serveridentity.KeyClusterName] == "" {
			return fmt.Errorf("name the cluster with --cluster-name (podid server in %s has published none: %v)", f.podidNamespace, err)
		}
		f.cluster = cm.Data[serveridentity.KeyClusterName]
	}
	var bundle []byte
	if f.caBundle != "" {
		b, err := os.ReadFile(f.caBundle)
		if err != nil {
			return err
		}
		bundle = b
	} else {
		kc, err := kubeClient()
		if err != nil {
			return err
		}
		var cm corev1.ConfigMap
		err = kc.Get(ctx, client.ObjectKey{Namespace: f.podidNamespace, Name: identitycert.CAConfigMap}, &cm)
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("ConfigMap %s/%s does not exist: install podid with server.awsIdentity.source=rolesAnywhere (podid server then makes its CA and publishes it there within a minute), or pass --ca-bundle with your issuer's CA", f.podidNamespace, identitycert.CAConfigMap)
		}
		if err != nil {
			return fmt.Errorf("reading podid's CA from ConfigMap %s/%s: %w", f.podidNamespace, identitycert.CAConfigMap, err)
		}
		bundle = []byte(cm.Data[identitycert.KeyCA])
	}
	if f.roleName == "" {
		f.roleName = "podid-server-" + f.cluster
	}
	cfg, err := userAWS(ctx, f.region, "podid roles-anywhere setup")
	if err != nil {
		return err
	}
	if f.region != "" {
		cfg.Region = f.region
	}
	req := rolesanywhere.SetupRequest{Cluster: f.cluster, CommonName: identitycert.CommonName(f.cluster), CABundle: bundle,
		RoleName: f.roleName, SessionDuration: int32(f.sessionDuration / time.Second)}
	plan, err := rolesanywhere.PlanSetup(ctx, req, ra.NewFromConfig(cfg), iam.NewFromConfig(cfg))
	if err != nil {
		return err
	}
	out := f.streams.Out
	fmt.Fprintf(out, "IAM Roles Anywhere for podid server of cluster %s (region %s):\n", f.cluster, cfg.Region)
	for _, c := range plan.Changes {
		fmt.Fprintf(out, "  %s\n", c)
	}
	if plan.Pending() && !f.approve {
		fmt.Fprintln(out, "\nNothing was changed. Run again with --approve to make these changes.")
		return nil
	}
	if plan.Pending() {
		if err := plan.Apply(ctx); err != nil {
			return err
		}
		fmt.Fprintln(out, "\nDone.")
	}
	fmt.Fprintf(out, `
Chart values (helm upgrade … -f this):
server:
  awsIdentity:
    source: rolesAnywhere
    rolesAnywhere:
      trustAnchorArn: %s
      profileArn: %s
      roleArn: %s
Every role an association names must trust %s (podid association create --role-name does).
`, plan.TrustAnchorARN, plan.ProfileARN, plan.RoleARN, plan.RoleARN)
	return nil
}
