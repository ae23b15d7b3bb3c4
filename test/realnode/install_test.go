package realnode

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/podid/podid/internal/agent"
	"github.com/podid/podid/test/harness/workload"
)

// TestRealNode runs the checks in order, the fast ones first. The checks
// that wait for the kubelet's rotation and the agent's renewal, on pods
// started in TestMain, are observed in the background from the start and
// reported once the steps that leave the agent alone are done; then come
// those that restart it.
func TestRealNode(t *testing.T) {
	skipUnlessNode(t)
	t.Logf("figure: sandbox up on the real node (node, images, chart, sample workload) in %.1fs; chart install → all podid pods Ready in %.1fs", upTime.Seconds(), sb.ChartInstallTime().Seconds())
	rotation := inBackground(t.Context(), watchRotation)
	renewal := inBackground(t.Context(), watchRestrictedRenewal)
	for _, step := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"chart installed as shipped", testChartInstalled},
		{"podid's AWS identity is a Roles Anywhere session; no AWS key in any pod or Secret", testNoAWSKey},
		{"workload identity through the SDK chain", testWorkloadIdentity},
		{"EKS API from the host, and an association outliving its namespace", testEKSAPIFromTheHost},
		{"Crossplane's guide: a role trusting EKS, --update-trust, a two-hop chain in a pod", testCrossplaneChain},
		{"a hostNetwork pod gets credentials", testHostNetworkPod},
		{"pod deleted is forgotten", testPodForgotten},
		{"rotator's pull secret pulls a pod's image", testRotatorPullSecret},
		{"kubelet credential provider pulls with the pod's role", testCredentialProvider},
		{"IRSA workload migrated and restarted onto Pod Identity", testMigrateRestart},
		{"doctor names what users break", testDoctor},
		{"token rotated by the kubelet", rotation},
		{"restricted pod renewed in the background", renewal},
		// They restart the agent and podid server, so they run once the
		// background checks, which watch the agent's cache, are done.
		{"doctor names an agent or a server down", testDoctorNodeDown},
		{"pods wait for the node's agent (startup taint)", testStartupTaint},
		{"a node joins with the startup taint and pods waiting for it", testNodeRegisteredWithTaint},
		{"faults under load", testFaultsUnderLoad},
		{"podid's Roles Anywhere certificate renewed during the run", testIdentityRenewed},
	} {
		if !t.Run(step.name, step.fn) && step.name == "chart installed as shipped" {
			t.Fatal("podid is not installed; the other checks would only repeat it")
		}
	}
}

func testChartInstalled(t *testing.T) {
	ctx := t.Context()
	// The sandbox saw every podid pod Ready; the controllers write the
	// Deployment's and DaemonSet's status after that, later on a loaded
	// machine.
	var state string
	if err := wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments("podid-system").Get(ctx, "podid-server", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ds, err := cs.AppsV1().DaemonSets("podid-system").Get(ctx, "podid-agent", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		state = fmt.Sprintf("podid-server: %d replicas available, want 2; podid-agent: %d ready of %d desired, want 1 of 1",
			d.Status.AvailableReplicas, ds.Status.NumberReady, ds.Status.DesiredNumberScheduled)
		return d.Status.AvailableReplicas == 2 && ds.Status.DesiredNumberScheduled == 1 && ds.Status.NumberReady == 1, nil
	}); err != nil {
		t.Fatalf("%s (%v); pods:\n%s", state, err, sb.PodsReport(ctx))
	}
	pods, err := cs.CoreV1().Pods("podid-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=agent"})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("agent pods: %v (%d)", err, len(pods.Items))
	}
	agent := pods.Items[0]
	if !agent.Spec.HostNetwork || agent.Spec.NodeName != sb.RealNode().Name {
		t.Errorf("agent pod: hostNetwork %v on node %q, want true on %q", agent.Spec.HostNetwork, agent.Spec.NodeName, sb.RealNode().Name)
	}
	// Its addresses, then the kubelet credential provider's installation.
	if n := len(agent.Status.InitContainerStatuses); n != 2 {
		t.Errorf("the agent has %d init containers, want 2", n)
	}
	for _, c := range agent.Status.InitContainerStatuses {
		if c.State.Terminated == nil || c.State.Terminated.ExitCode != 0 {
			t.Errorf("the agent's init container %s did not complete: %+v", c.Name, c.State)
		}
	}
	wh, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "podid", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(wh.Webhooks) == 0 || len(wh.Webhooks[0].ClientConfig.CABundle) == 0 || wh.Webhooks[0].ClientConfig.Service == nil {
		t.Errorf("webhook configuration: want a Service and the caBundle podid server keeps, got %+v", wh.Webhooks)
	}
}

