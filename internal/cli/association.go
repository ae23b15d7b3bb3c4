package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/associationstore"
	"github.com/podid/podid/internal/kube"
)

// associationFlags are the flags every association command shares.
type associationFlags struct {
	streams        Streams
	conn           *kube.ConnectionFlags
	serviceAccount string
	associationID  string
	output         string
	wait           time.Duration
	scope          string
}

func newAssociationCommand(streams Streams) *cobra.Command {
	f := &associationFlags{streams: streams, conn: kube.NewConnectionFlags()}
	cmd := &cobra.Command{
		Use:     "association",
		Aliases: []string{"associations", "pia"},
		Short:   "Create, show, change and delete pod identity associations",
		Long: `An association maps a ServiceAccount to an IAM role: every pod running as the
ServiceAccount can obtain credentials for the role. Flags are named after
'aws eks create-pod-identity-association' and friends; the connection flags
are kubectl's.`,
	}
	// Refuse a bad -o before doing anything, for every subcommand.
	cmd.PersistentPreRunE = func(*cobra.Command, []string) error { return f.checkOutput() }
	f.conn.AddFlags(cmd.PersistentFlags())
	cmd.PersistentFlags().StringVarP(&f.output, "output", "o", "table", "output format: table, json or yaml")
	cmd.AddCommand(
		newAssociationCreateCommand(f),
		newAssociationGetCommand(f),
		newAssociationListCommand(f),
		newAssociationUpdateCommand(f),
		newAssociationDeleteCommand(f),
		newAssociationApplyCommand(f),
	)
	return cmd
}

// addTargetFlags adds the flags that pick one association.
func (f *associationFlags) addTargetFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.serviceAccount, "service-account", "", "the ServiceAccount whose association this is, in --namespace")
	cmd.Flags().StringVar(&f.associationID, "association-id", "", "the association's ID (a-…), instead of --service-account")
}

// addScopeFlag adds --scope, where a new association is kept.
func (f *associationFlags) addScopeFlag(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.scope, "scope", string(associationstore.ScopeAuto),
		"where to keep a new association: cluster (a ClusterPodIdentityAssociation: may precede its namespace and survives its deletion, as on EKS), namespace (a PodIdentityAssociation in its namespace, which must exist), or auto (cluster if you may create ClusterPodIdentityAssociations, else namespace)")
}

func (f *associationFlags) addWaitFlag(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&f.wait, "wait", 10*time.Second, "how long to wait for podid server to take the change into account; 0 does not wait")
}

func (f *associationFlags) client() (client.Client, string, error) {
	c, cfg, err := connect(f.conn)
	if err != nil {
		return nil, "", err
	}
	return c, cfg.Host, nil
}

// connect is a client of the cluster conn names, as the user, and the
// configuration it was made from (whose Host errors name).
func connect(conn *kube.ConnectionFlags) (client.Client, *rest.Config, error) {
	cfg, err := conn.RESTConfig()
	if err != nil {
		return nil, nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: kube.NewScheme()})
	if err != nil {
		return nil, nil, explain(err, cfg.Host, "")
	}
	return c, cfg, nil
}

func (f *associationFlags) checkOutput() error {
	switch f.output {
	case "table", "json", "yaml":
		return nil
	}
	return fmt.Errorf("--output %q is not one of table, json, yaml", f.output)
}

