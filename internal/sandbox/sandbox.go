// Package sandbox runs podid on one machine with no cloud account and no
// cluster: a real etcd and kube-apiserver (package localcluster), podid server
// in the same process, and a sample association, printing each step and
// writing a kubeconfig and sandbox.env so that the CLI and kubectl can be
// pointed at it.
//
// AWS is the STS/IAM emulator (package awsemu). The sandbox exchanges a
// sample pod's token through podid's EKS Auth API and uses the credentials;
// a node with an agent and a workload process join it as they are built.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/localcluster"
	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/internal/sigv4"
)

// Options configure Up.
type Options struct {
	// Dir holds the kubeconfig, sandbox.env and the pid file.
	Dir string
	// Identity names the sandbox cluster.
	Identity association.Identity
	// Out receives the narration.
	Out io.Writer
	// Ready, if set, is closed once the sandbox is up (for tests).
	Ready chan<- struct{}
}

// DefaultIdentity names the sandbox cluster.
var DefaultIdentity = association.Identity{Partition: "aws", Region: "us-east-1", AccountID: "111122223333", ClusterName: "sandbox"}

// Up starts the sandbox and runs it until ctx is cancelled.
func Up(ctx context.Context, opts Options) error {
	say := func(format string, args ...any) { fmt.Fprintf(opts.Out, "==> "+format+"\n", args...) }
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return err
	}
	// Absolute, so that sandbox.env works from any directory.
	opts.Dir = dir
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return fmt.Errorf("creating the sandbox directory: %w", err)
	}
	pidFile := filepath.Join(opts.Dir, "sandbox.pid")
	if pid, err := readPID(pidFile); err == nil && processAlive(pid) {
		return fmt.Errorf("a sandbox is already running in %s (pid %d); stop it with `podid sandbox down`", opts.Dir, pid)
	}

	say("starting etcd and kube-apiserver")
	cluster, err := localcluster.Start(localcluster.Options{})
	if err != nil {
		return err
	}
	defer func() {
		say("stopping etcd and kube-apiserver")
		_ = cluster.Stop()
	}()
	kubeconfig := filepath.Join(opts.Dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, cluster.Kubeconfig, 0o600); err != nil {
		return err
	}
	say("API server at %s, kubeconfig in %s", cluster.Config.Host, kubeconfig)

	say("starting the STS/IAM emulator")
	awsCtx, stopAWS := context.WithCancel(ctx)
	defer stopAWS()
	awsSide, err := startAWS(awsCtx, opts.Identity)
	if err != nil {
		return err
	}
	say("STS and IAM at %s; role %s trusts podid server's user", awsSide.endpoint, awsSide.sampleRole)

	say("starting podid server for cluster %q", opts.Identity.ClusterName)
	srvCtx, stopServer := context.WithCancel(ctx)
	defer stopServer()
	srv, err := server.New(srvCtx, cluster.Config, server.Options{
		Identity: opts.Identity, MetricsAddr: "0", ProbeAddr: "0",
		API: server.APIOptions{
			// Loopback only, so plain HTTP is acceptable here and nowhere else.
			Addr: "127.0.0.1:0", InsecureHTTP: true,
			AccessKeys: []sigv4.Key{awsSide.clientKey},
			STS:        awsSide.stsForServer(),
		},
	})
	if err != nil {
		return err
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Start(srvCtx) }()

	say("creating namespace demo, ServiceAccount demo-app and its association")
	pia, err := createSample(ctx, cluster.Client, awsSide.sampleRole)
	if err != nil {
		return err
	}
	var ready *metav1.Condition
	if ready, err = waitReady(ctx, cluster.Client, pia); err != nil {
		return err
	}
	say("association %s: %s (%s)", pia.Status.AssociationID, ready.Message, ready.Reason)
	if err := waitIndexed(ctx, srv.Index, pia); err != nil {
		return err
	}

	say("exchanging a sample pod's token for credentials")
	lines, err := awsSide.demoExchange(ctx, cluster.Config, srv.APIURL)
	if err != nil {
		return err
	}
	for _, l := range lines {
		say("%s", l)
	}

	env := filepath.Join(opts.Dir, "sandbox.env")
	if err := writeEnv(env, kubeconfig, opts.Identity, srv.APIURL, awsSide); err != nil {
		return err
	}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	defer os.Remove(pidFile)

	say("sandbox up. In another shell:")
	fmt.Fprintf(opts.Out, "      source %s\n      podid association list\n      podid association create -n demo --service-account other --role-arn arn:aws:iam::111122223333:role/other\n", env)
	say("stop it with Ctrl-C or `podid sandbox down --dir %s`", opts.Dir)
	if opts.Ready != nil {
		close(opts.Ready)
	}

	select {
	case <-ctx.Done():
		stopServer()
		return <-srvDone
	case err := <-srvDone:
		// The server's context is a child of ctx: when both are done, this
		// is the ordinary stop, seen from the server's side first.
		if ctx.Err() != nil {
			return err
		}
		if err == nil {
			err = errors.New("it exited without being asked to")
		}
		return fmt.Errorf("podid server stopped: %w", err)
	}
}

