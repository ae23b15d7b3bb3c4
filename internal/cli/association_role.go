package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/associationstore"
	"github.com/podid/podid/internal/iamrole"
	"github.com/podid/podid/internal/roletrust"
	"github.com/podid/podid/internal/serveridentity"
	"github.com/podid/podid/internal/sts"
)

// What podid records on an association about what it created for it, so
// that delete takes away exactly that.
const (
	AnnotationCreatedRole           = "podid.io/created-role"
	AnnotationCreatedServiceAccount = "podid.io/created-service-account"
	// AnnotationTrustedRole is a role whose trust --update-trust gave
	// podid's statement for the association; delete removes it again.
	AnnotationTrustedRole = "podid.io/trusted-role"
	labelManagedBy        = "app.kubernetes.io/managed-by"
)

// roleFlags are eksctl's options for a role made for the association.
type roleFlags struct {
	name, path, permissionPolicy, boundary, podidNamespace string
	policyARNs, wellKnown                                  []string
	createServiceAccount                                   bool
	updateTrust, allowUnverifiedTrust                      bool
}

func (r *roleFlags) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&r.name, "role-name", "", "create an IAM role of this name for the association, trusting podid server for this ServiceAccount only (instead of --role-arn)")
	fs.StringVar(&r.path, "role-path", "", `the created role's path (default "/")`)
	fs.StringSliceVar(&r.policyARNs, "permission-policy-arns", nil, "managed policies to attach to the created role")
	fs.StringVar(&r.permissionPolicy, "permission-policy", "", "an inline policy of the created role (JSON, or file://PATH)")
	fs.StringSliceVar(&r.wellKnown, "well-known-policies", nil, "eksctl's well-known policies to attach: imageBuilder, ebsCSIController, efsCSIController")
	fs.StringVar(&r.boundary, "permissions-boundary-arn", "", "the created role's permissions boundary")
	fs.StringVar(&r.boundary, "permission-boundary-arn", "", "eksctl's spelling of --permissions-boundary-arn")
	fs.BoolVar(&r.createServiceAccount, "create-service-account", false, "create the ServiceAccount too (delete removes it again)")
	fs.StringVar(&r.podidNamespace, "podid-namespace", "podid-system", "where podid server runs and publishes its AWS identity")
	fs.BoolVar(&r.updateTrust, "update-trust", false, "add podid's statement for this ServiceAccount to --role-arn's trust, as 'podid role trust --approve' does (for roles that trust EKS Pod Identity); delete removes it again")
	fs.BoolVar(&r.allowUnverifiedTrust, "allow-unverified", false, "with --update-trust: add it although the role's trust does not admit EKS Pod Identity for this ServiceAccount")
}

// makesRole reports whether any option of a created role is given.
func (r *roleFlags) makesRole() bool {
	return r.name != "" || r.path != "" || len(r.policyARNs) > 0 || r.permissionPolicy != "" || len(r.wellKnown) > 0 || r.boundary != ""
}

// check refuses combinations that cannot work, before anything is made.
func (r *roleFlags) check(spec *specFlags) error {
	switch {
	case spec.roleARN != "" && r.name != "":
		return errors.New("give --role-arn (an existing role) or --role-name (a role podid creates), not both")
	case spec.roleARN == "" && r.name == "":
		if r.makesRole() {
			return errors.New("the role options need --role-name, the name of the role to create")
		}
		return errors.New("--role-arn is required, or --role-name to create the role")
	case r.name != "" && spec.disableSessionTags:
		return errors.New("a role podid creates trusts podid server only with this association's session tags; --disable-session-tags would make it unusable: drop one of them")
	case r.updateTrust && spec.roleARN == "":
		return errors.New("--update-trust changes the trust of an existing role: give it with --role-arn")
	case r.updateTrust && spec.disableSessionTags:
		return errors.New("podid's trust statement admits podid server only with this association's session tags; --disable-session-tags would make it unusable: drop one of them")
	case r.allowUnverifiedTrust && !r.updateTrust:
		return errors.New("--allow-unverified goes with --update-trust")
	}
	if r.permissionPolicy != "" {
		doc := r.permissionPolicy
		if path, ok := strings.CutPrefix(doc, "file://"); ok {
			data, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("reading --permission-policy: %w", err)
			}
			doc = string(data)
		}
		r.permissionPolicy = doc
	}
	return nil
}

