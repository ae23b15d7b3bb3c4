package cli

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/associationstore"
)

// specFlags are the flags that set an association's spec.
type specFlags struct {
	roleARN, targetRoleARN, policy, tags string
	disableSessionTags                   bool
}

func (s *specFlags) add(cmd *cobra.Command, withTags bool) {
	fs := cmd.Flags()
	fs.StringVar(&s.roleARN, "role-arn", "", "the IAM role the pods receive credentials for")
	fs.StringVar(&s.targetRoleARN, "target-role-arn", "", `a role to assume next with the first role's credentials, e.g. in another account ("" removes it)`)
	fs.BoolVar(&s.disableSessionTags, "disable-session-tags", false, "attach no session tags to the role session")
	fs.StringVar(&s.policy, "policy", "", `a session policy (JSON, or file://PATH) that narrows the role's permissions ("" removes it)`)
	if withTags {
		fs.StringVar(&s.tags, "tags", "", "tags of the association: key=value,key=value or a JSON object")
	}
}

func newAssociationCreateCommand(f *associationFlags) *cobra.Command {
	var spec specFlags
	var role roleFlags
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Associate a ServiceAccount with an IAM role, existing or made for it",
		Long: `Associates a ServiceAccount with an existing role (--role-arn), or creates the role
with your own AWS credentials (--role-name and eksctl's role options). A created
role trusts podid server only with this association's session tags (cluster,
namespace, ServiceAccount): it is useless to any other association. It is tagged
podid.io/managed-by=podid, and 'podid association delete' deletes it again, with a
ServiceAccount made by --create-service-account.`,
		Example: `  podid association create -n shop --service-account billing \
    --role-arn arn:aws:iam::111122223333:role/billing
  podid association create -n shop --service-account billing --create-service-account \
    --role-name shop-billing --permission-policy-arns arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.serviceAccount == "" {
				return fmt.Errorf("--service-account is required")
			}
			if err := role.check(&spec); err != nil {
				return err
			}
			ns, _, err := f.conn.Namespace()
			if err != nil {
				return err
			}
			pia := &v1alpha1.PodIdentityAssociation{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: f.serviceAccount},
				Spec: v1alpha1.PodIdentityAssociationSpec{
					ServiceAccount:     f.serviceAccount,
					RoleARN:            spec.roleARN,
					TargetRoleARN:      spec.targetRoleARN,
					DisableSessionTags: spec.disableSessionTags,
				},
			}
			if pia.Spec.Policy, err = readPolicy(spec.policy); err != nil {
				return err
			}
			if spec.tags != "" {
				if pia.Spec.Tags, err = parseTags(spec.tags); err != nil {
					return err
				}
			}
			c, host, err := f.client()
			if err != nil {
				return err
			}
			stored, err := f.createWith(cmd.Context(), c, host, pia, &role)
			if err != nil {
				return err
			}
			return f.printChange(f.waitForController(cmd.Context(), c, stored), "created")
		},
	}
	cmd.Flags().StringVar(&f.serviceAccount, "service-account", "", "the ServiceAccount, in --namespace, whose pods receive credentials (neither need exist yet with --scope cluster)")
	spec.add(cmd, true)
	role.add(cmd)
	f.addScopeFlag(cmd)
	f.addWaitFlag(cmd)
	return cmd
}

func newAssociationGetCommand(f *associationFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "get",
		Aliases: []string{"describe"},
		Short:   "Show one association",
		Example: `  podid association get -n shop --service-account billing
  podid association get --association-id a-0123456789abcdefg -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, _, stored, err := f.connectAndFind(cmd.Context())
			if err != nil {
				return err
			}
			return f.printOne(stored.View())
		},
	}
	f.addTargetFlags(cmd)
	return cmd
}