// find returns the association --service-account or --association-id names,
// of either kind.
func (f *associationFlags) find(ctx context.Context, c client.Client, host string) (associationstore.Stored, error) {
	ns, explicitNS, err := f.conn.Namespace()
	if err != nil {
		return associationstore.Stored{}, err
	}
	switch {
	case f.serviceAccount != "" && f.associationID != "":
		return associationstore.Stored{}, fmt.Errorf("give --service-account or --association-id, not both")
	case f.serviceAccount != "":
		stored, err := associationstore.Get(ctx, c, ns, f.serviceAccount)
		if err != nil {
			return associationstore.Stored{}, explain(err, host, fmt.Sprintf("ServiceAccount %s/%s", ns, f.serviceAccount))
		}
		return stored, nil
	case f.associationID != "":
		if !association.IsID(f.associationID) {
			return associationstore.Stored{}, fmt.Errorf("--association-id %q is not an association ID: they look like a-abcdefghij0123456", f.associationID)
		}
		filter := associationstore.Filter{}
		if explicitNS {
			filter.Namespace = ns
		}
		all, err := listAll(ctx, c, filter)
		if err != nil {
			return associationstore.Stored{}, explain(err, host, "")
		}
		for _, it := range all {
			if it.ID() == f.associationID {
				return it, nil
			}
		}
		return associationstore.Stored{}, fmt.Errorf("no association has ID %s; list them with `podid association list`", f.associationID)
	default:
		return associationstore.Stored{}, fmt.Errorf("say which association: --service-account NAME (in --namespace, default %q) or --association-id a-…", ns)
	}
}

// listAll lists every association of both kinds f selects.
func listAll(ctx context.Context, c client.Reader, f associationstore.Filter) ([]associationstore.Stored, error) {
	var all []associationstore.Stored
	token := ""
	for {
		page, next, err := associationstore.List(ctx, c, f, 500, token)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == "" {
			return all, nil
		}
		token = next
	}
}

// connectAndFind connects and returns the association the flags name.
func (f *associationFlags) connectAndFind(ctx context.Context) (client.Client, string, associationstore.Stored, error) {
	c, host, err := f.client()
	if err != nil {
		return nil, "", associationstore.Stored{}, err
	}
	stored, err := f.find(ctx, c, host)
	return c, host, stored, err
}

// waitForController waits until podid server has observed the association's
// generation, so that what is printed is what is in force, and returns it.
// When it does not come, the object is still written: say so, and why that
// may be.
func (f *associationFlags) waitForController(ctx context.Context, c client.Client, stored associationstore.Stored) *v1alpha1.PodIdentityAssociation {
	view := stored.View()
	if f.wait <= 0 {
		return view
	}
	gen := stored.Object().GetGeneration()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, f.wait, true, func(ctx context.Context) (bool, error) {
		cur, err := associationstore.Get(ctx, c, view.Namespace, view.Spec.ServiceAccount)
		if err != nil {
			return false, err
		}
		if cur.Object().GetGeneration() != gen || cur.ID() != stored.ID() {
			return true, nil // changed again meanwhile: print what we wrote
		}
		view = cur.View()
		return view.Status.ObservedGeneration == gen, nil
	})
	if err != nil {
		fmt.Fprintf(f.streams.Err, "warning: podid server has not taken association %s (%s) into account after %s; is it running? Check with `podid association get -n %s --service-account %s`\n",
			stored.ID(), stored.Kind(), f.wait, view.Namespace, view.Spec.ServiceAccount)
	}
	return view
}

// readPolicy reads --policy: a JSON document, or file://PATH as in the AWS CLI.
func readPolicy(value string) (string, error) {
	if path, ok := strings.CutPrefix(value, "file://"); ok {
		data, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("reading --policy: %w", err)
		}
		value = string(data)
	}
	if err := association.ValidatePolicy(value); err != nil {
		return "", fmt.Errorf("--policy: %w", err)
	}
	return value, nil
}

// parseTags reads --tags as key=value,key=value or as a JSON object, as the
// AWS CLI accepts them. A key given twice is an error, not a silent overwrite.
func parseTags(value string) (map[string]string, error) {
	value = strings.TrimSpace(value)
	if strings.HasPrefix(value, "{") {
		var tags map[string]string
		if err := json.Unmarshal([]byte(value), &tags); err != nil {
			return nil, fmt.Errorf("--tags: not a JSON object of strings: %w", err)
		}
		return tags, nil
	}
	tags := map[string]string{}
	for pair := range strings.SplitSeq(value, ",") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--tags: %q is not key=value; write --tags team=web,env=prod or a JSON object", pair)
		}
		if _, dup := tags[k]; dup {
			return nil, fmt.Errorf("--tags: key %q is given twice", k)
		}
		tags[k] = v
	}
	return tags, nil
}
