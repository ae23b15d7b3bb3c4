package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/cli"
	"github.com/podid/podid/internal/iamrole"
	"github.com/podid/podid/internal/serveridentity"
	"github.com/podid/podid/test/emu/awsemu"
)

// podid runs the CLI as a cluster administrator whose AWS credentials are
// the emulator's admin, through the SDK's standard chain (environment).
func podid(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, cluster.Kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	return podidAs(t, kubeconfig, args...)
}

// podidAs runs the CLI with kubeconfig.
func podidAs(t *testing.T, kubeconfig string, args ...string) (string, string, error) {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", emuAdmin.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", emuAdmin.SecretAccessKey)
	t.Setenv("AWS_ENDPOINT_URL", emuEndpoint)
	t.Setenv("AWS_REGION", identity.Region)
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	var out, errOut bytes.Buffer
	cmd := cli.NewRootCommand(cli.Streams{In: strings.NewReader(""), Out: &out, Err: &errOut})
	cmd.SetArgs(append(args, "--kubeconfig", kubeconfig))
	err := cmd.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

// podid server publishes who it is in AWS, where the CLI reads it.
func TestServerPublishesItsIdentity(t *testing.T) {
	id := serverIdentity(t)
	if id.CallerARN != serverARN || id.PrincipalARN != serverARN || id.RolePathUnknown || id.Cluster.ClusterName != identity.ClusterName || id.Cluster.ClusterARN() != identity.ClusterARN() {
		t.Errorf("published %+v", id)
	}
}

func serverIdentity(t *testing.T) *serveridentity.Identity {
	t.Helper()
	var id *serveridentity.Identity
	eventually(t, "podid server to publish its AWS identity", func(ctx context.Context) (bool, error) {
		got, err := serveridentity.Read(ctx, k8s, agentNamespace)
		id = got
		return err == nil, nil
	})
	return id
}

// A role the CLI makes works for its association, and for no other: STS
// refuses the session tags of another ServiceAccount. Delete takes away
// the role and the ServiceAccount podid made, and nothing else.
func TestRoleMadeForAnAssociation(t *testing.T) {
	serverIdentity(t)
	ctx := t.Context()
	ns := newNamespace(t)
	admin := iam.NewFromConfig(awsConfig(emuAdmin))
	boundary, err := admin.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String("boundary-" + ns),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	policyFile := filepath.Join(t.TempDir(), "policy.json")
	os.WriteFile(policyFile, []byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sqs:SendMessage","Resource":"*"}]}`), 0o600)
	roleName := "made-" + ns[len(ns)-5:]
	out, errOut, err := podid(t, "association", "create", "-n", ns, "--service-account", "app", "--create-service-account",
		"--role-name", roleName, "--role-path", "/podid/", "--well-known-policies", "imageBuilder",
		"--permission-policy-arns", "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess", "--permission-policy", "file://"+policyFile,
		"--permission-boundary-arn", *boundary.Policy.Arn, "--wait", "10s")
	if err != nil {
		t.Fatalf("podid association create: %v\n%s%s", err, out, errOut)
	}
	roleARN := "arn:aws:iam::" + identity.AccountID + ":role/podid/" + roleName
	if !strings.Contains(errOut, "created IAM role "+roleARN) || !strings.Contains(errOut, "created ServiceAccount "+ns+"/app") {
		t.Errorf("the CLI did not say what it made:\n%s", errOut)
	}
	role, err := admin.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(roleName)})
	if err != nil {
		t.Fatal(err)
	}
	trust, _ := iamrole.TrustDocument(*role.Role.AssumeRolePolicyDocument)
	var doc iamrole.Document
	if err := json.Unmarshal([]byte(trust), &doc); err != nil || len(doc.Statement) != 1 || doc.Statement[0].Condition == nil {
		t.Fatalf("trust policy %s", trust)
	}
	if *role.Role.PermissionsBoundary.PermissionsBoundaryArn != *boundary.Policy.Arn {
		t.Errorf("boundary %v", role.Role.PermissionsBoundary)
	}
	attached, _ := admin.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(roleName)})
	inline, _ := admin.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(roleName)})
	if len(attached.AttachedPolicies) != 2 || len(inline.PolicyNames) != 1 {
		t.Errorf("attached %d, inline %d; want 2 and 1", len(attached.AttachedPolicies), len(inline.PolicyNames))
	}
	var sa corev1.ServiceAccount
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, &sa); err != nil || sa.Labels["app.kubernetes.io/managed-by"] != "podid" {
		t.Fatalf("ServiceAccount: %v %v", sa.Labels, err)
	}

	// Its own association: credentials for the role.
	w := &workload{ns: ns, sa: "app"}
	w.pia = getAssociation(t, ns, "app")
	pia := *w.pia
	waitIndexed(t, ns, "app", pia.Generation)
	w.pod = w.newPod(t, "app-0", "node-a")
	got, err := exchange(t, agentClient("node-a"), w.token(t, w.pod))
	if err != nil {
		t.Fatalf("the association's own pod: %v", err)
	}
	if !strings.Contains(*got.AssumedRoleUser.Arn, ":assumed-role/"+roleName+"/") {
		t.Errorf("assumed %s", *got.AssumedRoleUser.Arn)
	}

	// Another ServiceAccount's association naming the same role: refused
	// by STS, so the exchange answers AccessDenied.
	other := newWorkload(t, roleARN, nil)
	_, err = exchange(t, agentClient("node-a"), other.token(t, other.pod))
	if !isAccessDenied(err) {
		t.Fatalf("another association's pod: %v, want AccessDenied", err)
	}

	out, errOut, err = podid(t, "association", "delete", "-n", ns, "--service-account", "app")
	if err != nil {
		t.Fatalf("podid association delete: %v\n%s%s", err, out, errOut)
	}
	if !strings.Contains(errOut, "deleted IAM role "+roleARN) || !strings.Contains(errOut, "deleted ServiceAccount "+ns+"/app") {
		t.Errorf("delete did not say what it removed:\n%s", errOut)
	}
	var api smithy.APIError
	if _, err := admin.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(roleName)}); !errors.As(err, &api) || api.ErrorCode() != "NoSuchEntity" {
		t.Errorf("the created role is still there: %v", err)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, &sa); err == nil {
		t.Error("the created ServiceAccount is still there")
	}
}

