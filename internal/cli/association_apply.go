package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/associationstore"
	"github.com/podid/podid/internal/serveridentity"
)

// eksctlAssociation is one entry of eksctl's iam.podIdentityAssociations.
type eksctlAssociation struct {
	Namespace              string            `json:"namespace"`
	ServiceAccountName     string            `json:"serviceAccountName"`
	RoleARN                string            `json:"roleARN,omitempty"`
	RoleName               string            `json:"roleName,omitempty"`
	PermissionPolicyARNs   []string          `json:"permissionPolicyARNs,omitempty"`
	PermissionPolicy       json.RawMessage   `json:"permissionPolicy,omitempty"`
	WellKnownPolicies      map[string]bool   `json:"wellKnownPolicies,omitempty"`
	PermissionsBoundaryARN string            `json:"permissionsBoundaryARN,omitempty"`
	CreateServiceAccount   bool              `json:"createServiceAccount,omitempty"`
	Tags                   map[string]string `json:"tags,omitempty"`
	TargetRoleARN          string            `json:"targetRoleARN,omitempty"`
	DisableSessionTags     bool              `json:"disableSessionTags,omitempty"`
	// Policy is the association's session policy.
	Policy json.RawMessage `json:"policy,omitempty"`
}

// eksctlConfig is the part of eksctl's ClusterConfig podid reads; Rafay's
// rafay.io/v1alpha5 ClusterConfig has the same iam.podIdentityAssociations.
type eksctlConfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	IAM struct {
		PodIdentityAssociations []json.RawMessage `json:"podIdentityAssociations"`
	} `json:"iam"`
}

// clusterFile is what apply takes from a file: the cluster it names, its
// associations, and what it holds that podid does not act on (said, so that
// nobody believes node groups or add-ons were applied).
type clusterFile struct {
	cluster string
	entries []eksctlAssociation
	ignored []string
}

// readClusterFile reads the associations of an eksctl ClusterConfig or of
// Rafay's cluster file (a Cluster document and a rafay.io/v1alpha5
// ClusterConfig, in one multi-document file). Every association entry is
// read strictly, so a misspelt field is an error, not a silent default.
func readClusterFile(data []byte) (*clusterFile, error) {
	out := &clusterFile{}
	seen := map[string]bool{}
	configs := 0
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for doc := 1; ; doc++ {
		raw, err := reader.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("document %d is not YAML: %w", doc, err)
		}
		if string(bytes.TrimSpace(js)) == "null" {
			continue // an empty document
		}
		var cfg eksctlConfig
		if err := json.Unmarshal(js, &cfg); err != nil {
			return nil, fmt.Errorf("document %d is not a cluster file: %w", doc, err)
		}
		isConfig := cfg.Kind == "ClusterConfig" && (strings.HasPrefix(cfg.APIVersion, "eksctl.io/") || strings.HasPrefix(cfg.APIVersion, "rafay.io/"))
		if !isConfig {
			what := cfg.Kind
			if what == "" {
				what = "a document without kind"
			}
			if cfg.Metadata.Name != "" {
				what += " " + cfg.Metadata.Name
			}
			out.ignored = append(out.ignored, fmt.Sprintf("document %d (%s): not a ClusterConfig", doc, what))
			continue
		}
		configs++
		if out.cluster != "" && cfg.Metadata.Name != "" && cfg.Metadata.Name != out.cluster {
			return nil, fmt.Errorf("document %d is for cluster %q, an earlier one for %q: give one cluster's file", doc, cfg.Metadata.Name, out.cluster)
		}
		if cfg.Metadata.Name != "" {
			out.cluster = cfg.Metadata.Name
		}
		if rest := otherParts(js); len(rest) > 0 {
			out.ignored = append(out.ignored, fmt.Sprintf("document %d (%s): %s", doc, cfg.APIVersion, strings.Join(rest, ", ")))
		}
		for i, raw := range cfg.IAM.PodIdentityAssociations {
			a, err := readEntry(raw, i)
			if err != nil {
				return nil, err
			}
			key := a.Namespace + "/" + a.ServiceAccountName
			if seen[key] {
				return nil, fmt.Errorf("iam.podIdentityAssociations[%d]: %s appears twice", i, key)
			}
			seen[key] = true
			out.entries = append(out.entries, a)
		}
	}
	switch {
	case configs == 0:
		return nil, fmt.Errorf("no ClusterConfig in the file: want eksctl's (eksctl.io/v1alpha5) or Rafay's (rafay.io/v1alpha5)")
	case len(out.entries) == 0:
		return nil, fmt.Errorf("the file has no iam.podIdentityAssociations")
	}
	return out, nil
}