// userAWS is the caller's own AWS configuration (the standard chain:
// environment, profile, SSO, …), in region unless it names one; purpose
// says what it is for, in the error.
func userAWS(ctx context.Context, region, purpose string) (aws.Config, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return aws.Config{}, fmt.Errorf("loading your AWS configuration (%s uses your own AWS credentials): %w", purpose, err)
	}
	if cfg.Region == "" {
		cfg.Region = region
	}
	return cfg, nil
}

// awsIAM is an IAM client of userAWS, for roles made for associations.
func awsIAM(ctx context.Context, region string) (*iam.Client, error) {
	cfg, err := userAWS(ctx, region, "creating and deleting roles")
	if err != nil {
		return nil, err
	}
	return iam.NewFromConfig(cfg), nil
}

// createRole makes the role of the association of ServiceAccount ns/sa
// and returns its ARN and the cluster its trust names.
func (r *roleFlags) createRole(ctx context.Context, c client.Client, ns, sa string) (arn, cluster string, err error) {
	id, err := serveridentity.Read(ctx, c, r.podidNamespace)
	if err != nil {
		return "", "", err
	}
	a := iamrole.Association{Cluster: id.Cluster.ClusterName, Namespace: ns, ServiceAccount: sa}
	iamc, err := awsIAM(ctx, id.Cluster.Region)
	if err != nil {
		return "", "", err
	}
	principal, err := iamrole.ResolvePrincipal(ctx, iamc, id.PrincipalARN, id.RolePathUnknown)
	if err != nil {
		return "", "", err
	}
	arn, err = iamrole.Create(ctx, iamc, id.Cluster.Partition, principal, a, iamrole.Spec{
		RoleName: r.name, Path: r.path, PermissionPolicyARNs: r.policyARNs, WellKnownPolicies: r.wellKnown,
		PermissionPolicy: r.permissionPolicy, PermissionsBoundaryARN: r.boundary,
		// Long enough for the sessions EKS gives, which podid server asks for.
		MaxSessionDuration: int32(sts.DefaultDuration / time.Second),
	})
	return arn, a.Cluster, err
}

// trust adds podid's statement for pia to its role's trust (--update-trust),
// recording on pia that it did so that delete removes it again; a role
// whose trust has it already is left as it is, and not recorded.
func (r *roleFlags) trust(ctx context.Context, c client.Client, pia *v1alpha1.PodIdentityAssociation) (string, error) {
	target, iamc, err := roleTarget(ctx, c, r.podidNamespace, pia.Spec.RoleARN, pia.Namespace, pia.Spec.ServiceAccount)
	if err != nil {
		return "", err
	}
	plan, err := planTrust(ctx, c, iamc, target, r.allowUnverifiedTrust)
	if err != nil {
		return "", fmt.Errorf("--update-trust: %w", err)
	}
	if !plan.Changes() {
		return fmt.Sprintf("role %s already trusts podid server for %s", target.RoleARN, target.Association), nil
	}
	if err := roletrust.Write(ctx, iamc, plan); err != nil {
		return "", err
	}
	pia.Annotations[AnnotationTrustedRole] = target.RoleARN
	pia.Annotations[annotationTrustedRoleCluster] = target.Association.Cluster
	return fmt.Sprintf("added podid's statement for %s in cluster %s to role %s's trust:\n  %s", target.Association, target.Association.Cluster, target.RoleARN, strings.Join(plan.Lines, "\n  ")), nil
}

// annotationTrustedRoleCluster records the cluster podid's statement
// names, which delete needs to find it.
const annotationTrustedRoleCluster = "podid.io/trusted-role-cluster"

