// Package e2e tests the whole of podid as a user meets it: `podid-sandbox`
// brings up the API server, podid server with its webhook, a node with
// podid agent and the STS emulator, and the tests then drive it only through
// what sandbox.env gives a user: the kubeconfig, the EKS-compatible API, the
// emulator's IAM, the node's namespace and its pods directory (the tests play
// the kubelet there), and a workload process using the AWS SDK's default
// credential chain on the node.
package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/harness/sandbox"
	"github.com/podid/podid/test/harness/workload"
)

var (
	sb  *sandbox.Sandbox
	env map[string]string
	cs  *kubernetes.Clientset
)

func TestMain(m *testing.M) {
	sandbox.RunWorkloadIfAsked()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "podid-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	workload, err := sandbox.SelfWorkload()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	var out strings.Builder
	sb, err = sandbox.Start(context.Background(), sandbox.Options{Dir: dir, Identity: sandbox.DefaultIdentity, Out: &out, WorkloadCommand: workload})
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: the sandbox did not come up: %v\n%s", err, out.String())
		return 1
	}
	defer sb.Stop()
	env = sb.Env
	cfg, err := clientcmd.BuildConfigFromFlags("", env["KUBECONFIG"])
	if err == nil {
		cs, err = kubernetes.NewForConfig(cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}

func awsConfig(endpoint string) aws.Config {
	return aws.Config{Region: env["AWS_REGION"], BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], "")}
}

// eksClient reaches podid's EKS-compatible API, as `aws eks` with an
// endpoint override would.
func eksClient() *eks.Client { return eks.NewFromConfig(awsConfig(env["PODID_SERVER_URL"])) }

// newRole creates a role in the emulator that trusts podid server.
func newRole(t testing.TB, name string) string {
	t.Helper()
	out, err := iam.NewFromConfig(awsConfig(env["PODID_STS_ENDPOINT"])).CreateRole(context.Background(), &iam.CreateRoleInput{
		RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(awsemu.PodidTrust(env["PODID_SERVER_ROLE_PRINCIPAL"])),
	})
	if err != nil {
		t.Fatalf("creating role %s: %v", name, err)
	}
	return *out.Role.Arn
}

// newNamespaceAndServiceAccount makes a namespace with one ServiceAccount.
func newNamespaceAndServiceAccount(t testing.TB, sa string) string {
	t.Helper()
	ctx := context.Background()
	ns := "e2e-" + rand.String(6)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns
}

// startPod creates a pod on the sandbox's node, as a Deployment's would be,
// and plays the kubelet: its token is written into the node's pods
// directory. It returns the admitted pod and the token file.
func startPod(t testing.TB, ns, sa string) (*corev1.Pod, string) {
	t.Helper()
	ctx := context.Background()
	pod, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: sa + "-"},
		Spec: corev1.PodSpec{ServiceAccountName: sa, NodeName: env["PODID_NODE_NAME"],
			Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a pod: %v", err)
	}
	file, err := sandbox.PodToken(ctx, cs, pod, env["PODID_KUBELET_PODS_DIR"])
	if err != nil {
		t.Fatal(err)
	}
	return pod, file
}

// runWorkload runs the workload process on the node with the pod's
// environment and returns who the SDK's default chain made it.
func runWorkload(t *testing.T, pod *corev1.Pod, tokenFile string) (*workload.Identity, error) {
	t.Helper()
	e := append(sandbox.ContainerEnv(pod, "app", tokenFile),
		"PATH="+os.Getenv("PATH"), "HOME="+os.TempDir(), "AWS_REGION="+env["AWS_REGION"],
		"AWS_ENDPOINT_URL_STS="+env["PODID_NODE_STS_ENDPOINT"])
	return sb.RunWorkloadProcess(t.Context(), e)
}

func envOf(pod *corev1.Pod) map[string]string {
	m := map[string]string{}
	for _, e := range pod.Spec.Containers[0].Env {
		m[e.Name] = e.Value
	}
	return m
}