// waitIndexed waits until the server's index holds generation of the
// association of ns/sa.
func waitIndexed(t *testing.T, ns, sa string, generation int64) {
	t.Helper()
	eventually(t, "the index to hold the association", func(context.Context) (bool, error) {
		a, ok := srv.Index.Lookup(ns, sa)
		return ok && a.Generation == generation, nil
	})
}

// delete leaves a role podid did not create, even when an association's
// annotation names it, and an existing ServiceAccount.
func TestDeleteLeavesWhatPodidDidNotMake(t *testing.T) {
	serverIdentity(t)
	ctx := t.Context()
	ns := newNamespace(t)
	roleARN := createRole(t, "kept-"+ns[len(ns)-5:], awsemu.PodidTrust(serverARN))
	if err := k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}}); err != nil {
		t.Fatal(err)
	}
	pia := newAssociation(ns, "app", roleARN)
	pia.Annotations = map[string]string{cli.AnnotationCreatedRole: roleARN, cli.AnnotationCreatedServiceAccount: "true"}
	if err := k8s.Create(ctx, pia); err != nil {
		t.Fatal(err)
	}
	writes := emu.IAMWrites()
	_, errOut, err := podid(t, "association", "delete", "-n", ns, "--service-account", "app")
	if err != nil {
		t.Fatalf("delete: %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, "left IAM role "+roleARN+": ") || !strings.Contains(errOut, "not created by podid for this association") {
		t.Errorf("delete did not say it left the role:\n%s", errOut)
	}
	if !strings.Contains(errOut, "left ServiceAccount "+ns+"/app") {
		t.Errorf("delete did not say it left the ServiceAccount:\n%s", errOut)
	}
	if emu.IAMWrites() != writes {
		t.Error("delete wrote to IAM for a role podid did not make")
	}
	var sa corev1.ServiceAccount
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, &sa); err != nil {
		t.Errorf("the ServiceAccount podid did not make is gone: %v", err)
	}
}
