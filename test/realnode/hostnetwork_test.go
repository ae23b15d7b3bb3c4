package realnode

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// hostNetworkPort is where the hostNetwork workload listens, on the node's
// address only.
const hostNetworkPort = 18093

// testHostNetworkPod: a pod on the host's network gets credentials like
// any other. The webhook injects the same variables; the SDK reaches the
// agent at 169.254.170.23 in the host's namespace, where the agent holds
// it; the agent knows the pod by its token, not its address (which is the
// node's, shared with every host-network pod).
func testHostNetworkPod(t *testing.T) {
	ctx := t.Context()
	const ns = "hostnet"
	associate(t, ns, "app")
	d := sb.WorkloadDeployment(ns, "hostnet-app", "app", 1,
		corev1.EnvVar{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		corev1.EnvVar{Name: "LISTEN", Value: "$(POD_IP):18093"})
	spec := &d.Spec.Template.Spec
	spec.HostNetwork = true
	spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: hostNetworkPort}}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err := sb.WaitDeploymentPod(ctx, ns, "hostnet-app")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"} {
		if !hasEnv(pod, name) {
			t.Errorf("the webhook did not inject %s into the hostNetwork pod", name)
		}
	}
	id, err := sb.PodIdentity(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(id.ARN, ":assumed-role/") || !strings.Contains(id.ARN, "/eks-realnode-"+pod.Name+"-") || id.Source != "CredentialsEndpointProvider" {
		t.Errorf("the hostNetwork pod is %s (from %s), want the association's role through the agent", id.ARN, id.Source)
	}
	if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Error(err)
	}
}
