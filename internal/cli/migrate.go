package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/iamrole"
	"github.com/podid/podid/internal/kube"
	"github.com/podid/podid/internal/migrate"
	"github.com/podid/podid/internal/serveridentity"
	"github.com/podid/podid/internal/token"
)

// migrateFlags are what both migrate commands share.
type migrateFlags struct {
	streams        Streams
	conn           *kube.ConnectionFlags
	allNamespaces  bool
	selector       string
	serviceAccount string
	approve        bool
	podidNamespace string
	oidcIssuer     string
}

func newMigrateCommand(streams Streams) *cobra.Command {
	f := &migrateFlags{streams: streams, conn: kube.NewConnectionFlags()}
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Move IRSA ServiceAccounts to podid, and back",
	}
	f.conn.AddFlags(cmd.PersistentFlags())
	pf := cmd.PersistentFlags()
	pf.BoolVarP(&f.allNamespaces, "all-namespaces", "A", false, "every namespace (the default without --namespace)")
	pf.StringVarP(&f.selector, "selector", "l", "", "only ServiceAccounts with these labels")
	pf.StringVar(&f.serviceAccount, "service-account", "", "only this ServiceAccount (in --namespace)")
	pf.BoolVar(&f.approve, "approve", false, "make the changes; without it, print the plan and change nothing")
	pf.StringVar(&f.podidNamespace, "podid-namespace", "podid-system", "where podid server runs and publishes its AWS identity")
	pf.StringVar(&f.oidcIssuer, "oidc-issuer", "", "the URL of the IAM OIDC provider IRSA roles trust (default: the API server's ServiceAccount issuer, from /.well-known/openid-configuration)")
	cmd.AddCommand(newMigrateIRSACommand(f), newMigrateRollbackCommand(f))
	return cmd
}

func newMigrateIRSACommand(f *migrateFlags) *cobra.Command {
	var opts migrate.Options
	var unverified []string
	var exportDir string
	cmd := &cobra.Command{
		Use:   "irsa",
		Short: "Give IRSA ServiceAccounts (eks.amazonaws.com/role-arn) an association with the same role",
		Long: `For each ServiceAccount with eks.amazonaws.com/role-arn whose role's trust admits it
through IRSA (the cluster's OIDC provider, sts:AssumeRoleWithWebIdentity, a condition
on its subject): add podid's trust statement to the role (once), create the association (an existing one is done), and with the
options remove the ServiceAccount's OIDC trust statement and its annotation, and
restart its Deployments, StatefulSets and DaemonSets once the association is Ready
(running pods stay on IRSA until restarted: the SDK tries web identity first).

Whoever may edit a ServiceAccount may write the annotation, which under IRSA grants
nothing by itself: a ServiceAccount whose role does not trust it through IRSA is
"not verified" and nothing is written for it, unless --allow-unverified names it.

Every change is recorded on the ServiceAccount before it is made (annotation
podid.io/irsa-migration: the role's trust policy byte for byte, the annotations,
what was created). A run stops at the first failure: run it again to resume, or
'podid migrate rollback' to restore exactly what was there. Without --approve it
prints the plan and changes nothing.`,
		Example: `  podid migrate irsa -n shop
  podid migrate irsa -n shop --approve --restart
  podid migrate irsa -A -l team=web --approve --remove-oidc-trust --remove-annotation
  podid migrate irsa -A --approve --remove-oidc-trust --remove-oidc-provider`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, cands, err := f.setUp(cmd.Context(), opts)
			if err != nil {
				return err
			}
			m.Unverified = map[string]bool{}
			for _, ref := range unverified {
				ns, name, ok := strings.Cut(ref, "/")
				if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
					return fmt.Errorf("--allow-unverified %q: name a ServiceAccount as NAMESPACE/NAME", ref)
				}
				m.Unverified[ref] = true
			}
			return runMigration(cmd.Context(), m, cands, f.approve, exportDir)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&exportDir, "export", "", "write the associations the migration left into DIR: associations.yaml (the objects), eksctl.yaml (a cluster file snippet) and terraform.tf (resources with import blocks), for GitOps and Terraform owners to adopt")
	fs.StringArrayVar(&unverified, "allow-unverified", nil, "NAMESPACE/NAME: migrate this ServiceAccount although its role's trust does not admit it through IRSA (repeatable; printed in the plan)")
	fs.BoolVar(&opts.RemoveOIDCTrust, "remove-oidc-trust", false, "remove the role's OIDC statement that admits only this ServiceAccount")
	fs.BoolVar(&opts.RemoveAnnotation, "remove-annotation", false, "remove eks.amazonaws.com/role-arn from the ServiceAccount")
	fs.BoolVar(&opts.RemoveOIDCProvider, "remove-oidc-provider", false, "after the run, delete the cluster's IAM OIDC provider if no role of the account trusts it any more (the plan lists those that do)")
	fs.BoolVar(&opts.Restart, "restart", false, "restart the ServiceAccount's workloads once its association is Ready")
	fs.DurationVar(&opts.Wait, "wait", 2*time.Minute, "how long to wait for an association to be Ready before restarting")
	return cmd
}

