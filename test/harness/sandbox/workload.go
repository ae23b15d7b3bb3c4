package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podid/podid/internal/agent"
	"github.com/podid/podid/test/harness/workload"
)

// RunWorkload is the sample workload's program on the simulated node (run
// by SelfWorkload): package workload's default chain and GetCallerIdentity,
// configured only by the environment a pod gets. It prints one JSON line.
func RunWorkload(ctx context.Context, out *os.File) error {
	id := workload.Ask(ctx, time.Now())
	if id.Error != "" {
		return errors.New(id.Error)
	}
	return json.NewEncoder(out).Encode(id)
}

// PodToken plays the kubelet for pod: it requests the token its projected
// volume asks for, bound to the pod, and writes it where the kubelet would,
// <podsDir>/<uid>/volumes/kubernetes.io~projected/<volume>/<path>. It returns
// the file, or "" when the pod has no projected ServiceAccount token.
func PodToken(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, podsDir string) (string, error) {
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			sat := src.ServiceAccountToken
			if sat == nil {
				continue
			}
			tr, err := cs.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, pod.Spec.ServiceAccountName, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
				Audiences: []string{sat.Audience}, ExpirationSeconds: sat.ExpirationSeconds,
				BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
			}}, metav1.CreateOptions{})
			if err != nil {
				return "", fmt.Errorf("requesting pod %s/%s's token: %w", pod.Namespace, pod.Name, err)
			}
			file := agent.KubeletTokens{Dir: podsDir, Volume: v.Name, File: sat.Path}.Path(string(pod.UID))
			return file, writeFileAtomic(file, []byte(tr.Status.Token))
		}
	}
	return "", nil
}

// ContainerEnv is the environment a container of pod gets, as the kubelet
// would give it, except that a path inside a projected token volume is
// mapped to the token file on the node (a container sees the file at its
// mount path; the sandbox has no mount namespace).
func ContainerEnv(pod *corev1.Pod, container string, tokenFile string) []string {
	var env []string
	for _, c := range pod.Spec.Containers {
		if c.Name != container {
			continue
		}
		for _, e := range c.Env {
			value := e.Value
			for _, m := range c.VolumeMounts {
				if tokenFile != "" && strings.HasPrefix(value, m.MountPath+"/") && strings.HasSuffix(tokenFile, "/"+m.Name+"/"+strings.TrimPrefix(value, m.MountPath+"/")) {
					value = tokenFile
				}
			}
			env = append(env, e.Name+"="+value)
		}
	}
	return env
}

// runSampleWorkload creates the sample pod, shows what the webhook injected,
// writes its token, and runs the workload process on the node.
func (s *Sandbox) runSampleWorkload(ctx context.Context, say func(string, ...any)) (string, error) {
	cs := s.cs
	pod, err := cs.CoreV1().Pods("demo").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", GenerateName: "demo-app-"},
		Spec: corev1.PodSpec{ServiceAccountName: "demo-app", NodeName: NodeName,
			Containers: []corev1.Container{{Name: "app", Image: "demo-app"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("creating the sample pod: %w", err)
	}
	say("pod demo/%s created; podid's webhook injected:", pod.Name)
	for _, e := range pod.Spec.Containers[0].Env {
		say("    %s=%s", e.Name, e.Value)
	}
	file, err := PodToken(ctx, cs, pod, s.node.podsDir)
	if err != nil {
		return "", err
	}
	if file == "" {
		return "", errors.New("the webhook did not give the sample pod a projected token")
	}
	say("its token, bound to the pod, written where the kubelet would: %s", file)
	env := append(ContainerEnv(pod, "app", file),
		"PATH="+os.Getenv("PATH"), "HOME="+os.TempDir(), "AWS_REGION="+s.opts.Identity.Region,
		// AWS itself is out of reach: the SDK's STS calls go to the emulator.
		"AWS_ENDPOINT_URL_STS="+s.node.stsInside)
	where := "on this host's loopback"
	if ns := s.node.netnsName(); ns != "" {
		where = "in network namespace " + ns
	}
	say("running the workload %s: the AWS SDK's default credential chain, then sts:GetCallerIdentity", where)
	result, err := s.RunWorkloadProcess(ctx, env)
	if err != nil {
		return "", err
	}
	say("credentials obtained: %s from %s, expiring %s", result.AccessKeyID, result.Source, result.Expires)
	say("GetCallerIdentity: %s", result.ARN)
	s.saySessionTags(result.AccessKeyID)
	return file, nil
}

// saySessionTags tells the tags of the emulator's session that issued
// accessKeyID.
func (s *Sandbox) saySessionTags(accessKeyID string) {
	if session, ok := s.aws.emulator.Session(accessKeyID); ok {
		var tags []string
		for _, k := range []string{"kubernetes-namespace", "kubernetes-service-account", "kubernetes-pod-name", "eks-cluster-name"} {
			tags = append(tags, k+"="+session.Tags[k])
		}
		s.say("session tags: %s", strings.Join(tags, ", "))
	}
}

// RunWorkloadProcess runs the workload program on the node with env and
// returns what it printed.
func (s *Sandbox) RunWorkloadProcess(ctx context.Context, env []string) (*workload.Identity, error) {
	cmd := s.node.command(ctx, s.opts.WorkloadCommand[0], s.opts.WorkloadCommand[1:]...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("the workload failed: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var r workload.Identity
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("the workload printed %q: %w", stdout.String(), err)
	}
	return &r, nil
}

// workloadEnv marks a process started to be the sample workload.
const workloadEnv = "PODID_SANDBOX_WORKLOAD"

// SelfWorkload is a WorkloadCommand that runs this very executable as the
// workload: programs that start a sandbox (tests, load commands) call
// RunWorkloadIfAsked first thing in main or TestMain.
func SelfWorkload() ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return []string{"env", workloadEnv + "=1", exe}, nil
}

// RunWorkloadIfAsked runs the workload and exits when this process was
// started by SelfWorkload's command; otherwise it returns at once.
func RunWorkloadIfAsked() {
	if os.Getenv(workloadEnv) != "1" {
		return
	}
	if err := RunWorkload(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "workload:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// GetCredentials asks the node's agent for credentials with token, from
// inside the node as a pod would, and returns the status and body.
func (s *Sandbox) GetCredentials(ctx context.Context, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.node.agentURL, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", token)
	resp, err := s.node.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}
