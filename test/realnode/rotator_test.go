package realnode

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/test/emu/registryemu"
)

// testRotatorPullSecret: podid rotator, installed by the chart, gets its
// AWS identity through podid like any workload, turns it into an ECR token
// and writes the pull secret; the kubelet then pulls a pod's image from
// the (emulated) ECR registry with it, and cannot without it.
func testRotatorPullSecret(t *testing.T) {
	ctx := t.Context()
	node := sb.RealNode()
	ecrHost := identity.AccountID + ".dkr.ecr." + identity.Region + ".amazonaws.com"

	// The account's ECR registry, on the node's bridge, admitting only ECR
	// passwords the emulator issued; containerd reaches it as a mirror of
	// the ECR host name, so pods name the image as on AWS.
	reg := registryemu.NewECRRegistry(sb.Emulator(), identity.AccountID, nil)
	reg.AdminPassword = "e2e-push"
	addr := serve(t, net.JoinHostPort(node.IP, "0"), reg, nil)
	if err := node.MirrorRegistry(ecrHost, "http://"+addr); err != nil {
		t.Fatal(err)
	}
	// An image of its own: the kubelet remembers which credentials pulled
	// an image ID, and would then make pods of the preloaded workload image
	// (the same ID) pull it again, from nowhere.
	push(t, addr+"/apps/workload:e2e", relabelled(t, "registry-e2e"), "admin", "e2e-push", true)

	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "registry-e2e", Labels: map[string]string{"registry": "ecr"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.CoreV1().Namespaces().Delete(context.Background(), "registry-e2e", metav1.DeleteOptions{}) })
	rot := &v1alpha1.SecretRotator{
		ObjectMeta: metav1.ObjectMeta{Name: "ecr-e2e"},
		Spec: v1alpha1.SecretRotatorSpec{
			Provider: "ecr", AuthType: "podIdentity", ECR: &v1alpha1.ECRConfig{Region: identity.Region},
			NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"registry": "ecr"}},
			GeneratedSecrets:  []v1alpha1.GeneratedSecret{{SecretName: "ecr-pull"}},
		},
	}
	began := time.Now()
	if err := sb.Client().Create(ctx, rot); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Client().Delete(context.Background(), rot) })
	var st v1alpha1.SecretRotatorStatus
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		var got v1alpha1.SecretRotator
		if err := sb.Client().Get(ctx, client.ObjectKeyFromObject(rot), &got); err != nil {
			return false, nil
		}
		st = got.Status
		c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
		return c != nil && c.Reason == v1alpha1.ReasonRotated, nil
	})
	if err != nil {
		t.Fatalf("the SecretRotator is not Ready: %+v\n%s", st, componentLog(ctx, "rotator", 30))
	}
	t.Logf("figure: SecretRotator created → pull secret written in %s", time.Since(began).Round(time.Millisecond))
	// The rotator's identity is its association's role, through podid.
	if st.AuthType != "podIdentity" {
		t.Errorf("status.authType %q, want podIdentity", st.AuthType)
	}
	if calls := sb.Emulator().ECRTokenCalls(); calls != 1 {
		t.Errorf("%d GetAuthorizationToken calls, want 1", calls)
	}

	pod := func(name string, secrets ...string) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "registry-e2e", Name: name},
			Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "app", Image: ecrHost + "/apps/workload:e2e", ImagePullPolicy: corev1.PullAlways,
					SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false)}}},
				TerminationGracePeriodSeconds: ptr.To[int64](1),
			},
		}
		for _, s := range secrets {
			p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
		}
		return p
	}
	admittedBefore := reg.Admitted()
	if _, err := cs.CoreV1().Pods("registry-e2e").Create(ctx, pod("with-secret", "ecr-pull"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("registry-e2e").Create(ctx, pod("without-secret"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods("registry-e2e").Get(ctx, "with-secret", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		t.Fatalf("the pod with the rotator's pull secret is not running:\n%s%s", podEvents(ctx, "registry-e2e", "with-secret"), podState(ctx, "registry-e2e", "with-secret"))
	}
	if reg.Admitted() == admittedBefore {
		t.Error("the pod runs, but the registry admitted no request: the image did not come from it")
	}
	// The registry answers 401 with a Basic challenge; containerd, holding
	// no credentials for it, reports "pull access denied".
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		return strings.Contains(podEvents(ctx, "registry-e2e", "without-secret"), "pull access denied"), nil
	})
	if err != nil {
		t.Errorf("the pod without a pull secret was not refused by the registry:\n%s%s\nkubelet:\n%s", podEvents(ctx, "registry-e2e", "without-secret"), podState(ctx, "registry-e2e", "without-secret"), logTail(filepath.Join(node.Dir, "logs", "kubelet.log"), 40))
	}
}

func podEvents(ctx context.Context, namespace, pod string) string {
	evs, err := cs.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range evs.Items {
		fmt.Fprintf(&b, "%s %s: %s\n", e.Type, e.Reason, e.Message)
	}
	return b.String()
}

// podState is a pod's phase and its containers' waiting reasons.
func podState(ctx context.Context, namespace, name string) string {
	p, err := cs.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	out := fmt.Sprintf("phase %s", p.Status.Phase)
	for _, c := range p.Status.ContainerStatuses {
		if w := c.State.Waiting; w != nil {
			out += fmt.Sprintf("; %s waiting: %s %s", c.Name, w.Reason, w.Message)
		}
	}
	return out
}

// logTail is the last n lines of a log file.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