func runMigration(ctx context.Context, m *migrate.Migrator, cands []*migrate.Candidate, approve bool, exportDir string) error {
	if !approve {
		var planned []*migrate.Candidate
		for _, c := range cands {
			if m.Plan(ctx, c) == nil {
				planned = append(planned, c)
			}
		}
		if m.Options.RemoveOIDCProvider {
			if _, err := m.RemoveOIDCProvider(ctx, false, planned); err != nil {
				return err
			}
		}
		fmt.Fprintf(m.Out, "plan: %d ServiceAccount(s), %d cannot be migrated; nothing was changed: run again with --approve\n", len(cands), len(cands)-len(planned))
		return nil
	}
	skipped := 0
	var migrated []*v1alpha1.PodIdentityAssociation
	for i, c := range cands {
		if err := m.Apply(ctx, c); err != nil {
			var skip *migrate.SkipError
			if errors.As(err, &skip) {
				fmt.Fprintf(m.Out, "%s/%s: skipped: %v\n", c.SA.Namespace, c.SA.Name, err)
				skipped++
				continue
			}
			return fmt.Errorf("%s/%s: %w\n%d of %d ServiceAccounts done; what was done is recorded: run again to resume, or `podid migrate rollback`", c.SA.Namespace, c.SA.Name, err, i, len(cands))
		}
		if exportDir != "" {
			a, err := m.AssociationInForce(ctx, c)
			if err != nil {
				return err
			}
			if a != nil {
				migrated = append(migrated, a)
			}
		}
		pods, err := m.PodsOnIRSA(ctx, c)
		if err != nil {
			return err
		}
		if len(pods) > 0 {
			fmt.Fprintf(m.Out, "%s/%s: pods still on IRSA until restarted: %v\n", c.SA.Namespace, c.SA.Name, pods)
		}
	}
	fmt.Fprintf(m.Out, "%d ServiceAccount(s) migrated, %d skipped\n", len(cands)-skipped, skipped)
	if exportDir != "" {
		files, err := migrate.Export(exportDir, m.Cluster, migrated)
		if err != nil {
			return err
		}
		fmt.Fprintf(m.Out, "exported %d association(s) to %s\n", len(migrated), strings.Join(files, ", "))
	}
	if skipped > 0 {
		return fmt.Errorf("%d ServiceAccount(s) could not be migrated: see above", skipped)
	}
	if m.Options.RemoveOIDCProvider {
		gone, err := m.RemoveOIDCProvider(ctx, true, nil)
		if err != nil {
			return err
		}
		if !gone {
			return fmt.Errorf("the OIDC provider %s is kept: roles still trust it (listed above)", m.ProviderARN())
		}
	}
	return nil
}

