package rotator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/podid/podid/api/v1alpha1"
)

// eventually polls cond until it holds or timeout passes; cond says what it
// saw, for the failure message.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, seen := cond()
		if ok {
			return
		}
		last = seen
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s; last saw: %s", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func namespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := e.k8s.Create(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	// The API server alone never finishes deleting a namespace (that is the
	// controller-manager's job), so tests use fresh names.
}

func relabel(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	var ns corev1.Namespace
	if err := e.k8s.Get(t.Context(), client.ObjectKey{Name: name}, &ns); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(ns.DeepCopy())
	ns.Labels = labels
	ns.Labels["kubernetes.io/metadata.name"] = name
	if err := e.k8s.Patch(t.Context(), &ns, patch); err != nil {
		t.Fatal(err)
	}
}

// create creates rot and deletes it when the test ends.
func create(t *testing.T, rot *v1alpha1.SecretRotator) {
	t.Helper()
	if err := e.k8s.Create(t.Context(), rot); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.k8s.Delete(context.Background(), rot) })
}

func get(t *testing.T, name string) *v1alpha1.SecretRotator {
	t.Helper()
	var rot v1alpha1.SecretRotator
	if err := e.k8s.Get(t.Context(), client.ObjectKey{Name: name}, &rot); err != nil {
		t.Fatal(err)
	}
	return &rot
}

func ready(rot *v1alpha1.SecretRotator) *metav1.Condition {
	return meta.FindStatusCondition(rot.Status.Conditions, v1alpha1.ConditionReady)
}

func waitReady(t *testing.T, name string, reason string) *v1alpha1.SecretRotator {
	t.Helper()
	var rot *v1alpha1.SecretRotator
	eventually(t, 20*time.Second, "SecretRotator "+name+" Ready with reason "+reason, func() (bool, string) {
		rot = get(t, name)
		c := ready(rot)
		if c == nil {
			return false, "no Ready condition"
		}
		return c.Reason == reason && c.ObservedGeneration == rot.Generation, fmt.Sprintf("%s %s: %s", c.Status, c.Reason, c.Message)
	})
	return rot
}

func secret(t *testing.T, ns, name string) (*corev1.Secret, bool) {
	t.Helper()
	var s corev1.Secret
	err := e.k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, &s)
	if apierrors.IsNotFound(err) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return &s, true
}

func waitSecret(t *testing.T, ns, name string, present bool) *corev1.Secret {
	t.Helper()
	var s *corev1.Secret
	eventually(t, 20*time.Second, fmt.Sprintf("secret %s/%s present=%v", ns, name, present), func() (bool, string) {
		var ok bool
		s, ok = secret(t, ns, name)
		return ok == present, fmt.Sprintf("present=%v", ok)
	})
	return s
}

// dockerLogin is the login a docker client would use for host.
func dockerLogin(t *testing.T, s *corev1.Secret, host string) (user, password string) {
	t.Helper()
	if s.Type != corev1.SecretTypeDockerConfigJson {
		t.Fatalf("secret %s is of type %s", s.Name, s.Type)
	}
	var cfg struct {
		Auths map[string]struct {
			Auth string `json:"auth"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
		t.Fatal(err)
	}
	entry, ok := cfg.Auths[host]
	if !ok {
		t.Fatalf("docker config of %s has no entry for %s", s.Name, host)
	}
	raw, err := base64.StdEncoding.DecodeString(entry.Auth)
	if err != nil {
		t.Fatal(err)
	}
	user, password, _ = strings.Cut(string(raw), ":")
	return user, password
}

// seed reads testdata's JFrog manifest strictly (every field must be
// known to podid's CRD types) with the emulated Artifactory's host.
func seed(t *testing.T) *v1alpha1.SecretRotator {
	t.Helper()
	raw, err := os.ReadFile("testdata/jfrog-secretrotator.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rot v1alpha1.SecretRotator
	if err := yaml.UnmarshalStrict([]byte(strings.ReplaceAll(string(raw), "ARTIFACTORY_HOST", e.artHost)), &rot); err != nil {
		t.Fatalf("the JFrog manifest does not decode into podid's SecretRotator: %v", err)
	}
	return &rot
}

func caSecret(t *testing.T, ns, name string, ca []byte) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{"ca.crt": ca}}
	if err := e.k8s.Create(t.Context(), s); err != nil {
		t.Fatal(err)
	}
}

// tlsTransport trusts ca.
func tlsTransport(t *testing.T, ca []byte) *http.Transport {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("bad CA")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return tr
}

// metric is the value of the rotator's series name{labels}, and whether
// it exists.
func metric(t *testing.T, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	families, err := e.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue series
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}
