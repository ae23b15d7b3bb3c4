package rotator

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/regcred"
)

func TestBackoffGrowsAndIsBounded(t *testing.T) {
	b := Backoff{Base: 10 * time.Second, Max: time.Minute}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, time.Minute, time.Minute}
	for i, w := range want {
		if got := b.delay(i + 1); got != w {
			t.Errorf("delay(%d) = %s, want %s", i+1, got, w)
		}
	}
	b.Jitter = 0.2
	for range 1000 {
		if d := b.delay(1); d < 8*time.Second || d > 12*time.Second {
			t.Fatalf("jittered delay %s outside ±20%% of 10s", d)
		}
	}
}

func TestRefreshAfter(t *testing.T) {
	for _, c := range []struct {
		refresh  time.Duration
		lifetime time.Duration
		want     time.Duration
	}{
		{0, 12 * time.Hour, 9 * time.Hour},
		{30 * time.Minute, 12 * time.Hour, 30 * time.Minute},
		{5 * time.Hour, 2 * time.Hour, 90 * time.Minute}, // never longer than ¾ of the token's life
		{0, 8 * time.Second, 6 * time.Second},
	} {
		spec := &v1alpha1.SecretRotatorSpec{}
		if c.refresh > 0 {
			spec.RefreshTime = &metav1.Duration{Duration: c.refresh}
		}
		if got := refreshAfter(spec, c.lifetime); got != c.want {
			t.Errorf("refreshTime %s, lifetime %s: %s, want %s", c.refresh, c.lifetime, got, c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := v1alpha1.SecretRotatorSpec{ArtifactoryURL: "a.jfrog.io", SecretName: "s"}
	if err := validate(&ok); err != nil {
		t.Fatal(err)
	}
	for want, spec := range map[string]v1alpha1.SecretRotatorSpec{
		"no secret to write":          {ArtifactoryURL: "a"},
		"needs artifactoryUrl":        {SecretName: "s"},
		"needs ecr.region":            {Provider: "ecr", SecretName: "s"},
		"is not docker or generic":    {ArtifactoryURL: "a", GeneratedSecrets: []v1alpha1.GeneratedSecret{{SecretName: "s", SecretType: "helm"}}},
		"shorter than 1m0s":           {ArtifactoryURL: "a", SecretName: "s", RefreshTime: &metav1.Duration{Duration: 30 * time.Second}},
		"needs certificateSecretName": {ArtifactoryURL: "a", SecretName: "s", Security: v1alpha1.SecurityConfig{Enabled: true}},
	} {
		if err := validate(&spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want %q", spec, err, want)
		}
	}
}

func TestWantedSecretsKeepsTheLegacyName(t *testing.T) {
	got := wantedSecrets(&v1alpha1.SecretRotatorSpec{SecretName: "legacy", GeneratedSecrets: []v1alpha1.GeneratedSecret{{SecretName: "a"}, {SecretName: "legacy", SecretType: "generic"}}})
	if len(got) != 2 || got[0].SecretType != "docker" || got[1].SecretType != "generic" {
		t.Fatalf("%+v", got)
	}
}

// merged brings a secret to the spec and reports a change only when there is one.
func TestMerged(t *testing.T) {
	rot := &v1alpha1.SecretRotator{ObjectMeta: metav1.ObjectMeta{Name: "r", UID: "u1"}, Spec: v1alpha1.SecretRotatorSpec{
		SecretMetadata: v1alpha1.SecretMetadata{Labels: map[string]string{"a": "1"}, Annotations: map[string]string{"x": "1"}},
	}}
	creds := &regcred.Credentials{Auths: []regcred.Auth{{Host: "h", Username: "u", Password: "p"}}}
	desired := desiredSecret(rot, "ns", v1alpha1.GeneratedSecret{SecretName: "s", SecretType: "docker"}, creds)
	if _, changed := merged(desired, desired); changed {
		t.Fatal("an identical secret is reported changed")
	}

	// Someone else's label stays; a key the spec dropped goes.
	existing := desired.DeepCopy()
	existing.Labels["theirs"] = "keep"
	rot.Spec.SecretMetadata = v1alpha1.SecretMetadata{Labels: map[string]string{"b": "2"}}
	next, changed := merged(existing, desiredSecret(rot, "ns", v1alpha1.GeneratedSecret{SecretName: "s", SecretType: "docker"}, creds))
	if !changed || next.Labels["theirs"] != "keep" || next.Labels["b"] != "2" || next.Labels["a"] != "" || next.Annotations["x"] != "" || next.Labels[LabelRotator] != "r" {
		t.Fatalf("changed %v, labels %v, annotations %v", changed, next.Labels, next.Annotations)
	}

	// New credentials change the data.
	creds2 := &regcred.Credentials{Auths: []regcred.Auth{{Host: "h", Username: "u", Password: "p2"}}}
	if _, changed := merged(next, desiredSecret(rot, "ns", v1alpha1.GeneratedSecret{SecretName: "s", SecretType: "docker"}, creds2)); !changed {
		t.Fatal("a new password is not a change")
	}
	if desired.Type != corev1.SecretTypeDockerConfigJson {
		t.Fatalf("type %s", desired.Type)
	}
}

func TestTokenKeyIgnoresWhatDoesNotNeedANewToken(t *testing.T) {
	a := v1alpha1.SecretRotatorSpec{ArtifactoryURL: "a", SecretName: "s"}
	b := a
	b.SecretName, b.SecretMetadata, b.NamespaceSelector = "t", v1alpha1.SecretMetadata{Labels: map[string]string{"x": "y"}}, metav1.LabelSelector{MatchLabels: map[string]string{"k": "v"}}
	if tokenKey(&a) != tokenKey(&b) {
		t.Error("secret names, metadata and selector changed the token key")
	}
	b.ArtifactoryURL = "b"
	if tokenKey(&a) == tokenKey(&b) {
		t.Error("another Artifactory kept the token key")
	}
}

// The managed-metadata annotation is on a secret anyone with write access
// to it can edit: whatever it says, merging never panics, keeps the
// rotator's label and never drops a label the annotation does not name.
func FuzzManagedMetadata(f *testing.F) {
	f.Add("labels=a,b;annotations=c")
	f.Add(";;=,,labels=;annotations")
	f.Add("labels=podid.io/secret-rotator")
	rot := &v1alpha1.SecretRotator{ObjectMeta: metav1.ObjectMeta{Name: "r", UID: "u"}}
	creds := &regcred.Credentials{Auths: []regcred.Auth{{Host: "h", Username: "u", Password: "p"}}}
	desired := desiredSecret(rot, "ns", v1alpha1.GeneratedSecret{SecretName: "s", SecretType: "docker"}, creds)
	f.Fuzz(func(t *testing.T, annotation string) {
		existing := desired.DeepCopy()
		existing.Labels["theirs"] = "x"
		existing.Annotations[annotationManagedMetadata] = annotation
		next, _ := merged(existing, desired)
		if next.Labels[LabelRotator] != "r" {
			t.Fatal("the rotator's label was lost")
		}
		labels, _ := parseManagedKeys(annotation)
		if next.Labels["theirs"] != "x" && !slices.Contains(labels, "theirs") {
			t.Fatal("a label the annotation does not name was dropped")
		}
	})
}
