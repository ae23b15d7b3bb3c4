package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/accesskey"
	"github.com/podid/podid/internal/kube"
)

// accessKeyFlags locate the access-keys Secret podid server reads.
type accessKeyFlags struct {
	streams        Streams
	conn           *kube.ConnectionFlags
	podidNamespace string
	secret         string
}

func newAccessKeyCommand(streams Streams) *cobra.Command {
	f := &accessKeyFlags{streams: streams, conn: kube.NewConnectionFlags()}
	cmd := &cobra.Command{
		Use:     "access-key",
		Aliases: []string{"access-keys"},
		Short:   "Create, list and revoke the access keys of podid's SigV4 APIs",
		Long: `podid server admits SigV4 callers — 'aws eks', Terraform, eksctl, the stock EKS Pod
Identity Agent — with keys from a Secret (the chart's server.accessKeysSecret,
key access-keys.yaml). Each key acts as a Kubernetes user and groups: the
EKS-compatible API does what RBAC lets that user do. These commands edit the
Secret; podid server reads it again within a minute of a change.`,
	}
	f.conn.AddFlags(cmd.PersistentFlags())
	cmd.PersistentFlags().StringVar(&f.podidNamespace, "podid-namespace", "podid-system", "where podid server runs")
	cmd.PersistentFlags().StringVar(&f.secret, "secret", "podid-access-keys", "the access-keys Secret (the chart's server.accessKeysSecret)")
	cmd.AddCommand(newAccessKeyCreateCommand(f), newAccessKeyListCommand(f), newAccessKeyRevokeCommand(f))
	return cmd
}

func (f *accessKeyFlags) client() (client.Client, error) {
	c, _, err := connect(f.conn)
	return c, err
}

// edit applies change to the entries of the Secret (created when absent),
// retrying on a conflicting write.
func (f *accessKeyFlags) edit(ctx context.Context, c client.Client, change func([]accesskey.Entry) ([]accesskey.Entry, error)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var secret corev1.Secret
		err := c.Get(ctx, client.ObjectKey{Namespace: f.podidNamespace, Name: f.secret}, &secret)
		exists := err == nil
		if err != nil && !apierrors.IsNotFound(err) {
			return f.explain(err)
		}
		entries, err := accesskey.Entries(secret.Data[accesskey.FileKey])
		if err != nil {
			return fmt.Errorf("Secret %s/%s: %w; fix or delete it", f.podidNamespace, f.secret, err)
		}
		if entries, err = change(entries); err != nil {
			return err
		}
		data, err := accesskey.Marshal(entries)
		if err != nil {
			return err
		}
		if !exists {
			secret = corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.podidNamespace, Name: f.secret,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "podid"}}}
		}
		if secret.Data == nil {
			secret.Data = map[string][]byte{}
		}
		secret.Data[accesskey.FileKey] = data
		if exists {
			err = c.Update(ctx, &secret)
		} else {
			err = c.Create(ctx, &secret)
		}
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			return apierrors.NewConflict(corev1.Resource("secrets"), f.secret, err)
		}
		return f.explain(err)
	})
}

func (f *accessKeyFlags) explain(err error) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsForbidden(err):
		return fmt.Errorf("you may not read or write Secret %s/%s, which holds podid's access keys: %w", f.podidNamespace, f.secret, err)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("namespace %s does not exist: is podid installed there? (--podid-namespace)", f.podidNamespace)
	}
	return err
}

