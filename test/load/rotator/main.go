// Command rotator prints the SecretRotator's figures on a real API server:
// the time to provision N matching namespaces × 2 secrets, the API writes
// and upstream token calls that took, the writes of a second pass with
// nothing changed, and how soon a namespace that starts matching gets its
// secrets. The AWS side is the emulator (ECR); the rotator runs in-process
// with the CLI's default API rate limits.
//
//	go run ./test/load/rotator -namespaces 1000
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/internal/rotator"
	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/emu/awsemu/awsemutest"
	"github.com/podid/podid/test/harness/localcluster"
)

func main() {
	n := flag.Int("namespaces", 1000, "matching namespaces")
	qps := flag.Float64("kube-api-qps", 300, "the rotator's API rate limit (podid rotator's default)")
	burst := flag.Int("kube-api-burst", 600, "the rotator's API burst (podid rotator's default)")
	late := flag.Int("late", 20, "namespaces created one by one after provisioning, to time")
	flag.Parse()
	if err := run(*n, float32(*qps), *burst, *late); err != nil {
		fmt.Fprintln(os.Stderr, "rotator:", err)
		os.Exit(1)
	}
}

const account = "111122223333"

func run(n int, qps float32, burst, late int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cluster, err := localcluster.Start(localcluster.Options{})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	k8s := cluster.Client

	emu := awsemu.New(awsemu.Options{AccountID: account, Users: []awsemu.User{{Name: "admin", AccessKeyID: "AKIAPODIDLOADADMIN01", SecretAccessKey: "load"}}})
	emuSrv := httptest.NewServer(emu)
	defer emuSrv.Close()
	admin := aws.Config{Region: "eu-west-1", BaseEndpoint: aws.String(emuSrv.URL), Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: "AKIAPODIDLOADADMIN01", SecretAccessKey: "load"}, nil
	})}
	role, err := iam.NewFromConfig(admin).CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("puller"), AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + account + `:user/admin"},"Action":"sts:AssumeRole"}]}`)})
	if err != nil {
		return err
	}
	// The node agent's part: the credentials endpoint, answering with a
	// session of the role.
	agent := httptest.NewServer(awsemutest.CredentialsEndpoint(admin, *role.Role.Arn, ""))
	defer agent.Close()
	dir, err := os.MkdirTemp("", "podid-load-rotator-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("t"), 0o600); err != nil {
		return err
	}
	environ := map[string]string{podidentity.EnvCredentialsFullURI: agent.URL, podidentity.EnvAuthorizationTokenFile: tokenFile}

	fmt.Printf("creating %d namespaces\n", n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range n {
		g.Go(func() error {
			return k8s.Create(gctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("team-%04d", i), Labels: map[string]string{"registry": "yes"}}})
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}

	cfg := *cluster.Config
	cfg.QPS, cfg.Burst = qps, burst
	reg := prometheus.NewRegistry()
	awsCfg := aws.Config{Region: "eu-west-1", BaseEndpoint: aws.String(emuSrv.URL)}
	mgr, err := rotator.New(ctx, &cfg, rotator.Options{Namespace: "default", MetricsAddr: "0", ProbeAddr: "0", Workers: 16, Timeout: 10 * time.Second,
		Registerer: reg, AWS: &awsCfg, Getenv: func(k string) string { return environ[k] }})
	if err != nil {
		return err
	}
	go mgr.Start(ctx)
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return fmt.Errorf("the rotator's cache did not sync")
	}

	rot := &v1alpha1.SecretRotator{
		ObjectMeta: metav1.ObjectMeta{Name: "load"},
		Spec: v1alpha1.SecretRotatorSpec{
			Provider: "ecr", ECR: &v1alpha1.ECRConfig{Region: "eu-west-1"},
			NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"registry": "yes"}},
			GeneratedSecrets:  []v1alpha1.GeneratedSecret{{SecretName: "pull", SecretType: "docker"}, {SecretName: "token", SecretType: "generic"}},
		},
	}
	began := time.Now()
	if err := k8s.Create(ctx, rot); err != nil {
		return err
	}
	if err := waitFor(ctx, 5*time.Minute, func() bool {
		var got v1alpha1.SecretRotator
		if k8s.Get(ctx, client.ObjectKeyFromObject(rot), &got) != nil {
			return false
		}
		c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady)
		return got.Status.NamespaceCount == n && c != nil && c.Reason == v1alpha1.ReasonRotated
	}); err != nil {
		return fmt.Errorf("provisioning: %w", err)
	}
	provision := time.Since(began)
	time.Sleep(2 * time.Second) // let the watch of its own writes settle
	writes := metricSum(reg, "podid_rotator_secret_writes_total")
	fmt.Printf("figure: %d namespaces × 2 secrets provisioned in %.2fs (QPS %.0f, burst %d): %.0f API writes, %d upstream token calls\n",
		n, provision.Seconds(), qps, burst, writes, emu.ECRTokenCalls())

	// A second pass with nothing changed.
	reconciles := metricSum(ctrlmetrics.Registry, "controller_runtime_reconcile_total")
	var got v1alpha1.SecretRotator
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(rot), &got); err != nil {
		return err
	}
	patch := client.MergeFrom(got.DeepCopy())
	got.Labels = map[string]string{"nudge": "1"}
	if err := k8s.Patch(ctx, &got, patch); err != nil {
		return err
	}
	if err := waitFor(ctx, time.Minute, func() bool { return metricSum(ctrlmetrics.Registry, "controller_runtime_reconcile_total") > reconciles }); err != nil {
		return fmt.Errorf("second pass: %w", err)
	}
	time.Sleep(time.Second)
	fmt.Printf("figure: a second pass with nothing changed: %.0f API writes, %d more token calls\n", metricSum(reg, "podid_rotator_secret_writes_total")-writes, emu.ECRTokenCalls()-1)

	var lat []time.Duration
	for i := range late {
		ns := fmt.Sprintf("late-%02d", i)
		start := time.Now()
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"registry": "yes"}}}); err != nil {
			return err
		}
		if err := waitFor(ctx, 30*time.Second, func() bool {
			var a, b corev1.Secret
			return k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pull"}, &a) == nil && k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "token"}, &b) == nil
		}); err != nil {
			return err
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		fmt.Printf("figure: a namespace that starts matching has both secrets after p50 %s, max %s (%d namespaces, with %d others provisioned)\n",
			lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), len(lat), n)
	}
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	fmt.Printf("figure: process heap in use after GC %.1f MB (API server client, rotator cache of %d secrets and %d namespaces)\n", float64(m.HeapInuse)/1e6, 2*(n+late), n+late)
	return nil
}

func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// metricSum adds up every series of a counter family.
func metricSum(g prometheus.Gatherer, name string) float64 {
	families, _ := g.Gather()
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
