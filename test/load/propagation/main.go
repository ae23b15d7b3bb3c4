// Command propagation measures how long a new association takes to reach a
// pod, on the whole system (`podid-sandbox`): association created through
// the EKS-compatible API → pod created and mutated by the webhook → token
// written → first credentials served by the node's agent. It also measures
// pod creation with and without the webhook in the path, and the webhook's
// own decision time. Run it with
//
//	go run ./test/load/propagation [-trials 60]
//
// It needs the tools in bin/ (make tools); as root the node is a network
// namespace, as in the sandbox.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/harness/sandbox"
)

func main() {
	sandbox.RunWorkloadIfAsked()
	trials := flag.Int("trials", 60, "associations to create and measure")
	flag.Parse()
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "podid-propagation-")
	check(err)
	defer os.RemoveAll(dir)
	workload, err := sandbox.SelfWorkload()
	check(err)
	sb, err := sandbox.Start(ctx, sandbox.Options{Dir: dir, Identity: sandbox.DefaultIdentity, WorkloadCommand: workload})
	check(err)
	defer sb.Stop()
	env := sb.Env
	cfg, err := clientcmd.BuildConfigFromFlags("", env["KUBECONFIG"])
	check(err)
	// client-go's default 5 requests/s would be all this measures.
	cfg.QPS, cfg.Burst = 1000, 1000
	cs, err := kubernetes.NewForConfig(cfg)
	check(err)
	awsCfg := func(endpoint string) aws.Config {
		return aws.Config{Region: env["AWS_REGION"], BaseEndpoint: aws.String(endpoint),
			Credentials: credentials.NewStaticCredentialsProvider(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], "")}
	}
	eksClient := eks.NewFromConfig(awsCfg(env["PODID_SERVER_URL"]))
	role, err := iam.NewFromConfig(awsCfg(env["PODID_STS_ENDPOINT"])).CreateRole(ctx, &iam.CreateRoleInput{
		RoleName: aws.String("propagation"), AssumeRolePolicyDocument: aws.String(awsemu.PodidTrust(env["PODID_SERVER_ROLE_PRINCIPAL"])),
	})
	check(err)
	for _, ns := range []string{"propagation", "no-webhook"} {
		labels := map[string]string{}
		if ns == "no-webhook" {
			labels["podid.io/inject"] = "false"
		}
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{})
		check(err)
	}
	podFor := func(sa string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: sa + "-"},
			Spec: corev1.PodSpec{ServiceAccountName: sa, NodeName: env["PODID_NODE_NAME"], Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	}

	var propagation, createMutated, createPlain []time.Duration
	retries := 0
	for i := range *trials {
		sa := fmt.Sprintf("app-%03d", i)
		for _, ns := range []string{"propagation", "no-webhook"} {
			_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
			check(err)
		}
		// Baseline: a pod the webhook is not asked about.
		start := time.Now()
		_, err := cs.CoreV1().Pods("no-webhook").Create(ctx, podFor(sa), metav1.CreateOptions{})
		check(err)
		createPlain = append(createPlain, time.Since(start))

		start = time.Now()
		_, err = eksClient.CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{
			ClusterName: aws.String(env["PODID_CLUSTER_NAME"]), Namespace: aws.String("propagation"), ServiceAccount: aws.String(sa), RoleArn: role.Role.Arn,
		})
		check(err)
		podStart := time.Now()
		pod, err := cs.CoreV1().Pods("propagation").Create(ctx, podFor(sa), metav1.CreateOptions{})
		check(err)
		createMutated = append(createMutated, time.Since(podStart))
		file, err := sandbox.PodToken(ctx, cs, pod, env["PODID_KUBELET_PODS_DIR"])
		check(err)
		if file == "" {
			check(fmt.Errorf("pod %s was not mutated", pod.Name))
		}
		token, err := os.ReadFile(file)
		check(err)
		for {
			status, body, err := sb.GetCredentials(ctx, string(token))
			check(err)
			if status == 200 {
				break
			}
			if time.Since(start) > 10*time.Second {
				check(fmt.Errorf("no credentials after 10 s: %d %s", status, body))
			}
			retries++
			time.Sleep(5 * time.Millisecond)
		}
		propagation = append(propagation, time.Since(start))
	}
	fmt.Printf("propagation over %d trials (association created through the EKS API → pod created and mutated → token written → first credentials from the agent): p50 %s, p99 %s, max %s; %d retried requests\n",
		*trials, pct(propagation, 50), pct(propagation, 99), slices.Max(propagation).Round(100*time.Microsecond), retries)
	fmt.Printf("pod creation through the API server: with the webhook p50 %s, p99 %s; without (namespace opted out) p50 %s, p99 %s\n",
		pct(createMutated, 50), pct(createMutated, 99), pct(createPlain, 50), pct(createPlain, 99))
	fmt.Printf("the webhook's own decision time: %s\n", webhookHistogram())
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(i-1, len(s)-1))].Round(100 * time.Microsecond)
}

// webhookHistogram reads the webhook's histogram from the server's registry
// (it runs in this process) and reports the bucket holding p50 and p99.
func webhookHistogram() string {
	families, err := metrics.Registry.Gather()
	check(err)
	var parts []string
	for _, f := range families {
		if f.GetName() != "podid_webhook_admission_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			var mode string
			for _, l := range m.GetLabel() {
				if l.GetName() == "mode" {
					mode = l.GetValue()
				}
			}
			h := m.GetHistogram()
			bound := func(q float64) string {
				for _, b := range h.GetBucket() {
					if float64(b.GetCumulativeCount()) >= q*float64(h.GetSampleCount()) {
						return fmt.Sprintf("≤ %s", time.Duration(b.GetUpperBound()*float64(time.Second)))
					}
				}
				return "> the largest bucket"
			}
			parts = append(parts, fmt.Sprintf("%s: %d admissions, mean %s, p50 %s, p99 %s", mode, h.GetSampleCount(),
				time.Duration(h.GetSampleSum()/float64(h.GetSampleCount())*float64(time.Second)).Round(time.Microsecond), bound(0.5), bound(0.99)))
		}
	}
	if len(parts) == 0 {
		return "no admissions recorded"
	}
	return strings.Join(parts, "; ")
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "propagation:", err)
		os.Exit(1)
	}
}