func newMigrateRollbackCommand(f *migrateFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rollback",
		Short: "Restore exactly what `podid migrate irsa` changed, latest first",
		Long: `Reads each ServiceAccount's migration record and undoes the migration: removes
podid's statement from the role's trust and puts back the ServiceAccount's own OIDC
statements (the document before the migration, byte for byte, when nothing else
changed since), deletes the association the migration created, puts the
eks.amazonaws.com/* annotations back, and restores restarted workloads' templates
(which restarts them onto IRSA).

The record is an annotation any editor of the namespace may write, so rollback never
writes a document from it: anything in it that is not the ServiceAccount's own OIDC
trust through this cluster's provider, or that names a role with no podid statement
for the ServiceAccount, is reported (✗) and not written. Without --approve it prints
the trust change it would make.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, cands, err := f.setUp(cmd.Context(), migrate.Options{})
			if err != nil {
				return err
			}
			order := migrate.RollbackOrder(cands)
			if !f.approve {
				refused := 0
				for _, c := range order {
					if !m.PlanRollback(cmd.Context(), c) {
						refused++
					}
				}
				fmt.Fprintf(m.Out, "plan: %d ServiceAccount(s) to roll back, %d with something rollback will not write (✗); nothing was changed: run again with --approve\n", len(order), refused)
				return nil
			}
			refused := 0
			for i, c := range order {
				r, err := m.Rollback(cmd.Context(), c)
				if err != nil {
					return fmt.Errorf("%s/%s: %w\n%d of %d rolled back: run again to go on", c.SA.Namespace, c.SA.Name, err, i, len(order))
				}
				if r {
					refused++
				}
			}
			fmt.Fprintf(m.Out, "%d ServiceAccount(s) rolled back\n", len(order))
			if refused > 0 {
				return fmt.Errorf("%d record(s) held what rollback does not write (marked ✗ above): nothing of that was written to IAM", refused)
			}
			return nil
		},
	}
}

// setUp connects as the user, to Kubernetes and AWS, and finds the
// ServiceAccounts the flags select.
func (f *migrateFlags) setUp(ctx context.Context, opts migrate.Options) (*migrate.Migrator, []*migrate.Candidate, error) {
	ns, explicitNS, err := f.conn.Namespace()
	if err != nil {
		return nil, nil, err
	}
	sel := migrate.Selection{Name: f.serviceAccount}
	if explicitNS && !f.allNamespaces {
		sel.Namespace = ns
	}
	if f.serviceAccount != "" && sel.Namespace == "" {
		return nil, nil, errors.New("--service-account needs --namespace")
	}
	if f.selector != "" {
		if sel.Selector, err = labels.Parse(f.selector); err != nil {
			return nil, nil, fmt.Errorf("--selector: %w", err)
		}
	}
	c, cfg, err := connect(f.conn)
	if err != nil {
		return nil, nil, err
	}
	id, err := serveridentity.Read(ctx, c, f.podidNamespace)
	if err != nil {
		return nil, nil, err
	}
	issuer, err := f.issuer(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	awsCfg, err := userAWS(ctx, id.Cluster.Region, "editing trust policies")
	if err != nil {
		return nil, nil, err
	}
	caller, err := sts.NewFromConfig(awsCfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return nil, nil, fmt.Errorf("who are you in AWS (sts:GetCallerIdentity): %w", err)
	}
	iamc := iam.NewFromConfig(awsCfg)
	principal, err := iamrole.ResolvePrincipal(ctx, iamc, id.PrincipalARN, id.RolePathUnknown)
	if err != nil {
		return nil, nil, err
	}
	m := &migrate.Migrator{Client: c, IAM: iamc, Account: *caller.Account, Principal: principal, Cluster: id.Cluster.ClusterName,
		Issuer: issuer, Options: opts, Out: f.streams.Out}
	cands, err := m.Discover(ctx, sel)
	if err != nil {
		return nil, nil, explain(err, cfg.Host, "")
	}
	if len(cands) == 0 {
		return nil, nil, errors.New("no ServiceAccount with eks.amazonaws.com/role-arn (or a migration record) matches")
	}
	return m, cands, nil
}

// issuer is --oidc-issuer, or the cluster's ServiceAccount token issuer as
// the API server publishes it: the IAM OIDC provider IRSA roles trust is
// named after it.
func (f *migrateFlags) issuer(ctx context.Context, cfg *rest.Config) (migrate.Issuer, error) {
	u := f.oidcIssuer
	if u == "" {
		hc, err := rest.HTTPClientFor(cfg)
		if err != nil {
			return "", err
		}
		d, err := token.Discover(ctx, hc, strings.TrimSuffix(cfg.Host, "/"))
		if err != nil {
			return "", fmt.Errorf("finding the cluster's ServiceAccount issuer, which IRSA roles trust (or pass --oidc-issuer): %w", err)
		}
		u = d.Issuer
	}
	return migrate.IssuerFromURL(u)
}
