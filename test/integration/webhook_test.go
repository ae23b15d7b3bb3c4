package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/kube"
	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/internal/webhook"
	"github.com/podid/podid/internal/webhookcert"
)

// admit sends pod through h as the API server would at creation.
func admit(t *testing.T, h admission.Handler, pod *corev1.Pod) admission.Response {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return h.Handle(t.Context(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Operation: admissionv1.Create,
		Namespace: pod.Namespace, Object: runtime.RawExtension{Raw: raw},
	}})
}

// The index may not have seen an association created a moment before its
// pod: the webhook reads through to the API server, so the pod is mutated.
// This handler's index is never fed, so every decision is a read-through.
func TestWebhookReadsThroughForAssociationsTheIndexHasNotSeen(t *testing.T) {
	ns := newNamespace(t)
	h := webhook.NewHandler(webhook.Options{
		Config: webhook.Config{IRSA: true}, Index: association.NewIndex(identity),
		Cache: k8s, Live: k8s,
	}, admission.NewDecoder(kube.NewScheme()))

	if err := k8s.Create(t.Context(), newAssociation(ns, "fresh", "arn:aws:iam::111122223333:role/fresh")); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "fresh-"},
		Spec: corev1.PodSpec{ServiceAccountName: "fresh", Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	resp := admit(t, h, pod)
	if !resp.Allowed || len(resp.Patches) == 0 {
		t.Fatalf("a pod of a just-associated ServiceAccount was not mutated: %+v", resp.Result)
	}

	// No association, IRSA annotation on a ServiceAccount also just made.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy",
		Annotations: map[string]string{podidentity.AnnotationRoleARN: "arn:aws:iam::111122223333:role/legacy"}}}
	if err := k8s.Create(t.Context(), sa); err != nil {
		t.Fatal(err)
	}
	pod.Spec.ServiceAccountName = "legacy"
	resp = admit(t, h, pod)
	found := false
	for _, p := range resp.Patches {
		if p.Path == "/spec/containers/0/env" {
			for _, e := range p.Value.([]any) {
				if e.(map[string]any)["name"] == podidentity.EnvRoleARN {
					found = true
				}
			}
		}
	}
	if !resp.Allowed || !found {
		t.Fatalf("IRSA was not injected for an annotated ServiceAccount: %+v %v", resp.Result, resp.Patches)
	}

	// Neither: allowed untouched.
	pod.Spec.ServiceAccountName = "nobody"
	if resp := admit(t, h, pod); !resp.Allowed || len(resp.Patches) != 0 {
		t.Fatalf("a pod without association was changed: %v", resp.Patches)
	}
	// A bad IRSA annotation is a refusal naming it, not a silent skip.
	sa.Annotations[podidentity.AnnotationTokenExpiration] = "soon"
	if err := k8s.Update(t.Context(), sa); err != nil {
		t.Fatal(err)
	}
	pod.Spec.ServiceAccountName = "legacy"
	if resp := admit(t, h, pod); resp.Allowed {
		t.Fatal("a pod whose ServiceAccount has an unusable IRSA annotation was admitted")
	}
}