func createSample(ctx context.Context, c client.Client, role string) (*v1alpha1.PodIdentityAssociation, error) {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "demo-app"}},
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			return nil, fmt.Errorf("creating %s: %w", o.GetName(), err)
		}
	}
	pia := &v1alpha1.PodIdentityAssociation{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "demo-app"},
		Spec: v1alpha1.PodIdentityAssociationSpec{
			ServiceAccount: "demo-app",
			RoleARN:        role,
		},
	}
	if err := c.Create(ctx, pia); err != nil {
		return nil, fmt.Errorf("creating the sample association: %w", err)
	}
	return pia, nil
}

func waitReady(ctx context.Context, c client.Client, pia *v1alpha1.PodIdentityAssociation) (*metav1.Condition, error) {
	var ready *metav1.Condition
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(pia), pia); err != nil {
			return false, err
		}
		for i, cond := range pia.Status.Conditions {
			if cond.Type == v1alpha1.ConditionReady && cond.Status == metav1.ConditionTrue {
				ready = &pia.Status.Conditions[i]
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for podid server to mark the sample association Ready: %w", err)
	}
	return ready, nil
}

// waitIndexed waits until the server's index serves pia: the exchange reads
// the index, which the Ready condition does not prove.
func waitIndexed(ctx context.Context, index *association.Index, pia *v1alpha1.PodIdentityAssociation) error {
	return wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		_, ok := index.Lookup(pia.Namespace, pia.Name)
		return ok, nil
	})
}

func writeEnv(path, kubeconfig string, id association.Identity, serverURL string, a *awsSide) error {
	vars := [][2]string{
		{"KUBECONFIG", kubeconfig},
		{"PODID_CLUSTER_NAME", id.ClusterName},
		{"PODID_SERVER_URL", serverURL},
		{"PODID_STS_ENDPOINT", a.endpoint},
		{"AWS_REGION", id.Region},
		// Accepted by podid's SigV4-authenticated APIs.
		{"AWS_ACCESS_KEY_ID", a.clientKey.AccessKeyID},
		{"AWS_SECRET_ACCESS_KEY", a.clientKey.SecretAccessKey},
	}
	var b strings.Builder
	b.WriteString("# Written by `podid sandbox up`; source it to point kubectl and podid at the sandbox.\n")
	for _, kv := range vars {
		fmt.Fprintf(&b, "export %s=%q\n", kv[0], kv[1])
	}
	// It holds a secret key: readable by its owner only.
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// Down stops the sandbox running in dir and waits for it to finish.
func Down(ctx context.Context, dir string) error {
	pidFile := filepath.Join(dir, "sandbox.pid")
	pid, err := readPID(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no sandbox is running in %s (no sandbox.pid)", dir)
	}
	if err != nil {
		return err
	}
	if !processAlive(pid) {
		_ = os.Remove(pidFile)
		return fmt.Errorf("the sandbox in %s (pid %d) is not running any more; removed its stale pid file", dir, pid)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping the sandbox (pid %d): %w", pid, err)
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		return !processAlive(pid), nil
	})
}

func readPID(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s does not hold a process ID", path)
	}
	return pid, nil
}

func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}
