package realnode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/emu/registryemu"
	"github.com/podid/podid/test/harness/localnode"
	"github.com/podid/podid/test/harness/sandbox"
)

// jfrogHost is the emulated Artifactory on the node's bridge. It is fixed
// because the kubelet's CredentialProviderConfig, written when the chart is
// installed, names it.
var jfrogHost = localnode.NodeIP + ":5443"

// credentialProviderOptions installs podid-credential-provider with the
// chart, for jfrogHost, trusting the node's CA (which signs jfrogHost's
// certificate).
var credentialProviderOptions = &sandbox.CredentialProviderOptions{JFrogHosts: []string{jfrogHost}, TrustNodeCA: true}

// figurePods is how many pods, each of its own ServiceAccount, the figures
// are taken over.
const figurePods = 30

// cpNamespace holds the credential provider's pods.
const cpNamespace = "cp-e2e"

// testCredentialProvider: the kubelet, configured with podid's plugin by
// the chart, pulls a pod's images with the pod's own association's role —
// from ECR and from Artifactory, with imagePullPolicy Always and no pull
// secret — refuses a role the registry does not admit with the registry's
// reason, and gives a pod without an association no identity at all.
func testCredentialProvider(t *testing.T) {
	ctx := t.Context()
	node := sb.RealNode()
	ecrHost := identity.AccountID + ".dkr.ecr." + identity.Region + ".amazonaws.com"

	// The account's ECR registry, admitting an ECR password for apps/*
	// only (ECR would decide with the role's policy); the same server is
	// also reached under a name no plugin matches, for the baseline.
	reg := registryemu.NewECRRegistry(sb.Emulator(), identity.AccountID, func(_ awsemu.ECRToken, repo string) bool {
		return strings.HasPrefix(repo, "apps/")
	})
	reg.AdminPassword = "cp-push"
	addr := serve(t, net.JoinHostPort(node.IP, "0"), reg, nil)
	const baselineHost = "baseline.podid.test"
	for _, host := range []string{ecrHost, baselineHost} {
		if err := node.MirrorRegistry(host, "http://"+addr); err != nil {
			t.Fatal(err)
		}
	}
	img := relabelled(t, "credential-provider")
	push(t, addr+"/apps/workload:cp", img, "admin", "cp-push", true)
	push(t, addr+"/private/workload:cp", img, "admin", "cp-push", true)

	// Artifactory, over TLS with a certificate of the node's CA, its
	// exchange replayed to the emulator's STS; the sample role is mapped
	// to a JFrog user.
	art := registryemu.NewArtifactory(sb.Env["PODID_STS_ENDPOINT"], "cp-admin")
	art.MapRole(sb.Env["PODID_SAMPLE_ROLE_ARN"], "puller")
	certFile, keyFile, err := node.ServingCertificate("jfrog")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, jfrogHost, art, &tls.Config{Certificates: []tls.Certificate{cert}})
	if err := node.TrustRegistry(jfrogHost, node.CAFile()); err != nil {
		t.Fatal(err)
	}
	pushTLS(t, jfrogHost+"/docker-local/workload:cp", img, "admin", "cp-admin", node.CAFile())

	associate(t, cpNamespace, "puller")
	t.Cleanup(func() { cs.CoreV1().Namespaces().Delete(context.Background(), cpNamespace, metav1.DeleteOptions{}) })
	if _, err := cs.CoreV1().ServiceAccounts(cpNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "stranger"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("ECR with the pod's role", func(t *testing.T) {
		ecrCalls, admitted := sb.Emulator().ECRTokenCalls(), reg.Admitted()
		pod := startPod(t, "ecr-allowed", "puller", ecrHost+"/apps/workload:cp")
		if reg.Admitted() == admitted {
			t.Error("the pod runs, but the registry admitted no request: the image did not come from it")
		}
		if n := sb.Emulator().ECRTokenCalls() - ecrCalls; n != 1 {
			t.Errorf("%d GetAuthorizationToken calls, want 1", n)
		}
		// One exchange served the plugin and then the pod's own SDK: the
		// agent caches per pod.
		if n := assumeRoleCalls(string(pod.UID)); n != 1 {
			t.Errorf("%d AssumeRole calls for the pod after its pull, want 1", n)
		}
		id, err := sb.PodIdentity(ctx, pod)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(id.ARN, ":assumed-role/demo-app/") {
			t.Errorf("the pod's SDK is %s, want the association's role", id.ARN)
		}
		if n := assumeRoleCalls(string(pod.UID)); n != 1 {
			t.Errorf("%d AssumeRole calls for the pod after its SDK's, want 1 (pull and SDK share the agent's cache)", n)
		}
	})

	t.Run("Artifactory with the pod's role", func(t *testing.T) {
		calls, admitted := art.TokenCalls(), art.Registry().Admitted()
		startPod(t, "jfrog-allowed", "puller", jfrogHost+"/docker-local/workload:cp")
		if art.Registry().Admitted() == admitted {
			t.Error("the pod runs, but Artifactory admitted no request")
		}
		if n := art.TokenCalls() - calls; n != 1 {
			t.Errorf("%d token exchanges, want 1", n)
		}
	})

	t.Run("a repository the role may not pull", func(t *testing.T) {
		denied := reg.Denied()
		createPod(t, "ecr-denied", "puller", ecrHost+"/private/workload:cp", nil)
		want := "is not authorized to perform: ecr:BatchGetImage on resource: arn:aws:ecr:us-east-1:111122223333:repository/private/workload"
		waitEvent(t, "ecr-denied", want)
		if !strings.Contains(podEvents(ctx, cpNamespace, "ecr-denied"), ":assumed-role/demo-app/") {
			t.Errorf("the event does not name the pod's role:\n%s", podEvents(ctx, cpNamespace, "ecr-denied"))
		}
		if reg.Denied() == denied {
			t.Error("the registry denied nothing")
		}
	})

	t.Run("a ServiceAccount without an association", func(t *testing.T) {
		ecrCalls, admitted, assumed := sb.Emulator().ECRTokenCalls(), reg.Admitted(), len(sb.Emulator().AssumeRoleCalls())
		pod := createPod(t, "stranger", "stranger", ecrHost+"/apps/workload:cp", nil)
		// The kubelet logs the plugin's error and pulls anonymously, which
		// the registry refuses.
		waitEvent(t, "stranger", "pull access denied")
		kubeletLog := filepath.Join(node.Dir, "logs", "kubelet.log")
		want := "no PodIdentityAssociation for this pod's ServiceAccount, so its images cannot be pulled with its role"
		found := false
		for _, line := range strings.Split(logTail(kubeletLog, 2000), "\n") {
			if strings.Contains(line, want) && strings.Contains(line, "namespace cp-e2e and service account stranger") {
				found = true
			}
		}
		if !found {
			t.Errorf("the kubelet's log has no %q for pod %s:\n%s", want, pod.UID, logTail(kubeletLog, 20))
		}
		// And podid server says why on the pod itself.
		waitEvent(t, "stranger", "NoPodIdentityAssociation")
		if reg.Admitted() != admitted || sb.Emulator().ECRTokenCalls() != ecrCalls {
			t.Error("a pod without an association reached the registry or ECR with some identity")
		}
		if n := len(sb.Emulator().AssumeRoleCalls()) - assumed; n != 0 {
			t.Errorf("%d AssumeRole calls for a pod without an association", n)
		}
	})

	t.Run("figures", func(t *testing.T) {
		figures(t, ecrHost, baselineHost)
	})
}

