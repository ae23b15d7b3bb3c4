package webhook

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	gomodulesjsonpatch "gomodules.xyz/jsonpatch/v2"

	"github.com/podid/podid/internal/podidentity"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

var update = flag.Bool("update", false, "rewrite the golden patches in testdata/")

func container(name string, env ...corev1.EnvVar) corev1.Container {
	return corev1.Container{Name: name, Image: "app:1", Env: env}
}

func env(name, value string) corev1.EnvVar { return corev1.EnvVar{Name: name, Value: value} }

func podWith(annotations map[string]string, init []corev1.Container, containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "demo", Annotations: annotations},
		Spec:       corev1.PodSpec{ServiceAccountName: "app", InitContainers: init, Containers: containers},
	}
}

var irsaAnnotations = map[string]string{podidentity.AnnotationRoleARN: "arn:aws:iam::111122223333:role/irsa"}

// TestMutate checks each case's JSON patch against testdata/<case>.json
// (go test ./internal/webhook -update rewrites them; review the diff).
func TestMutate(t *testing.T) {
	mutated, _, _ := Mutate(podWith(nil, nil, container("app")), Config{}, true, nil)
	cases := []struct {
		name        string
		pod         *corev1.Pod
		cfg         Config
		association bool
		sa          map[string]string
		wantMode    string
		wantErr     string
	}{
		{name: "pod-identity", pod: podWith(nil, nil, container("app")), association: true, wantMode: modePodIdentity},
		{name: "init-and-skipped-containers", pod: podWith(map[string]string{podidentity.AnnotationSkipContainers: " sidecar ,other"}, []corev1.Container{container("init")}, container("app"), container("sidecar")), association: true, wantMode: modePodIdentity},
		{name: "all-containers-skipped", pod: podWith(map[string]string{podidentity.AnnotationSkipContainers: "app"}, nil, container("app")), association: true, wantMode: modePodIdentity},
		{name: "container-sets-its-own-uri", pod: podWith(nil, nil, container("app", env(podidentity.EnvCredentialsFullURI, "http://127.0.0.1:8080/creds")), container("other")), association: true, wantMode: modePodIdentity},
		{name: "reinvocation-changes-nothing", pod: mutated, association: true, wantMode: modePodIdentity},
		{name: "region", pod: podWith(nil, nil, container("app"), container("has-region", env("AWS_DEFAULT_REGION", "us-east-1"))), cfg: Config{Region: "eu-west-1"}, association: true, wantMode: modePodIdentity},
		{name: "ipv6-and-custom-token", pod: podWith(nil, nil, container("app")), cfg: Config{CredentialsURI: podidentity.CredentialsURIv6, ExpirationSeconds: 3600}, association: true, wantMode: modePodIdentity},
		{name: "proxy-bypass", pod: podWith(nil, nil,
			container("literal", env("HTTP_PROXY", "http://proxy:3128"), env("NO_PROXY", "10.0.0.0/8")),
			container("no-no-proxy", env("https_proxy", "http://proxy:3128")),
			container("from-configmap", env("HTTP_PROXY", "http://proxy:3128"), corev1.EnvVar{Name: "NO_PROXY", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "proxy"}, Key: "no_proxy"}}}),
		), association: true, wantMode: modePodIdentity},
		{name: "irsa", pod: podWith(nil, nil, container("app")), cfg: Config{IRSA: true, Region: "eu-west-1"},
			sa: map[string]string{podidentity.AnnotationRoleARN: "arn:aws:iam::111122223333:role/irsa", podidentity.AnnotationAudience: "sts.example.com", podidentity.AnnotationRegionalSTS: "true", podidentity.AnnotationTokenExpiration: "7200"}, wantMode: modeIRSA},
		{name: "pod-identity-wins-over-irsa", pod: podWith(nil, nil, container("app")), cfg: Config{IRSA: true}, association: true, sa: irsaAnnotations, wantMode: modePodIdentity},
		{name: "irsa-off", pod: podWith(nil, nil, container("app")), sa: irsaAnnotations, wantMode: modeNone},
		{name: "no-association", pod: podWith(nil, nil, container("app")), cfg: Config{IRSA: true}, wantMode: modeNone},
		{name: "irsa-bad-expiration", pod: podWith(nil, nil, container("app")), cfg: Config{IRSA: true},
			sa: map[string]string{podidentity.AnnotationRoleARN: "arn:aws:iam::111122223333:role/irsa", podidentity.AnnotationTokenExpiration: "60"}, wantErr: "3600 to 86400"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, err := json.Marshal(c.pod)
			if err != nil {
				t.Fatal(err)
			}
			got, mode, err := Mutate(c.pod, c.cfg, c.association, c.sa)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error = %v, want one mentioning %q", err, c.wantErr)
				}
				return
			}
			if err != nil || mode != c.wantMode {
				t.Fatalf("mode %q, error %v; want mode %q", mode, err, c.wantMode)
			}
			after, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if unchanged, _ := json.Marshal(c.pod); !bytes.Equal(unchanged, before) {
				t.Fatal("Mutate changed its argument")
			}
			resp := admission.PatchResponseFromRaw(before, after)
			// The patch as sent must turn the pod into the mutated one.
			ops, err := json.Marshal(resp.Patches)
			if err != nil {
				t.Fatal(err)
			}
			decoded, err := jsonpatch.DecodePatch(ops)
			if err != nil {
				t.Fatal(err)
			}
			applied, err := decoded.Apply(before)
			if err != nil {
				t.Fatalf("the patch does not apply: %v\n%s", err, ops)
			}
			if !jsonpatch.Equal(applied, after) {
				t.Fatalf("the patch gives\n%s\nnot\n%s", applied, after)
			}
			// The library orders operations on different fields by map
			// iteration; the golden file has them by path.
			sorted := slices.Clone(resp.Patches)
			slices.SortStableFunc(sorted, func(a, b gomodulesjsonpatch.Operation) int { return strings.Compare(a.Path, b.Path) })
			patch, err := json.MarshalIndent(sorted, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", c.name+".json"), append(patch, '\n'))
			// A second pass over the result is a no-op: reinvocation is safe.
			again, _, _ := Mutate(got, c.cfg, c.association, c.sa)
			if twice, _ := json.Marshal(again); !bytes.Equal(twice, after) {
				t.Fatalf("mutating the mutated pod changed it again:\n%s\n%s", after, twice)
			}
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/webhook -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs (go test ./internal/webhook -update rewrites it):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, ""},
		{Config{ExpirationSeconds: 60}, "minimum of 600s"},
		{Config{MountPath: "relative"}, "not absolute"},
		{Config{CredentialsURI: "169.254.170.23/v1/credentials"}, "not an http(s) URL"},
	} {
		err := c.cfg.Validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: error %v, want %q", c.cfg, err, c.want)
		}
	}
}
