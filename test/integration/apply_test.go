package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/test/emu/awsemu"
)

// eksctl's ClusterConfig, applied: a dry run changes nothing anywhere, the
// apply makes the associations (and the roles entries without roleARN
// ask for), a second apply changes nothing, an edit is an update.
func TestApplyEksctlFile(t *testing.T) {
	serverIdentity(t)
	ctx := t.Context()
	ns := newNamespace(t)
	existing := createRole(t, "apply-"+ns[len(ns)-5:], awsemu.PodidTrust(serverARN))
	config := `apiVersion: eksctl.io/v1alpha5
kind: ClusterConfig
metadata:
  name: ` + identity.ClusterName + `
  region: ` + identity.Region + `
managedNodeGroups:
  - name: ng-1
iam:
  podIdentityAssociations:
    - namespace: ` + ns + `
      serviceAccountName: web
      roleARN: ` + existing + `
      tags: {team: web}
    - namespace: ` + ns + `
      serviceAccountName: billing
      roleName: apply-billing-` + ns[len(ns)-5:] + `
      createServiceAccount: true
      permissionPolicyARNs: [arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess]
      wellKnownPolicies: {imageBuilder: true}
      permissionPolicy:
        Version: "2012-10-17"
        Statement:
          - {Effect: Allow, Action: ["sqs:SendMessage"], Resource: "*"}
    - namespace: ` + ns + `
      serviceAccountName: worker
`
	file := filepath.Join(t.TempDir(), "cluster.yaml")
	os.WriteFile(file, []byte(config), 0o600)

	writes := emu.IAMWrites()
	out, errOut, err := podid(t, "association", "apply", "-f", file, "--dry-run")
	if err != nil {
		t.Fatalf("dry run: %v\n%s%s", err, out, errOut)
	}
	wantPlan := "(dry run) create " + ns + "/web → role " + existing + "\n" +
		"(dry run) create " + ns + "/billing → a new role apply-billing-" + ns[len(ns)-5:] + "\n" +
		"(dry run) create " + ns + "/worker → a new role podid-" + identity.ClusterName + "-" + ns + "-worker\n" +
		"(dry run) 3 to create, 0 to update, 0 unchanged\n"
	if out != wantPlan {
		t.Errorf("dry run printed:\n%s\nwant:\n%s", out, wantPlan)
	}
	var list v1alpha1.ClusterPodIdentityAssociationList
	if err := k8s.List(ctx, &list, client.MatchingFields{"spec.namespace": ns}); err != nil || len(list.Items) != 0 || emu.IAMWrites() != writes {
		t.Fatalf("the dry run changed something: %d associations, %d IAM writes", len(list.Items), emu.IAMWrites()-writes)
	}

	if out, errOut, err = podid(t, "association", "apply", "-f", file); err != nil {
		t.Fatalf("apply: %v\n%s%s", err, out, errOut)
	}
	if !strings.HasSuffix(out, "3 to create, 0 to update, 0 unchanged\n") || strings.Count(errOut, "created IAM role") != 2 {
		t.Errorf("apply printed:\n%s%s", out, errOut)
	}
	if err := k8s.List(ctx, &list, client.MatchingFields{"spec.namespace": ns}); err != nil || len(list.Items) != 3 {
		t.Fatalf("%d associations after apply: %v", len(list.Items), err)
	}

	writes = emu.IAMWrites()
	if out, errOut, err = podid(t, "association", "apply", "-f", file); err != nil || out != "unchanged "+ns+"/web\nunchanged "+ns+"/billing\nunchanged "+ns+"/worker\n0 to create, 0 to update, 3 unchanged\n" {
		t.Errorf("second apply: %v\n%s%s", err, out, errOut)
	}
	if emu.IAMWrites() != writes {
		t.Errorf("the second apply wrote to IAM %d times", emu.IAMWrites()-writes)
	}

	os.WriteFile(file, []byte(strings.Replace(config, "tags: {team: web}", "tags: {team: web}\n      targetRoleARN: arn:aws:iam::444455556666:role/t", 1)), 0o600)
	if out, errOut, err = podid(t, "association", "apply", "-f", file); err != nil || !strings.Contains(out, `update `+ns+`/web: targetRoleArn "" → "arn:aws:iam::444455556666:role/t"`) {
		t.Errorf("apply of an edit: %v\n%s%s", err, out, errOut)
	}
}

// What the file gets wrong is said before anything is done.
func TestApplyRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	for name, c := range map[string]struct{ body, want string }{
		"not eksctl":    {"apiVersion: v1\nkind: ConfigMap\n", "no ClusterConfig in the file: want eksctl's"},
		"misspelt":      {"apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam:\n  podIdentityAssociations:\n    - {namespace: a, serviceAccount: b, roleARN: r1}\n", `unknown field "serviceAccount"`},
		"both":          {"apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam:\n  podIdentityAssociations:\n    - {namespace: a, serviceAccountName: b, roleARN: r1, roleName: r2}\n", "give one or the other"},
		"twice":         {"apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\niam:\n  podIdentityAssociations:\n    - {namespace: a, serviceAccountName: b, roleARN: r1}\n    - {namespace: a, serviceAccountName: b, roleARN: r2}\n", "a/b appears twice"},
		"other cluster": {"apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\nmetadata: {name: elsewhere}\niam:\n  podIdentityAssociations:\n    - {namespace: a, serviceAccountName: b, roleARN: r1}\n", `is for cluster "elsewhere", but podid server`},
	} {
		t.Run(name, func(t *testing.T) {
			serverIdentity(t)
			file := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
			os.WriteFile(file, []byte(c.body), 0o600)
			_, errOut, err := podid(t, "association", "apply", "-f", file)
			if err == nil || !strings.Contains(err.Error()+errOut, c.want) {
				t.Errorf("err = %v %s, want %q", err, errOut, c.want)
			}
		})
	}
}

// Rafay's RCTL cluster file as its guide prints it, with the cluster's name
// the one edit (podid speaks for its own cluster): its three associations
// are planned — two existing roles, one made from a policy ARN — and every
// part podid does not act on is named as ignored, with nothing changed.
func TestApplyRafayClusterFile(t *testing.T) {
	serverIdentity(t)
	raw, err := os.ReadFile("../../internal/cli/testdata/rafay-cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "rafay.yaml")
	os.WriteFile(file, []byte(strings.ReplaceAll(string(raw), "name: demo-eks-cluster", "name: "+identity.ClusterName)), 0o600)
	writes := emu.IAMWrites()
	out, errOut, err := podid(t, "association", "apply", "-f", file, "--dry-run")
	if err != nil {
		t.Fatalf("dry run: %v\n%s%s", err, out, errOut)
	}
	for _, want := range []string{
		"(dry run) create rafay-demo/rafay-demo → role arn:aws:iam::679196758854:role/demo-eks-full",
		"(dry run) create rafay-demo/rafay-demo2 → role arn:aws:iam::679196758854:role/demo-eks-full",
		"(dry run) create rafay-demo/rafay-demo3 → a new role",
		"(dry run) 3 to create, 0 to update, 0 unchanged",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the plan does not say %q:\n%s", want, out)
		}
	}
	for _, want := range []string{"document 1 (Cluster " + identity.ClusterName + "): not a ClusterConfig", "addons", "managedNodeGroups", "iam.serviceAccounts"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the ignored parts do not name %q:\n%s", want, errOut)
		}
	}
	if emu.IAMWrites() != writes {
		t.Error("the dry run wrote to IAM")
	}
}