func newAssociationListCommand(f *associationFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List associations, in every namespace unless --namespace is given",
		Example: `  podid association list
  podid association list -n shop
  podid association list --service-account billing -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ns, explicitNS, err := f.conn.Namespace()
			if err != nil {
				return err
			}
			filter := associationstore.Filter{ServiceAccount: f.serviceAccount}
			if explicitNS {
				filter.Namespace = ns
			}
			c, host, err := f.client()
			if err != nil {
				return err
			}
			all, err := listAll(cmd.Context(), c, filter)
			if err != nil {
				return explain(err, host, "")
			}
			items := make([]v1alpha1.PodIdentityAssociation, len(all))
			for i, it := range all {
				items[i] = *it.View()
			}
			slices.SortFunc(items, func(a, b v1alpha1.PodIdentityAssociation) int {
				if a.Namespace != b.Namespace {
					return strings.Compare(a.Namespace, b.Namespace)
				}
				return strings.Compare(a.Name, b.Name)
			})
			return f.printList(items)
		},
	}
	cmd.Flags().StringVar(&f.serviceAccount, "service-account", "", "list only the associations of ServiceAccounts with this name")
	return cmd
}

func newAssociationUpdateCommand(f *associationFlags) *cobra.Command {
	var spec specFlags
	var removeTags []string
	cmd := &cobra.Command{
		Use:   "update",
		Short: "Change an association's role, target role, session tags or policy",
		Long: `Changes only the fields whose flags are given. The namespace and ServiceAccount
of an association never change: delete it and create another instead.`,
		Example: `  podid association update -n shop --service-account billing \
    --role-arn arn:aws:iam::111122223333:role/billing-v2
  podid association update -n shop --service-account billing --policy ""`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			changed := cmd.Flags().Changed
			if !changed("role-arn") && !changed("target-role-arn") && !changed("disable-session-tags") && !changed("policy") && !changed("tags") && !changed("remove-tags") {
				return fmt.Errorf("nothing to change: give --role-arn, --target-role-arn, --disable-session-tags, --policy, --tags or --remove-tags")
			}
			if changed("role-arn") && spec.roleARN == "" {
				return fmt.Errorf("--role-arn cannot be empty: an association always has a role")
			}
			policy, err := readPolicy(spec.policy)
			if err != nil {
				return err
			}
			var addTags map[string]string
			if spec.tags != "" {
				if addTags, err = parseTags(spec.tags); err != nil {
					return err
				}
			}
			c, host, err := f.client()
			if err != nil {
				return err
			}
			var stored associationstore.Stored
			ref := ""
			err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
				if stored, err = f.find(cmd.Context(), c, host); err != nil {
					return err
				}
				view, s := stored.View(), stored.Spec()
				ref = fmt.Sprintf("ServiceAccount %s/%s", view.Namespace, view.Spec.ServiceAccount)
				if changed("role-arn") {
					s.RoleARN = spec.roleARN
				}
				if changed("target-role-arn") {
					s.TargetRoleARN = spec.targetRoleARN
				}
				if changed("disable-session-tags") {
					s.DisableSessionTags = spec.disableSessionTags
				}
				if changed("policy") {
					s.Policy = policy
				}
				s.Tags = association.EditTags(s.Tags, addTags, removeTags)
				return c.Update(cmd.Context(), stored.Object())
			})
			if err != nil {
				return explain(err, host, ref)
			}
			return f.printChange(f.waitForController(cmd.Context(), c, stored), "updated")
		},
	}
	cmd.Flags().StringVar(&spec.tags, "tags", "", "tags to add or change: key=value,key=value or a JSON object (others are kept)")
	cmd.Flags().StringSliceVar(&removeTags, "remove-tags", nil, "tag keys to remove: key,key")
	f.addTargetFlags(cmd)
	spec.add(cmd, false)
	f.addWaitFlag(cmd)
	return cmd
}

func newAssociationDeleteCommand(f *associationFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete an association: its pods stop receiving new credentials",
		Example: `  podid association delete -n shop --service-account billing
  podid association delete --association-id a-0123456789abcdefg`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, host, stored, err := f.connectAndFind(cmd.Context())
			if err != nil {
				return err
			}
			pia := stored.View()
			// Delete exactly the object shown, not a re-created namesake.
			if err := c.Delete(cmd.Context(), stored.Object(), client.Preconditions{UID: &pia.UID}); err != nil {
				return explain(err, host, fmt.Sprintf("ServiceAccount %s/%s", pia.Namespace, pia.Name))
			}
			// Then what podid made for it, and only that.
			said, err := deleteCreated(cmd.Context(), c, pia)
			for _, line := range said {
				fmt.Fprintln(f.streams.Err, line)
			}
			if perr := f.printChange(pia, "deleted"); perr != nil {
				return perr
			}
			return err
		},
	}
	f.addTargetFlags(cmd)
	return cmd
}
