package realnode

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/podid/podid/internal/cli"
)

// testMigrateRestart: a Deployment on IRSA (the ServiceAccount's role-arn
// annotation, no association: podid's webhook gives its pods IRSA's
// variables) is migrated with --restart: once the association is Ready
// its pods are replaced, and the new ones get Pod Identity's variables
// and the role, through the SDK chain.
func testMigrateRestart(t *testing.T) {
	ctx := t.Context()
	const ns = "migrate-e2e"
	admin := aws.Config{Region: identity.Region, BaseEndpoint: aws.String(sb.Env["PODID_STS_ENDPOINT"]),
		Credentials: credentials.NewStaticCredentialsProvider(sb.Env["AWS_ACCESS_KEY_ID"], sb.Env["AWS_SECRET_ACCESS_KEY"], "")}
	role, err := iam.NewFromConfig(admin).CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("irsa-web"), Path: aws.String("/irsa/"),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/oidc.example"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"oidc.example:sub":"system:serviceaccount:migrate-e2e:web"}}}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web",
		Annotations: map[string]string{"eks.amazonaws.com/role-arn": *role.Role.Arn}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, sb.WorkloadDeployment(ns, "web", "web", 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before, err := sb.WaitDeploymentPod(ctx, ns, "web")
	if err != nil {
		t.Fatal(err)
	}
	if env := envNames(before); !strings.Contains(env, "AWS_ROLE_ARN") || strings.Contains(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI") {
		t.Fatalf("the IRSA pod's variables: %s", env)
	}

	asAdminInAWS(t)
	var out, errOut bytes.Buffer
	cmd := cli.NewRootCommand(cli.Streams{In: strings.NewReader(""), Out: &out, Err: &errOut})
	cmd.SetArgs([]string{"migrate", "irsa", "--kubeconfig", sb.RealNode().Kubeconfig, "-n", ns, "--approve", "--restart", "--remove-annotation", "--remove-oidc-trust",
		// The role trusts the cluster through an IAM OIDC provider of its
		// public issuer's URL, as a self-managed cluster's IRSA does.
		"--oidc-issuer", "https://oidc.example"})
	began := time.Now()
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatalf("podid migrate irsa: %v\n%s%s", err, out.String(), errOut.String())
	}
	t.Logf("figure: podid migrate irsa --restart of one ServiceAccount took %s (association Ready, Deployment restarted)", time.Since(began).Round(time.Millisecond))

	var after *corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, nil
		}
		for i, p := range pods.Items {
			if p.UID != before.UID && p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && p.Status.PodIP != "" {
				after = &pods.Items[i]
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no restarted pod runs:\n%s", out.String())
	}
	if env := envNames(after); strings.Contains(env, "AWS_ROLE_ARN") || !strings.Contains(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI") {
		t.Errorf("the restarted pod's variables: %s", env)
	}
	id, err := sb.PodIdentity(ctx, after)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(id.ARN, ":assumed-role/irsa-web/") {
		t.Errorf("the restarted pod's SDK is %s, want the IRSA role through Pod Identity", id.ARN)
	}
}

func envNames(p *corev1.Pod) string {
	var names []string
	for _, e := range p.Spec.Containers[0].Env {
		names = append(names, e.Name)
	}
	return strings.Join(names, ",")
}

// asAdminInAWS gives the CLI run by the test the sandbox administrator's AWS
// credentials and endpoint, through the SDK's standard chain.
func asAdminInAWS(t *testing.T) {
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": sb.Env["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": sb.Env["AWS_SECRET_ACCESS_KEY"],
		"AWS_ENDPOINT_URL": sb.Env["PODID_STS_ENDPOINT"], "AWS_REGION": identity.Region, "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull} {
		t.Setenv(k, v)
	}
}
