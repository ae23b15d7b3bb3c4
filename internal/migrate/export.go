package migrate

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
)

// Export writes the associations a migration left into dir, so that their
// owners can adopt them: associations.yaml (the objects, as kubectl would
// apply them), eksctl.yaml (an iam.podIdentityAssociations snippet for an
// eksctl or Rafay cluster file) and terraform.tf (aws_eks_pod_identity_association
// resources with import blocks, for podid's EKS API: docs/eks-api.md).
func Export(dir, cluster string, assocs []*v1alpha1.PodIdentityAssociation) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	var manifests, eksctl, tf strings.Builder
	eksctl.WriteString("# iam.podIdentityAssociations of the cluster file (eksctl ClusterConfig or Rafay's), as podid migrate irsa left them.\niam:\n  podIdentityAssociations:\n")
	tf.WriteString("# The associations podid migrate irsa made, for Terraform's AWS provider pointed at podid's EKS API\n# (provider alias and endpoint: docs/eks-api.md).\n")
	for i, a := range assocs {
		// What to apply, and nothing the API server or podid fills in.
		type metadata struct {
			Namespace string            `json:"namespace"`
			Name      string            `json:"name"`
			Labels    map[string]string `json:"labels,omitempty"`
		}
		obj := struct {
			APIVersion string                              `json:"apiVersion"`
			Kind       string                              `json:"kind"`
			Metadata   metadata                            `json:"metadata"`
			Spec       v1alpha1.PodIdentityAssociationSpec `json:"spec"`
		}{v1alpha1.GroupVersion.String(), "PodIdentityAssociation", metadata{a.Namespace, a.Name, a.Labels}, a.Spec}
		data, err := yaml.Marshal(obj)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			manifests.WriteString("---\n")
		}
		manifests.Write(data)
		fmt.Fprintf(&eksctl, "  - namespace: %s\n    serviceAccountName: %s\n    roleARN: %s\n", a.Namespace, a.Spec.ServiceAccount, a.Spec.RoleARN)
		if a.Spec.TargetRoleARN != "" {
			fmt.Fprintf(&eksctl, "    targetRoleARN: %s\n", a.Spec.TargetRoleARN)
		}
		if a.Spec.DisableSessionTags {
			eksctl.WriteString("    disableSessionTags: true\n")
		}
		name := tfName(a.Namespace + "_" + a.Spec.ServiceAccount)
		fmt.Fprintf(&tf, "\nimport {\n  to = aws_eks_pod_identity_association.%s\n  id = %q\n}\n\nresource \"aws_eks_pod_identity_association\" %q {\n  provider        = aws.podid\n  cluster_name    = %q\n  namespace       = %q\n  service_account = %q\n  role_arn        = %q\n",
			name, cluster+","+association.IDFor(a.UID), name, cluster, a.Namespace, a.Spec.ServiceAccount, a.Spec.RoleARN)
		if a.Spec.TargetRoleARN != "" {
			fmt.Fprintf(&tf, "  target_role_arn = %q\n", a.Spec.TargetRoleARN)
		}
		if a.Spec.DisableSessionTags {
			tf.WriteString("  disable_session_tags = true\n")
		}
		tf.WriteString("}\n")
	}
	files := map[string]string{"associations.yaml": manifests.String(), "eksctl.yaml": eksctl.String(), "terraform.tf": tf.String()}
	var written []string
	for _, name := range []string{"associations.yaml", "eksctl.yaml", "terraform.tf"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(files[name]), 0o644); err != nil {
			return written, fmt.Errorf("writing %s: %w", path, err)
		}
		written = append(written, path)
	}
	return written, nil
}

var tfInvalid = regexp.MustCompile(`[^A-Za-z0-9_]`)

// tfName is a Terraform resource name: letters, digits and underscores,
// not starting with a digit.
func tfName(s string) string {
	s = tfInvalid.ReplaceAllString(s, "_")
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		s = "a_" + s
	}
	return s
}