// untrust removes the statement --update-trust added for pia. The
// annotations are writable by the namespace's editors, but the statement
// removed is only ever podid's for pia's own ServiceAccount.
func untrust(ctx context.Context, pia *v1alpha1.PodIdentityAssociation) (string, error) {
	arn := pia.Annotations[AnnotationTrustedRole]
	iamc, err := awsIAM(ctx, "us-east-1")
	if err != nil {
		return "", err
	}
	target := roletrust.Target{RoleARN: arn, Association: iamrole.Association{Cluster: pia.Annotations[annotationTrustedRoleCluster], Namespace: pia.Namespace, ServiceAccount: pia.Spec.ServiceAccount}}
	plan, err := roletrust.PlanUntrust(ctx, iamc, target)
	if err == nil {
		err = roletrust.Write(ctx, iamc, plan)
	}
	if err != nil {
		return "", fmt.Errorf("podid's statement for %s is still in role %s's trust: %w; remove it with `podid role untrust -n %s --service-account %s --role-arn %s --approve`",
			target.Association, arn, err, pia.Namespace, pia.Spec.ServiceAccount, arn)
	}
	if !plan.Changes() {
		return "role " + arn + " had no podid statement for " + target.Association.String() + " left", nil
	}
	return "removed podid's statement for " + target.Association.String() + " from role " + arn + "'s trust", nil
}

// createServiceAccount creates the ServiceAccount unless it exists; it
// reports whether it did.
func createServiceAccount(ctx context.Context, c client.Client, ns, name string) (bool, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		Labels:      map[string]string{labelManagedBy: "podid"},
		Annotations: map[string]string{AnnotationCreatedServiceAccount: "for association " + ns + "/" + name}}}
	if err := c.Create(ctx, sa); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return false, nil
		}
		return false, fmt.Errorf("creating ServiceAccount %s/%s: %w", ns, name, err)
	}
	return true, nil
}

// deleteCreated takes away what podid created for pia: its role (only if
// tagged as podid's for it) and its ServiceAccount (only if labelled so).
// Each outcome is a line for the user.
func deleteCreated(ctx context.Context, c client.Client, pia *v1alpha1.PodIdentityAssociation) ([]string, error) {
	var said []string
	var errs []error
	if arn := pia.Annotations[AnnotationCreatedRole]; arn != "" {
		cluster := pia.Annotations[annotationCreatedRoleCluster]
		iamc, err := awsIAM(ctx, "us-east-1")
		if err == nil {
			var deleted bool
			deleted, err = iamrole.Delete(ctx, iamc, arn, iamrole.Association{Cluster: cluster, Namespace: pia.Namespace, ServiceAccount: pia.Spec.ServiceAccount})
			switch {
			case err == nil && deleted:
				said = append(said, "deleted IAM role "+arn+", which podid created for this association")
			case err == nil:
				said = append(said, "IAM role "+arn+" was already gone")
			case errors.Is(err, iamrole.ErrNotCreatedByPodid):
				said = append(said, "left IAM role "+arn+": "+err.Error())
				err = nil
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("the association is deleted, but its IAM role %s is not: %w; run `podid association delete` again or delete the role yourself", arn, err))
		}
	}
	if pia.Annotations[AnnotationTrustedRole] != "" {
		line, err := untrust(ctx, pia)
		if err != nil {
			errs = append(errs, err)
		} else {
			said = append(said, line)
		}
	}
	if pia.Annotations[AnnotationCreatedServiceAccount] == "true" {
		var sa corev1.ServiceAccount
		err := c.Get(ctx, client.ObjectKey{Namespace: pia.Namespace, Name: pia.Spec.ServiceAccount}, &sa)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			errs = append(errs, fmt.Errorf("reading ServiceAccount %s/%s: %w", pia.Namespace, pia.Spec.ServiceAccount, err))
		case sa.Labels[labelManagedBy] != "podid":
			said = append(said, fmt.Sprintf("left ServiceAccount %s/%s: it is no longer labelled %s=podid", sa.Namespace, sa.Name, labelManagedBy))
		default:
			if err := c.Delete(ctx, &sa, client.Preconditions{UID: &sa.UID}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("deleting ServiceAccount %s/%s: %w", sa.Namespace, sa.Name, err))
			} else {
				said = append(said, fmt.Sprintf("deleted ServiceAccount %s/%s, which podid created for this association", sa.Namespace, sa.Name))
			}
		}
	}
	return said, errors.Join(errs...)
}