// otherParts are a ClusterConfig's parts other than its associations.
func otherParts(js []byte) []string {
	var doc map[string]any
	if json.Unmarshal(js, &doc) != nil {
		return nil
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(doc)) {
		switch k {
		case "apiVersion", "kind", "metadata":
		case "iam":
			iam, _ := doc[k].(map[string]any)
			for _, ik := range slices.Sorted(maps.Keys(iam)) {
				if ik == "serviceAccounts" {
					out = append(out, "iam.serviceAccounts (IRSA: podid migrate irsa moves such ServiceAccounts)")
				} else if ik != "podIdentityAssociations" {
					out = append(out, "iam."+ik)
				}
			}
		default:
			out = append(out, k)
		}
	}
	return out
}

func readEntry(raw json.RawMessage, i int) (eksctlAssociation, error) {
	var a eksctlAssociation
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return a, fmt.Errorf("iam.podIdentityAssociations[%d]: %w", i, err)
	}
	switch {
	case a.Namespace == "" || a.ServiceAccountName == "":
		return a, fmt.Errorf("iam.podIdentityAssociations[%d]: namespace and serviceAccountName are required", i)
	case a.RoleARN != "" && (a.RoleName != "" || len(a.PermissionPolicyARNs) > 0 || len(a.PermissionPolicy) > 0 || len(a.WellKnownPolicies) > 0 || a.PermissionsBoundaryARN != ""):
		return a, fmt.Errorf("iam.podIdentityAssociations[%d] (%s/%s): roleARN names an existing role; roleName and the permission fields are for a role podid creates: give one or the other", i, a.Namespace, a.ServiceAccountName)
	case a.RoleARN == "" && a.DisableSessionTags:
		return a, fmt.Errorf("iam.podIdentityAssociations[%d] (%s/%s): a role podid creates trusts podid server only with the session tags; disableSessionTags would make it unusable", i, a.Namespace, a.ServiceAccountName)
	}
	return a, nil
}

// generatedRoleName is the name of a role made for an entry without
// roleName: stable, so a re-run finds the same one, within IAM's 64.
func generatedRoleName(cluster, ns, sa string) string {
	name := "podid-" + cluster + "-" + ns + "-" + sa
	if len(name) <= 64 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:55] + "-" + hex.EncodeToString(sum[:4])
}

// rawDocument is a policy given as a YAML map or as a JSON string.
func rawDocument(raw json.RawMessage) (string, error) {
	if len(raw) == 0 {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return "", fmt.Errorf("a policy must be a document (a map) or a JSON string: %w", err)
	}
	b, err := json.Marshal(doc)
	return string(b), err
}