// figures: pod start latency (created → running, seen by a watch) of pods
// each of its own ServiceAccount and association, so that every start runs
// the plugin, against pods of the same image pulled with a pull secret from
// the same registry under a name the plugin does not match, interleaved;
// upstream exchanges per pod; the plugin's run time as the kubelet measures
// it. (The kubelet's "Successfully pulled … in" leaves the credential
// lookup out, so it cannot show the plugin's cost.)
func figures(t *testing.T, ecrHost, baselineHost string) {
	ctx := t.Context()
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: cpNamespace, Name: "baseline-pull"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`,
			baselineHost, base64.StdEncoding.EncodeToString([]byte("admin:cp-push")))},
	}
	if _, err := cs.CoreV1().Secrets(cpNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := kubeletPluginDuration(t)
	var withPlugin, withSecret []time.Duration
	for i := range figurePods {
		sa := fmt.Sprintf("fig-%02d", i)
		associate(t, cpNamespace, sa)
		// In turns, first one then the other, so that neither always
		// follows the association's creation.
		for turn := range 2 {
			if (i+turn)%2 == 0 {
				pod, d := timedStart(t, sa, sa, ecrHost+"/apps/workload:cp")
				withPlugin = append(withPlugin, d)
				if n := assumeRoleCalls(string(pod.UID)); n != 1 {
					t.Errorf("pod %s: %d upstream exchanges for its pull, want 1", pod.Name, n)
				}
			} else {
				_, d := timedStart(t, "base-"+sa, sa, baselineHost+"/apps/workload:cp", corev1.LocalObjectReference{Name: secret.Name})
				withSecret = append(withSecret, d)
			}
		}
		for _, name := range []string{sa, "base-" + sa} {
			cs.CoreV1().Pods(cpNamespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		}
	}
	after := kubeletPluginDuration(t)
	p := func(d []time.Duration, q float64) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[min(len(s)-1, int(q*float64(len(s))))].Round(time.Millisecond)
	}
	t.Logf("figure: pod start (created → running) pulling with podid-credential-provider (plugin, agent, exchange, ECR), %d pods: p50 %s, p99 %s", len(withPlugin), p(withPlugin, .5), p(withPlugin, .99))
	// The difference of two p99s over 30 pods is noise; the p50s' is not.
	t.Logf("figure: pod start pulling the same image with a pull secret, %d pods: p50 %s, p99 %s; added by the plugin: p50 %s",
		len(withSecret), p(withSecret, .5), p(withSecret, .99), p(withPlugin, .5)-p(withSecret, .5))
	runs := after.count - before.count
	if runs < figurePods {
		t.Fatalf("the kubelet ran the plugin %v times for %d ServiceAccounts", runs, figurePods)
	}
	t.Logf("figure: the kubelet ran the plugin %v times: mean %s, p50 ≤ %gs, p99 ≤ %gs (kubelet_credential_provider_plugin_duration)", runs,
		time.Duration((after.sum-before.sum)/runs*float64(time.Second)).Round(time.Millisecond), after.quantile(before, .5), after.quantile(before, .99))
}

// timedStart creates a pod and returns it once running, with the time from
// its creation, as a watch sees it.
func timedStart(t *testing.T, name, sa, image string, secrets ...corev1.LocalObjectReference) (*corev1.Pod, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	began := time.Now()
	created := createPod(t, name, sa, image, secrets)
	w, err := cs.CoreV1().Pods(cpNamespace).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name, ResourceVersion: created.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		if p, ok := ev.Object.(*corev1.Pod); ok && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
			return p, time.Since(began)
		}
	}
	t.Fatalf("pod %s is not running:\n%s%s", name, podEvents(t.Context(), cpNamespace, name), podState(t.Context(), cpNamespace, name))
	return nil, 0
}

// startPod creates a pod of the workload with image (pulled Always) and
// waits for it to run.
func startPod(t *testing.T, name, sa, image string, secrets ...corev1.LocalObjectReference) *corev1.Pod {
	t.Helper()
	createPod(t, name, sa, image, secrets)
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(cpNamespace).Get(ctx, name, metav1.GetOptions{})
		pod = p
		return err == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "", nil
	})
	if err != nil {
		t.Fatalf("pod %s is not running:\n%s%s", name, podEvents(t.Context(), cpNamespace, name), podState(t.Context(), cpNamespace, name))
	}
	return pod
}

func createPod(t *testing.T, name, sa, image string, secrets []corev1.LocalObjectReference) *corev1.Pod {
	t.Helper()
	spec := sb.WorkloadDeployment(cpNamespace, name, sa, 1).Spec.Template.Spec
	spec.Containers[0].Image = image
	spec.Containers[0].ImagePullPolicy = corev1.PullAlways
	spec.ImagePullSecrets = secrets
	pod, err := cs.CoreV1().Pods(cpNamespace).Create(t.Context(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Gone with the check, so that a refused pod's pull retries stop.
	t.Cleanup(func() {
		cs.CoreV1().Pods(cpNamespace).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	})
	return pod
}

func waitEvent(t *testing.T, pod, want string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		return strings.Contains(podEvents(ctx, cpNamespace, pod), want), nil
	})
	if err != nil {
		t.Fatalf("pod %s has no event with %q:\n%s%s", pod, want, podEvents(t.Context(), cpNamespace, pod), podState(t.Context(), cpNamespace, pod))
	}
}

// histogram is a Prometheus histogram as scraped: sum, count and the
// cumulative count of each bucket's upper bound.
type histogram struct {
	sum, count float64
	buckets    map[float64]float64
}

// quantile is the upper bound of the bucket holding quantile q of what h
// counted since earlier.
func (h histogram) quantile(earlier histogram, q float64) float64 {
	bounds := slices.Sorted(maps.Keys(h.buckets))
	for _, le := range bounds {
		if h.buckets[le]-earlier.buckets[le] >= q*(h.count-earlier.count) {
			return le
		}
	}
	return math.Inf(1)
}

// kubeletPluginDuration reads the kubelet's
// kubelet_credential_provider_plugin_duration for podid's plugin.
func kubeletPluginDuration(t *testing.T) histogram {
	t.Helper()
	node := sb.RealNode()
	client, err := rest.HTTPClientFor(node.Config)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get("https://" + net.JoinHostPort(node.IP, "10250") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("kubelet /metrics: %s %v", resp.Status, err)
	}
	h := histogram{buckets: map[float64]float64{}}
	le := regexp.MustCompile(`le="([^"]+)"`)
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.Contains(line, `plugin_name="podid-credential-provider"`) {
			continue
		}
		fields := strings.Fields(line)
		v, _ := strconv.ParseFloat(fields[len(fields)-1], 64)
		switch {
		case strings.HasPrefix(line, "kubelet_credential_provider_plugin_duration_sum"):
			h.sum = v
		case strings.HasPrefix(line, "kubelet_credential_provider_plugin_duration_count"):
			h.count = v
		case strings.HasPrefix(line, "kubelet_credential_provider_plugin_duration_bucket"):
			if m := le.FindStringSubmatch(line); m != nil {
				bound, _ := strconv.ParseFloat(m[1], 64)
				h.buckets[bound] = v
			}
		}
	}
	return h
}

// serve serves h on addr (TLS when tc is set) until the test ends, and
// returns the address.
func serve(t *testing.T, addr string, h http.Handler, tc *tls.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if tc != nil {
		l = tls.NewListener(l, tc)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// relabelled is the workload image with a label of its own: a new image
// ID, which the node has never pulled.
func relabelled(t *testing.T, label string) v1.Image {
	t.Helper()
	img, err := sb.RealNode().Image(sandbox.WorkloadImage)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.Config.Labels = map[string]string{"podid.io/test": label}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	return img
}

func push(t *testing.T, ref string, img v1.Image, user, password string, insecure bool) {
	t.Helper()
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: user, Password: password}), remote.WithContext(t.Context())); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
}

func pushTLS(t *testing.T, ref string, img v1.Image, user, password, caFile string) {
	t.Helper()
	pool, err := certPool(caFile)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: user, Password: password}), remote.WithTransport(transport), remote.WithContext(t.Context())); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
}

func certPool(caFile string) (*x509.CertPool, error) {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no certificate", caFile)
	}
	return pool, nil
}
