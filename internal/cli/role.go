package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/iamrole"
	"github.com/podid/podid/internal/kube"
	"github.com/podid/podid/internal/passrole"
	"github.com/podid/podid/internal/roletrust"
	"github.com/podid/podid/internal/serveridentity"
)

// roleTrustFlags are the flags of `podid role trust` and `untrust`.
type roleTrustFlags struct {
	streams                                 Streams
	conn                                    *kube.ConnectionFlags
	roleARN, serviceAccount, podidNamespace string
	approve, allowUnverified                bool
}

func newRoleCommand(streams Streams) *cobra.Command {
	f := &roleTrustFlags{streams: streams, conn: kube.NewConnectionFlags()}
	cmd := &cobra.Command{
		Use:   "role",
		Short: "Make IAM roles that trust EKS Pod Identity usable through podid, and back",
	}
	f.conn.AddFlags(cmd.PersistentFlags())
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.roleARN, "role-arn", "", "the IAM role, by its ARN with its path")
	pf.StringVar(&f.serviceAccount, "service-account", "", "the ServiceAccount, in --namespace, whose association uses the role")
	pf.BoolVar(&f.approve, "approve", false, "write the change; without it, print the plan and change nothing")
	pf.StringVar(&f.podidNamespace, "podid-namespace", "podid-system", "where podid server runs and publishes its AWS identity")
	cmd.AddCommand(newRoleTrustCommand(f), newRoleUntrustCommand(f))
	return cmd
}

func newRoleTrustCommand(f *roleTrustFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trust",
		Short: "Let podid server assume a role that trusts EKS Pod Identity, for one ServiceAccount",
		Long: `Roles made by following EKS Pod Identity's guides (AWS's, JFrog's, Crossplane's,
Rafay's) trust the service principal pods.eks.amazonaws.com, which podid server is
not. This adds podid's statement to the role's trust, with your own AWS credentials:
podid server may sts:AssumeRole and sts:TagSession only with the session tags of
this cluster, namespace and ServiceAccount. Other statements are kept as they are,
and 'podid role untrust' removes exactly this one again.

Nothing is written unless the role's trust already admits EKS Pod Identity for this
ServiceAccount (a condition keeping it to other namespaces or another cluster is
respected) and you may use the role in the namespace (podid's PassRole). A role
that does not is refused, unless --allow-unverified vouches for it. Without
--approve it prints the plan and changes nothing.`,
		Example: `  podid role trust -n shop --service-account billing \
    --role-arn arn:aws:iam::111122223333:role/billing
  podid role trust -n shop --service-account billing \
    --role-arn arn:aws:iam::111122223333:role/billing --approve`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd.Context(), true)
		},
	}
	cmd.Flags().BoolVar(&f.allowUnverified, "allow-unverified", false, "add podid's statement although the role's trust does not admit EKS Pod Identity for this ServiceAccount (printed in the plan)")
	return cmd
}

func newRoleUntrustCommand(f *roleTrustFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "untrust",
		Short: "Remove podid's statement for one ServiceAccount from a role's trust",
		Long: `Removes the statement 'podid role trust' (or 'association create --update-trust')
added for this ServiceAccount, and nothing else: the role's trust is again what it
was. Without --approve it prints the plan and changes nothing.`,
		Example: `  podid role untrust -n shop --service-account billing \
    --role-arn arn:aws:iam::111122223333:role/billing --approve`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd.Context(), false)
		},
	}
}

func (f *roleTrustFlags) run(ctx context.Context, add bool) error {
	if f.roleARN == "" || f.serviceAccount == "" {
		return errors.New("--role-arn and --service-account are required")
	}
	ns, _, err := f.conn.Namespace()
	if err != nil {
		return err
	}
	c, _, err := connect(f.conn)
	if err != nil {
		return err
	}
	target, iamc, err := roleTarget(ctx, c, f.podidNamespace, f.roleARN, ns, f.serviceAccount)
	if err != nil {
		return err
	}
	var plan *roletrust.Plan
	if add {
		if plan, err = planTrust(ctx, c, iamc, target, f.allowUnverified); err != nil {
			return err
		}
	} else if plan, err = roletrust.PlanUntrust(ctx, iamc, target); err != nil {
		return err
	}
	printPlan(f.streams.Out, plan)
	switch {
	case !plan.Changes():
		return nil
	case !f.approve:
		fmt.Fprintln(f.streams.Out, "plan: nothing was changed: run again with --approve")
		return nil
	}
	if err := roletrust.Write(ctx, iamc, plan); err != nil {
		return err
	}
	fmt.Fprintf(f.streams.Out, "role %s's trust policy is written\n", f.roleARN)
	return nil
}

// roleTarget is the role and the association of ns/sa as podid server's
// published identity names them, with an IAM client of the user's own
// credentials.
func roleTarget(ctx context.Context, c client.Client, podidNamespace, roleARN, ns, sa string) (roletrust.Target, *iam.Client, error) {
	id, err := serveridentity.Read(ctx, c, podidNamespace)
	if err != nil {
		return roletrust.Target{}, nil, err
	}
	cfg, err := userAWS(ctx, id.Cluster.Region, "changing a role's trust policy")
	if err != nil {
		return roletrust.Target{}, nil, err
	}
	iamc := iam.NewFromConfig(cfg)
	principal, err := iamrole.ResolvePrincipal(ctx, iamc, id.PrincipalARN, id.RolePathUnknown)
	if err != nil {
		return roletrust.Target{}, nil, err
	}
	return roletrust.Target{
		RoleARN:     roleARN,
		Association: iamrole.Association{Cluster: id.Cluster.ClusterName, Namespace: ns, ServiceAccount: sa},
		ClusterARN:  id.Cluster.ClusterARN(),
		Principal:   principal,
	}, iamc, nil
}

// planTrust is roletrust.PlanTrust, after asking the API server whether
// the user may use the role in the namespace: the trust would give the
// namespace's ServiceAccount the role, as an association does.
func planTrust(ctx context.Context, c client.Client, iamc *iam.Client, t roletrust.Target, allowUnverified bool) (*roletrust.Plan, error) {
	refusal, err := passrole.MayUse(ctx, c, t.Association.Namespace, t.RoleARN)
	if err != nil {
		return nil, err
	}
	if refusal != "" {
		return nil, errors.New(refusal + ", or have someone who may run this")
	}
	return roletrust.PlanTrust(ctx, iamc, t, allowUnverified)
}

func printPlan(w io.Writer, p *roletrust.Plan) {
	for _, l := range p.Lines {
		fmt.Fprintln(w, l)
	}
}