func TestWholePath(t *testing.T) {
	ctx := t.Context()
	first, second := newRole(t, "e2e-first-"+rand.String(4)), newRole(t, "e2e-second-"+rand.String(4))
	ns := newNamespaceAndServiceAccount(t, "app")

	// An association through the EKS API, and a pod right after it.
	created, err := eksClient().CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{
		ClusterName: aws.String(env["PODID_CLUSTER_NAME"]), Namespace: aws.String(ns), ServiceAccount: aws.String("app"), RoleArn: aws.String(first),
	})
	if err != nil {
		t.Fatal(err)
	}
	id := created.Association.AssociationId
	pod, tokenFile := startPod(t, ns, "app")
	got := envOf(pod)
	if got["AWS_CONTAINER_CREDENTIALS_FULL_URI"] != env["PODID_AGENT_URL"] || !strings.HasSuffix(got["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"], "/eks-pod-identity-token") {
		t.Fatalf("the pod was not mutated as it should be: env %v", got)
	}
	if pod.Labels["eks.amazonaws.com/pod-identity"] != "enabled" || len(pod.Spec.Volumes) == 0 {
		t.Fatalf("the pod lacks the label or the token volume: %v %v", pod.Labels, pod.Spec.Volumes)
	}

	who, err := runWorkload(t, pod, tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	wantPrefix := strings.Replace(first, ":iam::", ":sts::", 1)
	wantPrefix = strings.Replace(wantPrefix, ":role/", ":assumed-role/", 1) + "/eks-" + env["PODID_CLUSTER_NAME"] + "-" + pod.Name + "-"
	if !strings.HasPrefix(who.ARN, wantPrefix) || who.Source != "CredentialsEndpointProvider" {
		t.Fatalf("the workload is %s (source %s), want %s…", who.ARN, who.Source, wantPrefix)
	}
	t.Logf("pod %s: %s", pod.Name, who.ARN)
	session, ok := sb.Emulator().Session(who.AccessKeyID)
	if !ok {
		t.Fatalf("the emulator did not issue %s", who.AccessKeyID)
	}
	for k, want := range map[string]string{
		"eks-cluster-name": env["PODID_CLUSTER_NAME"], "kubernetes-namespace": ns, "kubernetes-service-account": "app",
		"kubernetes-pod-name": pod.Name, "kubernetes-pod-uid": string(pod.UID),
	} {
		if session.Tags[k] != want {
			t.Errorf("session tag %s = %q, want %q", k, session.Tags[k], want)
		}
	}
	if !strings.HasPrefix(session.Tags["eks-cluster-arn"], "arn:aws:eks:") {
		t.Errorf("session tag eks-cluster-arn = %q", session.Tags["eks-cluster-arn"])
	}

	// The association moves to another role: new pods get it.
	if _, err := eksClient().UpdatePodIdentityAssociation(ctx, &eks.UpdatePodIdentityAssociationInput{
		ClusterName: aws.String(env["PODID_CLUSTER_NAME"]), AssociationId: id, RoleArn: aws.String(second),
	}); err != nil {
		t.Fatal(err)
	}
	secondRole := strings.TrimPrefix(second[strings.LastIndex(second, "/"):], "/")
	eventually(t, "a new pod to get the updated role", func() (bool, error) {
		pod, tokenFile := startPod(t, ns, "app")
		who, err := runWorkload(t, pod, tokenFile)
		if err != nil {
			return false, err
		}
		t.Logf("pod %s after the update: %s", pod.Name, who.ARN)
		return strings.Contains(who.ARN, ":assumed-role/"+secondRole+"/"), nil
	})

	// A pod admitted while the association existed, started after it was
	// deleted: refused.
	late, lateToken := startPod(t, ns, "app")
	if _, err := eksClient().DeletePodIdentityAssociation(ctx, &eks.DeletePodIdentityAssociationInput{
		ClusterName: aws.String(env["PODID_CLUSTER_NAME"]), AssociationId: id,
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted association to be refused", func() (bool, error) {
		_, err := runWorkload(t, late, lateToken)
		t.Logf("pod %s after the delete: %v", late.Name, err)
		return err != nil && strings.Contains(err.Error(), "ResourceNotFound"), nil
	})
	// And new pods are no longer mutated.
	after, _ := startPod(t, ns, "app")
	if _, ok := envOf(after)["AWS_CONTAINER_CREDENTIALS_FULL_URI"]; ok {
		t.Fatal("a pod was mutated after its ServiceAccount's association was deleted")
	}
}

// A namespace labelled podid.io/inject=false is never sent to the webhook.
func TestNamespaceOptOut(t *testing.T) {
	ctx := t.Context()
	ns := newNamespaceAndServiceAccount(t, "app")
	nsObj, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Labels["podid.io/inject"] = "false"
	if _, err := cs.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := eksClient().CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{
		ClusterName: aws.String(env["PODID_CLUSTER_NAME"]), Namespace: aws.String(ns), ServiceAccount: aws.String("app"), RoleArn: aws.String(newRole(t, "e2e-optout-"+rand.String(4))),
	}); err != nil {
		t.Fatal(err)
	}
	pod, _ := startPod(t, ns, "app")
	if len(envOf(pod)) != 0 {
		t.Fatalf("a pod in an opted-out namespace was mutated: %v", envOf(pod))
	}
}

func eventually(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("waiting for %s: last error %v", what, last)
}

// Migration from IRSA: a ServiceAccount with the role-arn annotation gets
// IRSA's injection until it has an association; from then on new pods get
// Pod Identity instead, the annotation notwithstanding.
func TestIRSAThenPodIdentity(t *testing.T) {
	ctx := t.Context()
	ns := newNamespaceAndServiceAccount(t, "legacy")
	sa, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "legacy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sa.Annotations = map[string]string{"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/legacy-irsa"}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Update(ctx, sa, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, tokenFile := startPod(t, ns, "legacy")
	got := envOf(pod)
	if got["AWS_ROLE_ARN"] != "arn:aws:iam::111122223333:role/legacy-irsa" || got["AWS_WEB_IDENTITY_TOKEN_FILE"] != "/var/run/secrets/eks.amazonaws.com/serviceaccount/token" {
		t.Fatalf("IRSA was not injected: %v", got)
	}
	if _, ok := got["AWS_CONTAINER_CREDENTIALS_FULL_URI"]; ok || !strings.HasSuffix(tokenFile, "/aws-token/token") {
		t.Fatalf("an IRSA pod got Pod Identity's variables, or its token went to %s", tokenFile)
	}

	role := newRole(t, "e2e-migrated-"+rand.String(4))
	if _, err := eksClient().CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{
		ClusterName: aws.String(env["PODID_CLUSTER_NAME"]), Namespace: aws.String(ns), ServiceAccount: aws.String("legacy"), RoleArn: aws.String(role),
	}); err != nil {
		t.Fatal(err)
	}
	migrated, tokenFile := startPod(t, ns, "legacy")
	got = envOf(migrated)
	if _, ok := got["AWS_ROLE_ARN"]; ok || got["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == "" {
		t.Fatalf("after the association, the pod should have Pod Identity only: %v", got)
	}
	who, err := runWorkload(t, migrated, tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(who.ARN, ":assumed-role/"+role[strings.LastIndex(role, "/")+1:]+"/") {
		t.Fatalf("the migrated pod is %s, want the association's role %s", who.ARN, role)
	}
}