func newAssociationApplyCommand(f *associationFlags) *cobra.Command {
	var file, podidNamespace string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or update the associations of an eksctl or Rafay cluster file (iam.podIdentityAssociations)",
		Long: `Reads eksctl's ClusterConfig, or Rafay's cluster file (a multi-document file with
a rafay.io/v1alpha5 ClusterConfig), and makes the cluster's associations match its
iam.podIdentityAssociations; every other part (node groups, add-ons, IRSA
serviceAccounts, Rafay's Cluster document) is named as ignored: absent ones are created (with their role, when the
entry has no roleARN, as 'create --role-name' does), differing ones updated, equal
ones left. Running it twice changes nothing. --dry-run prints what would change and
changes nothing. Associations the file does not name are left alone.`,
		Example: `  podid association apply -f cluster.yaml --dry-run
  podid association apply -f cluster.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("-f FILE is required (eksctl's ClusterConfig or Rafay's cluster file, or - for standard input)")
			}
			var data []byte
			var err error
			if file == "-" {
				data, err = io.ReadAll(f.streams.In)
			} else {
				data, err = os.ReadFile(file)
			}
			if err != nil {
				return fmt.Errorf("reading %s: %w", file, err)
			}
			parsed, err := readClusterFile(data)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			cluster, entries := parsed.cluster, parsed.entries
			for _, part := range parsed.ignored {
				fmt.Fprintf(f.streams.Err, "ignored (podid applies only iam.podIdentityAssociations): %s\n", part)
			}
			c, host, err := f.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			id, idErr := serveridentity.Read(ctx, c, podidNamespace)
			if idErr == nil && cluster != "" && cluster != id.Cluster.ClusterName {
				return fmt.Errorf("%s is for cluster %q, but podid server in %s speaks for %q: apply it to that cluster", file, cluster, podidNamespace, id.Cluster.ClusterName)
			}
			return f.apply(ctx, c, host, entries, id, idErr, podidNamespace, dryRun)
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "eksctl's ClusterConfig or Rafay's cluster file (- reads standard input)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would change, change nothing")
	f.addScopeFlag(cmd)
	cmd.Flags().StringVar(&podidNamespace, "podid-namespace", "podid-system", "where podid server runs and publishes its AWS identity")
	return cmd
}

// apply makes each entry so, printing one line per entry.
func (f *associationFlags) apply(ctx context.Context, c client.Client, host string, entries []eksctlAssociation, id *serveridentity.Identity, idErr error, podidNamespace string, dryRun bool) error {
	prefix := ""
	if dryRun {
		prefix = "(dry run) "
	}
	var created, updated, unchanged int
	for _, e := range entries {
		want, role, err := e.desired(id, idErr, podidNamespace)
		if err != nil {
			return err
		}
		ref := e.Namespace + "/" + e.ServiceAccountName
		cur, err := associationstore.Get(ctx, c, e.Namespace, e.ServiceAccountName)
		switch {
		case apierrors.IsNotFound(err):
			what := "role " + want.Spec.RoleARN
			if role.name != "" {
				what = "a new role " + role.name
			}
			fmt.Fprintf(f.streams.Out, "%screate %s → %s\n", prefix, ref, what)
			created++
			if dryRun {
				continue
			}
			if _, err := f.createWith(ctx, c, host, want, role); err != nil {
				return fmt.Errorf("%s: %w", ref, err)
			}
		case err != nil:
			return explain(err, host, "ServiceAccount "+ref)
		default:
			if role.name != "" {
				// The role was made before: keep the one the association has.
				want.Spec.RoleARN = cur.Spec().RoleARN
			}
			diff := specDiff(*cur.Spec(), want.Spec)
			if len(diff) == 0 {
				fmt.Fprintf(f.streams.Out, "%sunchanged %s\n", prefix, ref)
				unchanged++
				continue
			}
			fmt.Fprintf(f.streams.Out, "%supdate %s: %s\n", prefix, ref, strings.Join(diff, "; "))
			updated++
			if dryRun {
				continue
			}
			*cur.Spec() = want.Spec
			if err := c.Update(ctx, cur.Object()); err != nil {
				return explain(err, host, "ServiceAccount "+ref)
			}
		}
	}
	fmt.Fprintf(f.streams.Out, "%s%d to create, %d to update, %d unchanged\n", prefix, created, updated, unchanged)
	return nil
}

// desired is the association an entry asks for, and the role to make for
// it (roleFlags with a name) when it names none.
func (e eksctlAssociation) desired(id *serveridentity.Identity, idErr error, podidNamespace string) (*v1alpha1.PodIdentityAssociation, *roleFlags, error) {
	ref := e.Namespace + "/" + e.ServiceAccountName
	pia := &v1alpha1.PodIdentityAssociation{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.Namespace, Name: e.ServiceAccountName},
		Spec: v1alpha1.PodIdentityAssociationSpec{
			ServiceAccount: e.ServiceAccountName, RoleARN: e.RoleARN, TargetRoleARN: e.TargetRoleARN,
			DisableSessionTags: e.DisableSessionTags, Tags: e.Tags,
		},
	}
	policy, err := rawDocument(e.Policy)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: policy: %w", ref, err)
	}
	pia.Spec.Policy = policy
	role := &roleFlags{createServiceAccount: e.CreateServiceAccount, podidNamespace: podidNamespace}
	if e.RoleARN == "" {
		if idErr != nil {
			return nil, nil, fmt.Errorf("%s names no roleARN, so podid makes its role, which needs podid server's identity: %w", ref, idErr)
		}
		role.name = e.RoleName
		if role.name == "" {
			role.name = generatedRoleName(id.Cluster.ClusterName, e.Namespace, e.ServiceAccountName)
		}
		role.policyARNs = e.PermissionPolicyARNs
		role.boundary = e.PermissionsBoundaryARN
		for _, k := range slices.Sorted(maps.Keys(e.WellKnownPolicies)) {
			if e.WellKnownPolicies[k] {
				role.wellKnown = append(role.wellKnown, k)
			}
		}
		if role.permissionPolicy, err = rawDocument(e.PermissionPolicy); err != nil {
			return nil, nil, fmt.Errorf("%s: permissionPolicy: %w", ref, err)
		}
	}
	return pia, role, nil
}

// specDiff lists the fields of want that differ from cur.
func specDiff(cur, want v1alpha1.PodIdentityAssociationSpec) []string {
	var d []string
	if cur.RoleARN != want.RoleARN {
		d = append(d, fmt.Sprintf("roleArn %s → %s", cur.RoleARN, want.RoleARN))
	}
	if cur.TargetRoleARN != want.TargetRoleARN {
		d = append(d, fmt.Sprintf("targetRoleArn %q → %q", cur.TargetRoleARN, want.TargetRoleARN))
	}
	if cur.DisableSessionTags != want.DisableSessionTags {
		d = append(d, fmt.Sprintf("disableSessionTags %v → %v", cur.DisableSessionTags, want.DisableSessionTags))
	}
	if !samePolicy(cur.Policy, want.Policy) {
		d = append(d, "policy changed")
	}
	if !maps.Equal(cur.Tags, want.Tags) && (len(cur.Tags) > 0 || len(want.Tags) > 0) {
		d = append(d, "tags changed")
	}
	return d
}

// samePolicy compares documents as JSON values, not as text.
func samePolicy(a, b string) bool {
	if a == b {
		return true
	}
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}
