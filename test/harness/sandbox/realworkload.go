package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/podid/podid/test/harness/workload"
)

// The sample workload on a real node: an image of test/workload run as
// Deployments and pods, asked over HTTP at its pod IP what its SDK got.
// printPods shows the pods the kubelet runs, as `kubectl get pods -A -o
// wide` would.
func (s *Sandbox) printPods(ctx context.Context) error {
	pods, err := s.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	s.say("the node's pods (kubectl get pods -A -o wide):")
	tw := tabwriter.NewWriter(s.opts.Out, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "      NAMESPACE\tNAME\tREADY\tSTATUS\tIP\tNODE")
	for _, p := range pods.Items {
		ready := 0
		for _, c := range p.Status.ContainerStatuses {
			if c.Ready {
				ready++
			}
		}
		fmt.Fprintf(tw, "      %s\t%s\t%d/%d\t%s\t%s\t%s\n", p.Namespace, p.Name, ready, len(p.Spec.Containers), p.Status.Phase, p.Status.PodIP, p.Spec.NodeName)
	}
	return tw.Flush()
}

// WorkloadDeployment is a Deployment of the sample workload running as
// ServiceAccount sa. The workload reaches the emulator for STS: AWS itself
// is out of reach here (a user's workload would not set this), and EC2
// metadata is turned off so that a pod without credentials fails at once
// instead of looking for an instance.
func (s *Sandbox) WorkloadDeployment(namespace, name, sa string, replicas int32, extraEnv ...corev1.EnvVar) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	env := append([]corev1.EnvVar{
		{Name: "AWS_ENDPOINT_URL_STS", Value: s.aws.endpoint},
		{Name: "AWS_EC2_METADATA_DISABLED", Value: "true"},
	}, extraEnv...)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName:            sa,
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers: []corev1.Container{{
						Name: "app", Image: WorkloadImage, ImagePullPolicy: corev1.PullIfNotPresent,
						Env:   env,
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					}},
				},
			},
		},
	}
}

// runRealSample runs the sample workload as a Deployment and returns its
// pod and the identity its SDK obtained.
func (s *Sandbox) runRealSample(ctx context.Context) (*corev1.Pod, *workload.Identity, error) {
	d := s.WorkloadDeployment("demo", "demo-app", "demo-app", 1)
	if _, err := s.cs.AppsV1().Deployments("demo").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return nil, nil, fmt.Errorf("creating the sample Deployment: %w", err)
	}
	pod, err := s.WaitDeploymentPod(ctx, "demo", "demo-app")
	if err != nil {
		return nil, nil, err
	}
	id, err := s.PodIdentity(ctx, pod)
	if err != nil {
		return nil, nil, err
	}
	return pod, id, nil
}

// WaitDeploymentPod waits for a running pod of Deployment name with an IP.
func (s *Sandbox) WaitDeploymentPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	var found *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := s.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, nil
		}
		for i, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && p.DeletionTimestamp == nil {
				found = &pods.Items[i]
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for a running pod of Deployment %s/%s: %w", namespace, name, err)
	}
	return found, nil
}

// PodIdentity asks a workload pod, at its IP on the node's bridge, who its
// SDK's default chain makes it: a fresh chain and GetCallerIdentity.
func (s *Sandbox) PodIdentity(ctx context.Context, pod *corev1.Pod) (*workload.Identity, error) {
	var id workload.Identity
	if err := s.PodGet(ctx, pod, "/identity", &id); err != nil {
		return nil, err
	}
	if id.Error != "" {
		return &id, fmt.Errorf("pod %s/%s: %s", pod.Namespace, pod.Name, id.Error)
	}
	return &id, nil
}

// PodGet GETs path from a workload pod (on its first container port) and
// decodes its JSON answer, retrying while the pod's server is not
// listening yet.
func (s *Sandbox) PodGet(ctx context.Context, pod *corev1.Pod, path string, into any) error {
	port := "8080"
	if ports := pod.Spec.Containers[0].Ports; len(ports) > 0 {
		port = strconv.Itoa(int(ports[0].ContainerPort))
	}
	url := "http://" + net.JoinHostPort(pod.Status.PodIP, port) + path
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			last = err
			return false, nil
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			last = err
			return false, nil
		}
		return true, json.Unmarshal(body, into)
	})
	if err != nil {
		return fmt.Errorf("GET %s: %w (last: %v)", url, err, last)
	}
	return nil
}

func injectedEnv(pod *corev1.Pod) string {
	var names []string
	for _, e := range pod.Spec.Containers[0].Env {
		if strings.HasPrefix(e.Name, "AWS_CONTAINER_") || e.Name == "AWS_REGION" {
			names = append(names, e.Name)
		}
	}
	return strings.Join(names, ", ")
}
