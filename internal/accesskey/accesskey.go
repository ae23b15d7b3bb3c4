// Package accesskey loads the access keys podid's SigV4-authenticated APIs
// accept (for the stock EKS Pod Identity Agent, the aws CLI, Terraform…),
// from a file an administrator mounts from a Secret.
//
// The file is YAML or JSON:
//
//	keys:
//	- accessKeyId: AKIAPODIDSTOCKAGENT1
//	  secretAccessKey: <40 random characters>
//	  name: stock-agent          # who this is, in logs and the audit trail
//	  node: ip-10-0-1-5          # optional: only pods on this node (EKS Auth)
//	  user: jane@example.com     # optional: the Kubernetes user the EKS API acts as
//	  groups: [platform-admins]  # optional: and its groups
//
// The EKS-compatible association API acts in Kubernetes as the key's user
// (impersonation), so RBAC decides what the key may change and the API
// server's audit log names it; without user the key is
// "podid:access-key:<name>" in group "podid:access-keys".
package accesskey

import (
	"fmt"
	"os"
	"regexp"

	"sigs.k8s.io/yaml"

	"github.com/podid/podid/internal/sigv4"
)

// Entry is one configured key.
type Entry struct {
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
	// Name identifies the holder in logs and audit records.
	Name string `json:"name"`
	// Node, when set, limits EKS Auth exchanges made with this key to pods
	// on that node, as a podid agent's own token does.
	Node string `json:"node,omitempty"`
	// User and Groups are the Kubernetes identity the EKS API impersonates.
	User   string   `json:"user,omitempty"`
	Groups []string `json:"groups,omitempty"`
}

// KubernetesUser is the user the key acts as in Kubernetes.
func (e Entry) KubernetesUser() (string, []string) {
	if e.User != "" {
		return e.User, e.Groups
	}
	return "podid:access-key:" + e.Name, append([]string{"podid:access-keys"}, e.Groups...)
}

type file struct {
	Keys []Entry `json:"keys"`
}

var accessKeyIDPattern = regexp.MustCompile(`^[A-Z0-9]{16,128}$`)

// Parse reads a keys document. Every entry needs an ID of 16-128 upper-case
// letters and digits, a secret of at least 20 characters and a name; IDs
// must be unique.
func Parse(data []byte) ([]sigv4.Key, error) {
	var f file
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("parsing access keys: %w", err)
	}
	seen := map[string]bool{}
	keys := make([]sigv4.Key, 0, len(f.Keys))
	for i, e := range f.Keys {
		switch {
		case !accessKeyIDPattern.MatchString(e.AccessKeyID):
			return nil, fmt.Errorf("access key %d: accessKeyId must be 16-128 upper-case letters and digits", i+1)
		case len(e.SecretAccessKey) < 20:
			return nil, fmt.Errorf("access key %d (%s): secretAccessKey must be at least 20 characters", i+1, e.AccessKeyID)
		case e.Name == "":
			return nil, fmt.Errorf("access key %d (%s): name is required, to say who uses it in the audit trail", i+1, e.AccessKeyID)
		case seen[e.AccessKeyID]:
			return nil, fmt.Errorf("access key %d: accessKeyId %s appears twice", i+1, e.AccessKeyID)
		}
		seen[e.AccessKeyID] = true
		keys = append(keys, sigv4.Key{AccessKeyID: e.AccessKeyID, SecretAccessKey: e.SecretAccessKey, Principal: e})
	}
	return keys, nil
}

// Load reads and parses a keys file.
func Load(path string) ([]sigv4.Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading access keys: %w", err)
	}
	keys, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}
