package cli

import (
	"os"
	"strings"
	"testing"
)

// Rafay's cluster file, as its guide prints it: the associations of its
// rafay.io/v1alpha5 ClusterConfig are read, and everything else is named as
// ignored.
func TestReadRafayClusterFile(t *testing.T) {
	data, err := os.ReadFile("testdata/rafay-cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := readClusterFile(data)
	if err != nil {
		t.Fatal(err)
	}
	if f.cluster != "demo-eks-cluster" || len(f.entries) != 3 {
		t.Fatalf("cluster %q, %d entries", f.cluster, len(f.entries))
	}
	e := f.entries[2]
	if e.Namespace != "rafay-demo" || e.ServiceAccountName != "rafay-demo3" || !e.CreateServiceAccount || e.RoleARN != "" ||
		len(e.PermissionPolicyARNs) != 1 || e.PermissionPolicyARNs[0] != "arn:aws:iam::679196758854:policy/demo-eks-full" {
		t.Errorf("third entry = %+v", e)
	}
	ignored := strings.Join(f.ignored, "\n")
	for _, want := range []string{"document 1 (Cluster demo-eks-cluster): not a ClusterConfig", "addons", "managedNodeGroups", "vpc",
		"iam.serviceAccounts (IRSA: podid migrate irsa", "iam.withOIDC"} {
		if !strings.Contains(ignored, want) {
			t.Errorf("ignored parts %q do not name %q", ignored, want)
		}
	}
}

func TestReadClusterFileRefusals(t *testing.T) {
	for name, tc := range map[string]struct{ file, want string }{
		"no ClusterConfig":  {"kind: Cluster\nmetadata: {name: x}\n", "no ClusterConfig in the file"},
		"no associations":   {"apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\nmetadata: {name: x}\n", "no iam.podIdentityAssociations"},
		"misspelt field":    {"apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam:\n  podIdentityAssociations:\n  - {namespace: a, serviceAccountName: b, roleNmae: x}\n", "unknown field"},
		"two clusters":      {"apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\nmetadata: {name: one}\n---\napiVersion: rafay.io/v1alpha5\nkind: ClusterConfig\nmetadata: {name: two}\n", `for cluster "two", an earlier one for "one"`},
		"duplicate entries": {"apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam:\n  podIdentityAssociations:\n  - {namespace: a, serviceAccountName: b, roleARN: x}\n  - {namespace: a, serviceAccountName: b, roleARN: \"arn:y\"}\n", "a/b appears twice"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := readClusterFile([]byte(tc.file)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzReadClusterFile: any input is a cluster file or an error, never a panic.
func FuzzReadClusterFile(f *testing.F) {
	if data, err := os.ReadFile("testdata/rafay-cluster.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam:\n  podIdentityAssociations:\n  - {namespace: a, serviceAccountName: b, roleARN: x}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if cf, err := readClusterFile(data); err == nil && len(cf.entries) == 0 {
			t.Fatal("a file without associations was accepted")
		}
	})
}
