// Package realnode tests podid as users install it, on a real node: a
// kubelet and containerd run the pods, kube-proxy and CoreDNS give Services
// and names, and podid is installed by `helm install charts/podid` with the
// images built here (package localnode, through `podid-sandbox`'s real-node
// mode). Workloads are pods running an ordinary aws-sdk-go-v2 program.
//
// It needs Linux, root and the node's binaries (`hack/tools.sh`); elsewhere
// every test skips saying why, except with PODID_REALNODE=require (CI),
// where a machine that cannot run the node fails the run.
//
// Tokens are projected for 600 s (the least the API server allows) and
// credentials last 25 min here, so that the kubelet's rotation (at about
// 80 % of 600 s) and the agent's background renewal (20 min before expiry,
// so 5 min in) both happen within the run. The checks that
// wait for them are observed in the background, on pods started first.
package realnode

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/test/harness/sandbox"
)

var (
	sb      *sandbox.Sandbox
	cs      kubernetes.Interface
	skipWhy string
	// upTime is how long the sandbox took to come up on the real node.
	upTime time.Duration
	// restrictedPod runs as user 1000 with fsGroup 2000, from the start.
	restrictedPod *corev1.Pod
)

var identity = association.Identity{Partition: "aws", Region: "us-east-1", AccountID: "111122223333", ClusterName: "realnode"}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if why := sandbox.RealNodeUnavailable(); why != nil {
		if os.Getenv("PODID_REALNODE") == "require" {
			fmt.Fprintf(os.Stderr, "realnode: PODID_REALNODE=require, but this machine cannot run a real node: %v\n", why)
			return 1
		}
		skipWhy = "this machine cannot run a real node: " + why.Error()
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "podid-realnode-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "realnode:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	began := time.Now()
	sb, err = sandbox.Start(ctx, sandbox.Options{
		Dir: dir, Identity: identity, Out: os.Stderr, Node: sandbox.NodeReal,
		RealNode: sandbox.RealNodeOptions{TokenExpirationSeconds: 600, SessionDuration: "25m", Rotator: true,
			CredentialProvider: credentialProviderOptions, IdentityCertificateLifetime: "3m"},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "realnode: the sandbox did not come up on the real node: %v\n", err)
		return 1
	}
	defer sb.Stop()
	upTime = time.Since(began)
	cs = sb.RealNode().Clientset
	// The long-running checks' pods start now, so that the kubelet's
	// rotation and the agent's renewal happen while the other tests run.
	if restrictedPod, err = startRestricted(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "realnode:", err)
		return 1
	}
	return m.Run()
}

func skipUnlessNode(t *testing.T) {
	t.Helper()
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
}

// associate creates ServiceAccount sa in namespace (creating it) and its
// association with the sandbox's sample role.
func associate(t *testing.T, namespace, sa string) {
	t.Helper()
	ctx := t.Context()
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pia := &v1alpha1.PodIdentityAssociation{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: sa},
		Spec:       v1alpha1.PodIdentityAssociationSpec{ServiceAccount: sa, RoleARN: sb.Env["PODID_SAMPLE_ROLE_ARN"]},
	}
	if err := sb.Client().Create(ctx, pia); err != nil {
		t.Fatal(err)
	}
	if err := sb.WaitAssociationReady(ctx, pia); err != nil {
		t.Fatal(err)
	}
}

// assumeRoleCalls counts the emulator's granted AssumeRole calls for a pod.
func assumeRoleCalls(podUID string) int {
	n := 0
	for _, c := range sb.Emulator().AssumeRoleCalls() {
		if c.Code == "" && c.Session != nil && c.Session.Tags["kubernetes-pod-uid"] == podUID {
			n++
		}
	}
	return n
}

// startRestricted runs a workload as runAsUser 1000 with fsGroup 2000: the
// kubelet then writes its token owned by that user with mode 0600.
func startRestricted(ctx context.Context) (*corev1.Pod, error) {
	d := sb.WorkloadDeployment("demo", "restricted", "demo-app", 1)
	d.Spec.Template.Spec.SecurityContext = &corev1.PodSecurityContext{
		RunAsUser: ptr.To[int64](1000), RunAsGroup: ptr.To[int64](1000), FSGroup: ptr.To[int64](2000),
	}
	if _, err := cs.AppsV1().Deployments("demo").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	pod, err := sb.WaitDeploymentPod(ctx, "demo", "restricted")
	if err != nil {
		return nil, err
	}
	if _, err := sb.PodIdentity(ctx, pod); err != nil {
		return nil, fmt.Errorf("the restricted pod got no credentials: %w", err)
	}
	return pod, nil
}