func newAccessKeyCreateCommand(f *accessKeyFlags) *cobra.Command {
	var name, user, node, profile string
	var groups []string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create an access key acting as a Kubernetes user, and print it once",
		Example: `  # Terraform in CI, acting as a user that RBAC lets manage associations:
  podid access-key create --user terraform --group podid:association-admins
  # A stock EKS Pod Identity Agent on node-1 (credential exchanges only):
  podid access-key create --name agent-node-1 --node node-1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				name = user
			}
			if name == "" {
				return fmt.Errorf("give --user (the Kubernetes user the key acts as) or --name (a key for the credential exchange alone)")
			}
			entry, err := accesskey.Generate(accesskey.Entry{Name: name, User: user, Groups: groups, Node: node})
			if err != nil {
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			err = f.edit(cmd.Context(), c, func(entries []accesskey.Entry) ([]accesskey.Entry, error) {
				if i := slices.IndexFunc(entries, func(e accesskey.Entry) bool { return e.Name == name }); i >= 0 {
					return nil, fmt.Errorf("an access key named %s exists (%s); revoke it first, or give another --name", name, entries[i].AccessKeyID)
				}
				return append(entries, entry), nil
			})
			if err != nil {
				return err
			}
			if profile == "" {
				profile = "podid-" + name
			}
			who, groupsSaid := entry.KubernetesUser()
			fmt.Fprintf(f.streams.Err, "created access key %s in Secret %s/%s, acting as Kubernetes user %s (groups %s); podid server admits it within a minute.\n"+
				"This is the only time its secret is printed; keep it in ~/.aws/credentials or your CI's secret store:\n",
				entry.AccessKeyID, f.podidNamespace, f.secret, who, strings.Join(groupsSaid, ", "))
			_, err = fmt.Fprintf(f.streams.Out, "[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n", profile, entry.AccessKeyID, entry.SecretAccessKey)
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&user, "user", "", "the Kubernetes user the key acts as in the EKS-compatible API (RBAC decides what it may do)")
	fs.StringSliceVar(&groups, "group", nil, "Kubernetes groups of that user (repeat or comma-separate)")
	fs.StringVar(&node, "node", "", "pin the key to a node: its credential exchanges are for that node's pods only (a stock EKS Pod Identity Agent's key)")
	fs.StringVar(&name, "name", "", "the key's name in podid's audit log (default: --user)")
	fs.StringVar(&profile, "profile", "", "the profile name printed (default podid-NAME)")
	return cmd
}

func newAccessKeyListCommand(f *accessKeyFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the access keys (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			var secret corev1.Secret
			if err := c.Get(cmd.Context(), client.ObjectKey{Namespace: f.podidNamespace, Name: f.secret}, &secret); err != nil {
				if apierrors.IsNotFound(err) {
					fmt.Fprintf(f.streams.Err, "No access keys: Secret %s/%s does not exist.\n", f.podidNamespace, f.secret)
					return nil
				}
				return f.explain(err)
			}
			entries, err := accesskey.Entries(secret.Data[accesskey.FileKey])
			if err != nil {
				return fmt.Errorf("Secret %s/%s: %w", f.podidNamespace, f.secret, err)
			}
			tw := tabwriter.NewWriter(f.streams.Out, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tACCESS KEY ID\tKUBERNETES USER\tGROUPS\tNODE")
			for _, e := range entries {
				user, groups := e.KubernetesUser()
				node := e.Node
				if node == "" {
					node = "<any>"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Name, e.AccessKeyID, user, strings.Join(groups, ","), node)
			}
			return tw.Flush()
		},
	}
}

func newAccessKeyRevokeCommand(f *accessKeyFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "revoke ACCESS_KEY_ID|NAME",
		Short:   "Revoke an access key: podid server refuses it within a minute",
		Example: `  podid access-key revoke terraform`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			err = f.edit(cmd.Context(), c, func(entries []accesskey.Entry) ([]accesskey.Entry, error) {
				left, found := accesskey.Remove(entries, args[0])
				if !found {
					return nil, fmt.Errorf("no access key has ID or name %s; see `podid access-key list`", args[0])
				}
				return left, nil
			})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(f.streams.Out, "revoked access key %s; podid server refuses it once the kubelet has updated the Secret's volume (about a minute)\n", args[0])
			return err
		},
	}
}
