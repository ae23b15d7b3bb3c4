package realnode

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podid/podid/internal/cli"
	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/harness/workload"
)

// testCrossplaneChain follows Upbound's guide for the AWS provider with
// `credentials.source: PodIdentity` on the real node: the role made with
// the guide's trust policy (pods.eks.amazonaws.com) is made usable with
// `podid association create --update-trust` for the guide's namespace and
// ServiceAccount; a pod of that ServiceAccount then resolves credentials
// as the provider does with an assumeRoleChain of two hops (the SDK's
// default chain, then stscreds AssumeRole per hop, the first with an
// external ID) and ends as the last hop's role. The same chain without
// the external ID is refused.
func testCrossplaneChain(t *testing.T) {
	ctx := t.Context()
	const ns, sa = "crossplane-system", "provider-aws-pod-identity"
	admin := iam.NewFromConfig(adminAWS())
	trust, err := os.ReadFile(filepath.Join("..", "guides", "002-crossplane-trust-policy.json"))
	if err != nil {
		t.Fatal(err)
	}
	role := func(name, trust string) string {
		out, err := admin.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(trust)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.Role.Arn)
	}
	provider := role("crossplane-provider-aws-pod-identity", string(trust))
	hop1 := role("crossplane-cross-account", awsemu.TrustPolicy(provider, awsemu.PodidActions, `{"StringEquals":{"sts:ExternalId":"crossplane-external-id"}}`))
	hop2 := role("crossplane-bucket-admin", awsemu.TrustPolicy(hop1, awsemu.PodidActions, ""))
	createNamespaceSA(t, ns, sa)

	asAdminInAWS(t)
	var out, errOut bytes.Buffer
	cmd := cli.NewRootCommand(cli.Streams{In: strings.NewReader(""), Out: &out, Err: &errOut})
	cmd.SetArgs([]string{"association", "create", "--kubeconfig", sb.RealNode().Kubeconfig, "-n", ns, "--service-account", sa, "--role-arn", provider, "--update-trust", "--wait", "60s"})
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatalf("podid association create --update-trust: %v\n%s%s", err, out.String(), errOut.String())
	}
	if !strings.Contains(errOut.String(), "added podid's statement for "+ns+"/"+sa) {
		t.Errorf("create did not say it changed the trust:\n%s", errOut.String())
	}

	chain := hop1 + "|crossplane-external-id," + hop2
	pod := runDeployment(t, ns, "provider-aws-s3", sa, corev1.EnvVar{Name: workload.EnvAssumeRoleChain, Value: chain})
	id, err := sb.PodIdentity(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(id.ARN, "arn:aws:sts::111122223333:assumed-role/crossplane-bucket-admin/") {
		t.Errorf("the provider's chain ended as %s, want the second hop's role", id.ARN)
	}

	// Without the external ID the first hop is refused: the condition is
	// evaluated, not ignored.
	bad := runDeployment(t, ns, "provider-aws-ec2", sa, corev1.EnvVar{Name: workload.EnvAssumeRoleChain, Value: hop1 + "," + hop2})
	if id, err := sb.PodIdentity(ctx, bad); err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Errorf("a chain without the external ID: %v (%+v)", err, id)
	}
	if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Error(err)
	}
}