// The certificate manager, against the real API server: it creates the
// Secret, fills in the caBundle, serves a certificate the bundle verifies,
// renews the serving certificate and then the CA before they expire while
// the old CA stays trusted, and several replicas agree on one Secret.
func TestWebhookCertificateLifecycle(t *testing.T) {
	ns := newNamespace(t)
	live, err := client.New(cluster.Config, client.Options{Scheme: kube.NewScheme()})
	if err != nil {
		t.Fatal(err)
	}
	cfgName := "podid-test-" + ns
	cfg := webhook.Configuration(webhook.ConfigurationOptions{Name: cfgName, URL: "https://127.0.0.1:1",
		// Sent nothing: no namespace matches.
		ExcludeNamespaces: []string{}})
	cfg.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"podid-test": "never"}}
	if err := k8s.Create(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k8s.Delete(context.Background(), cfg) })

	var mu sync.Mutex
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	secret := types.NamespacedName{Namespace: ns, Name: "podid-webhook-tls"}
	newManager := func() *webhookcert.Manager {
		return webhookcert.New(webhookcert.Options{Client: live, Secret: secret, WebhookConfiguration: cfgName,
			DNSNames: []string{"podid-webhook." + ns + ".svc"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Now: clock})
	}
	replicas := []*webhookcert.Manager{newManager(), newManager(), newManager()}
	var wg sync.WaitGroup
	for _, m := range replicas {
		wg.Go(func() {
			if err := m.Reconcile(t.Context()); err != nil {
				t.Errorf("reconcile: %v", err)
			}
		})
	}
	wg.Wait()
	// All replicas serve the same certificate, which the caBundle verifies.
	first := servedLeaf(t, replicas[0])
	for _, m := range replicas[1:] {
		if !servedLeaf(t, m).Equal(first) {
			t.Fatal("replicas serve different certificates")
		}
	}
	bundle := caBundle(t, cfgName)
	verify(t, bundle, first, clock())
	handshake(t, serveWith(t, replicas[0]), bundle)

	// 61 days on, under 30 days are left of the 90: a new serving
	// certificate from the same CA.
	advance(61 * 24 * time.Hour)
	if err := replicas[1].Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	renewed := servedLeaf(t, replicas[1])
	if renewed.Equal(first) {
		t.Fatal("the serving certificate was not renewed with under a third of its life left")
	}
	if got := caBundle(t, cfgName); string(got) != string(bundle) {
		t.Fatal("renewing the serving certificate changed the caBundle")
	}
	// A replica that has not reloaded yet still serves a trusted certificate.
	verify(t, bundle, first, clock())
	// On its next reconcile it adopts the renewed one, without a restart.
	if err := replicas[0].Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !servedLeaf(t, replicas[0]).Equal(renewed) {
		t.Fatal("a replica did not adopt the renewed certificate")
	}

	// The day before under a year of the CA's five is left, a replica renews
	// its (expired) serving certificate from the old CA; two days later
	// another renews the CA. The old CA stays in the bundle while it is
	// valid, so the first replica's certificate is still trusted.
	advance(4*365*24*time.Hour - 61*24*time.Hour - 24*time.Hour)
	if err := replicas[1].Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	fromOldCA := servedLeaf(t, replicas[1])
	if countCerts(caBundle(t, cfgName)) != 1 {
		t.Fatal("the CA was renewed early")
	}
	advance(2 * 24 * time.Hour)
	if err := replicas[2].Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	newBundle := caBundle(t, cfgName)
	if n := countCerts(newBundle); n != 2 {
		t.Fatalf("after the CA's renewal the caBundle holds %d CAs, want the new and the old", n)
	}
	verify(t, newBundle, servedLeaf(t, replicas[2]), clock())
	verify(t, newBundle, fromOldCA, clock())
	// Once the old CA has expired, it leaves the bundle.
	advance(366 * 24 * time.Hour)
	if err := replicas[0].Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := countCerts(caBundle(t, cfgName)); n != 1 {
		t.Fatalf("an expired CA stayed in the caBundle (%d CAs)", n)
	}

	// A Secret someone broke is replaced.
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: secret.Namespace, Name: secret.Name}}
	if err := updateLatest(t, s, func() { s.Data[corev1.TLSCertKey] = []byte("garbage") }); err != nil {
		t.Fatal(err)
	}
	if err := replicas[1].Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	verify(t, caBundle(t, cfgName), servedLeaf(t, replicas[1]), clock())
}

func servedLeaf(t *testing.T, m *webhookcert.Manager) *x509.Certificate {
	t.Helper()
	c, err := m.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

func caBundle(t *testing.T, name string) []byte {
	t.Helper()
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	if err := k8s.Get(t.Context(), types.NamespacedName{Name: name}, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg.Webhooks[0].ClientConfig.CABundle
}

func verify(t *testing.T, bundle []byte, leaf *x509.Certificate, at time.Time) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		t.Fatal("the caBundle holds no certificate")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: at, DNSName: leaf.DNSNames[0]}); err != nil {
		t.Fatalf("the caBundle does not verify the served certificate: %v", err)
	}
}

func countCerts(bundle []byte) int {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	return len(pool.Subjects()) //nolint:staticcheck // counting, not trusting
}

// serveWith starts a TLS server whose only certificate comes from m, as the
// webhook server's does.
func serveWith(t *testing.T, m *webhookcert.Manager) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: m.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// handshake connects as the API server would, trusting only the caBundle
// (the real clock: the certificates are backdated an hour).
func handshake(t *testing.T, addr string, bundle []byte) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS handshake with the caBundle as roots: %v", err)
	}
	conn.Close()
}

// A Pod Identity pod whose own environment sends the SDKs elsewhere first
// (ECS's relative URI, static keys) is admitted and mutated, with a warning
// kubectl prints naming the container and the variable.
func TestWebhookWarnsOfWhatComesFirstInTheChain(t *testing.T) {
	ns := newNamespace(t)
	h := webhook.NewHandler(webhook.Options{
		Config: webhook.Config{IRSA: true}, Index: association.NewIndex(identity),
		Cache: k8s, Live: k8s,
	}, admission.NewDecoder(kube.NewScheme()))
	if err := k8s.Create(t.Context(), newAssociation(ns, "ecs-image", "arn:aws:iam::111122223333:role/app")); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "ecs-"},
		Spec: corev1.PodSpec{ServiceAccountName: "ecs-image", Containers: []corev1.Container{
			{Name: "app", Image: "app", Env: []corev1.EnvVar{{Name: "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", Value: "/v2/credentials/abc"}}},
			{Name: "sidecar", Image: "sidecar", Env: []corev1.EnvVar{{Name: "AWS_ACCESS_KEY_ID", ValueFrom: &corev1.EnvVarSource{
				SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "keys"}, Key: "id"}}}}},
			{Name: "clean", Image: "clean"},
		}}}
	resp := admit(t, h, pod)
	if !resp.Allowed || len(resp.Patches) == 0 {
		t.Fatalf("not admitted and mutated: %+v", resp.Result)
	}
	if len(resp.Warnings) != 2 || !strings.Contains(resp.Warnings[0], "container app sets AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") ||
		!strings.Contains(resp.Warnings[1], "container sidecar sets AWS_ACCESS_KEY_ID") {
		t.Fatalf("warnings = %q", resp.Warnings)
	}
}
