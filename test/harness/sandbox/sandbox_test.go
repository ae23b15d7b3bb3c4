package sandbox

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eks"
)

// The sandbox runs its sample workload as a process; in tests, this test
// binary is that process.
func TestMain(m *testing.M) {
	RunWorkloadIfAsked()
	os.Exit(m.Run())
}

// syncBuffer lets the test read the narration while Up writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestUpWritesEnvAndMarksSampleReady(t *testing.T) {
	testUp(t, false)
}

// Without root (or when asked) the node is the host's loopback: the agent
// listens there, pods are given its address, and the rest is the same.
func TestUpOnLoopback(t *testing.T) {
	testUp(t, true)
}

func testUp(t *testing.T, loopback bool) {
	dir := t.TempDir()
	var out syncBuffer
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Up(ctx, Options{Dir: dir, Identity: DefaultIdentity, Out: &out, Ready: ready, WorkloadCommand: workloadCommand(t), Loopback: loopback})
	}()

	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("sandbox stopped before it was up: %v\n%s", err, out.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("sandbox not up after 2 minutes:\n%s", out.String())
	}
	env, err := os.ReadFile(filepath.Join(dir, "sandbox.env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"KUBECONFIG=", "PODID_CLUSTER_NAME=\"sandbox\"", "AWS_REGION=\"us-east-1\"", "PODID_SERVER_URL=\"http://127.0.0.1:",
		"PODID_STS_ENDPOINT=\"http://127.0.0.1:", "AWS_ACCESS_KEY_ID=\"AKIA", "AWS_SECRET_ACCESS_KEY=", "PODID_AGENT_URL=\"http://", "PODID_NODE_NETNS="} {
		if !strings.Contains(string(env), want) {
			t.Errorf("sandbox.env lacks %s:\n%s", want, env)
		}
	}
	if !strings.Contains(out.String(), "receive credentials for arn:aws:iam::111122223333:role/demo-app (Associated)") {
		t.Errorf("narration does not show the sample association in force:\n%s", out.String())
	}
	for _, want := range []string{"AWS_CONTAINER_CREDENTIALS_FULL_URI=http://", "written where the kubelet would", "credentials obtained: ASIA",
		"GetCallerIdentity: arn:aws:sts::111122223333:assumed-role/demo-app/eks-sandbox-demo-app-", "kubernetes-namespace=demo"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("narration lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "sandbox.pid")); err != nil {
		t.Errorf("no pid file while up: %v", err)
	}
	if loopback || os.Geteuid() != 0 {
		if !strings.Contains(string(env), `PODID_NODE_NETNS=""`) || !strings.Contains(string(env), `PODID_AGENT_URL="http://127.0.0.1:`) {
			t.Errorf("on loopback, sandbox.env should have no namespace and a loopback agent:\n%s", env)
		}
	} else if !strings.Contains(string(env), `PODID_NODE_NETNS="podid-sandbox-`) || !strings.Contains(string(env), `PODID_AGENT_URL="http://169.254.170.23/v1/credentials"`) {
		t.Errorf("as root, the node should be a namespace with the agent on 169.254.170.23:\n%s", env)
	}
	// The env file's endpoint and key reach the EKS association API.
	vars := map[string]string{}
	for _, line := range strings.Split(string(env), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok {
			vars[k] = strings.Trim(v, `"`)
		}
	}
	c := eks.New(eks.Options{Region: vars["AWS_REGION"], BaseEndpoint: aws.String(vars["PODID_SERVER_URL"]),
		Credentials: credentials.NewStaticCredentialsProvider(vars["AWS_ACCESS_KEY_ID"], vars["AWS_SECRET_ACCESS_KEY"], "")})
	list, err := c.ListPodIdentityAssociations(t.Context(), &eks.ListPodIdentityAssociationsInput{ClusterName: aws.String(vars["PODID_CLUSTER_NAME"])})
	if err != nil || len(list.Associations) != 1 || *list.Associations[0].ServiceAccount != "demo-app" {
		t.Errorf("listing through the EKS API with sandbox.env: %+v, %v", list, err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("sandbox did not stop cleanly: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sandbox.pid")); !os.IsNotExist(err) {
		t.Errorf("pid file left behind after stop: %v", err)
	}
}

func TestDownWithoutSandbox(t *testing.T) {
	err := Down(t.Context(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "no sandbox is running") {
		t.Fatalf("Down on an empty dir: %v", err)
	}
}

// workloadCommand re-runs this test binary as the sample workload.
func workloadCommand(t *testing.T) []string {
	cmd, err := SelfWorkload()
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}