// annotationCreatedRoleCluster records the cluster the created role's
// trust names, which delete checks the role's tags against.
const annotationCreatedRoleCluster = "podid.io/created-role-cluster"

// undoCreated takes away what create made before it failed, saying what
// could not be.
func undoCreated(ctx context.Context, c client.Client, pia *v1alpha1.PodIdentityAssociation, f *associationFlags) {
	if len(pia.Annotations) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	if _, err := deleteCreated(ctx, c, pia); err != nil {
		fmt.Fprintf(f.streams.Err, "warning: taking away what was made before the failure: %v\n", err)
	}
}

// createWith creates pia, first the ServiceAccount and the role role asks
// for; what it made is said on stderr, and taken away again if a later
// step fails.
func (f *associationFlags) createWith(ctx context.Context, c client.Client, host string, pia *v1alpha1.PodIdentityAssociation, role *roleFlags) (associationstore.Stored, error) {
	ns, sa := pia.Namespace, pia.Spec.ServiceAccount
	scope, err := associationstore.ParseScope(f.scope)
	if err != nil {
		return associationstore.Stored{}, fmt.Errorf("--%w", err)
	}
	var made []string
	if pia.Annotations == nil {
		pia.Annotations = map[string]string{}
	}
	if role.createServiceAccount {
		created, err := createServiceAccount(ctx, c, ns, sa)
		if err != nil {
			return associationstore.Stored{}, explain(err, host, "")
		}
		if created {
			pia.Annotations[AnnotationCreatedServiceAccount] = "true"
			made = append(made, fmt.Sprintf("created ServiceAccount %s/%s", ns, sa))
		}
	}
	if role.name != "" {
		arn, cluster, err := role.createRole(ctx, c, ns, sa)
		if err != nil {
			undoCreated(ctx, c, pia, f)
			return associationstore.Stored{}, err
		}
		pia.Spec.RoleARN = arn
		pia.Annotations[AnnotationCreatedRole] = arn
		pia.Annotations[annotationCreatedRoleCluster] = cluster
		made = append(made, fmt.Sprintf("created IAM role %s, trusting podid server for %s/%s in cluster %s only", arn, ns, sa, cluster))
	}
	if role.updateTrust {
		line, err := role.trust(ctx, c, pia)
		if err != nil {
			undoCreated(ctx, c, pia, f)
			return associationstore.Stored{}, err
		}
		made = append(made, line)
	}
	if len(pia.Annotations) == 0 {
		pia.Annotations = nil
	}
	// One association per ServiceAccount across both kinds: each kind's
	// name is unique, the other kind is looked up first.
	if existing, err := associationstore.Get(ctx, c, ns, sa); err == nil {
		undoCreated(ctx, c, pia, f)
		return associationstore.Stored{}, fmt.Errorf("ServiceAccount %s/%s already has an association (%s, %s), and a ServiceAccount can have only one; change it with `podid association update -n %s --service-account %s`, or delete it first",
			ns, sa, existing.ID(), existing.Kind(), ns, sa)
	}
	stored, err := associationstore.Create(ctx, c, pia, scope)
	if err != nil {
		undoCreated(ctx, c, pia, f)
		if associationstore.NamespaceMissing(err) {
			return associationstore.Stored{}, fmt.Errorf("namespace %s does not exist: create it first, or keep the association at the cluster level (--scope cluster, which needs create on clusterpodidentityassociations)", ns)
		}
		return associationstore.Stored{}, explain(err, host, fmt.Sprintf("ServiceAccount %s/%s", ns, sa))
	}
	for _, line := range made {
		fmt.Fprintln(f.streams.Err, line)
	}
	return stored, nil
}