func testWorkloadIdentity(t *testing.T) {
	ctx := t.Context()
	pod, err := sb.WaitDeploymentPod(ctx, "demo", "demo-app")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_REGION"} {
		if !hasEnv(pod, name) {
			t.Errorf("the webhook did not inject %s into pod %s", name, pod.Name)
		}
	}
	id, err := sb.PodIdentity(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`^arn:aws:sts::111122223333:assumed-role/demo-app/eks-realnode-` + regexp.QuoteMeta(pod.Name) + `-[0-9a-f-]+$`)
	if !want.MatchString(id.ARN) {
		t.Errorf("GetCallerIdentity: %s, want the association's role with session eks-realnode-%s-…", id.ARN, pod.Name)
	}
	if id.Source != "CredentialsEndpointProvider" {
		t.Errorf("credentials came from %q, want the container credentials endpoint", id.Source)
	}
	session, ok := sb.Emulator().Session(id.AccessKeyID)
	if !ok {
		t.Fatalf("the emulator did not issue %s", id.AccessKeyID)
	}
	wantTags := map[string]string{
		"eks-cluster-arn":            "arn:aws:eks:us-east-1:111122223333:cluster/realnode",
		"eks-cluster-name":           "realnode",
		"kubernetes-namespace":       "demo",
		"kubernetes-service-account": "demo-app",
		"kubernetes-pod-name":        pod.Name,
		"kubernetes-pod-uid":         string(pod.UID),
	}
	for k, v := range wantTags {
		if session.Tags[k] != v {
			t.Errorf("session tag %s = %q, want %q", k, session.Tags[k], v)
		}
	}
	if len(session.Tags) != len(wantTags) {
		t.Errorf("session tags %v, want exactly %v", session.Tags, wantTags)
	}
}

func hasEnv(pod *corev1.Pod, name string) bool {
	for _, e := range pod.Spec.Containers[0].Env {
		if e.Name == name {
			return true
		}
	}
	return false
}

// testPodForgotten: a deleted pod leaves the agent's cache within seconds,
// and a new pod of the same name gets credentials of its own.
func testPodForgotten(t *testing.T) {
	ctx := t.Context()
	pod := workloadPod("demo", "forget-me", "demo-app")
	first, err := runPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	before, err := agentMetric(ctx, "podid_agent_cached_pods")
	if err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	if err := cs.CoreV1().Pods("demo").Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		n, err := agentMetric(ctx, "podid_agent_cached_pods")
		return err == nil && n == before-1, nil
	})
	if err != nil {
		t.Fatalf("the agent still caches the deleted pod 30s later (podid_agent_cached_pods stays %v)", before)
	}
	t.Logf("figure: pod deleted → dropped from the agent's cache in %.2fs", time.Since(deleted).Seconds())
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Pods("demo").Get(ctx, pod.Name, metav1.GetOptions{})
		return err != nil, nil
	}); err != nil {
		t.Fatal("the deleted pod did not go")
	}
	again, err := runPod(ctx, workloadPod("demo", "forget-me", "demo-app"))
	if err != nil {
		t.Fatal(err)
	}
	if again.id.AccessKeyID == first.id.AccessKeyID {
		t.Errorf("the new pod of the same name was served the old pod's credentials %s", first.id.AccessKeyID)
	}
	if s, _ := sb.Emulator().Session(again.id.AccessKeyID); s.Tags["kubernetes-pod-uid"] != string(again.pod.UID) {
		t.Errorf("the new pod's session is tagged with pod UID %q, want %q", s.Tags["kubernetes-pod-uid"], again.pod.UID)
	}
	_ = cs.CoreV1().Pods("demo").Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
}

// workloadPod is a bare pod of the sample workload on the node.
func workloadPod(namespace, name, sa string) *corev1.Pod {
	tmpl := sb.WorkloadDeployment(namespace, name, sa, 1).Spec.Template
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: tmpl.Labels}, Spec: tmpl.Spec}
}

type ranPod struct {
	pod *corev1.Pod
	id  *workload.Identity
}

// runPod creates pod, waits for it to run and asks it for its identity.
func runPod(ctx context.Context, pod *corev1.Pod) (*ranPod, error) {
	created, err := cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	if _, err := sb.RealNode().PodIP(ctx, created.Namespace, created.Name); err != nil {
		return nil, err
	}
	if created, err = cs.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{}); err != nil {
		return nil, err
	}
	id, err := sb.PodIdentity(ctx, created)
	if err != nil {
		return nil, err
	}
	return &ranPod{pod: created, id: id}, nil
}

// agentMetric reads one of the node agent's gauges or counters (summed over
// labels) from its metrics port, on the host's loopback.
func agentMetric(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:2705/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	sum, found := 0.0, false
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, err
		}
		sum, found = sum+v, true
	}
	if !found {
		return 0, fmt.Errorf("the agent exports no %s", name)
	}
	return sum, nil
}

// tokenFile reads a pod's projected Pod Identity token where the kubelet
// wrote it.
func tokenFile(pod *corev1.Pod) (string, os.FileInfo, error) {
	path := agent.KubeletTokens{}.Path(string(pod.UID))
	fi, err := os.Stat(path)
	if err != nil {
		return "", nil, err
	}
	data, err := os.ReadFile(path)
	return string(data), fi, err
}
