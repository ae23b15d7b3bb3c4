// Package chart tests the Helm chart: it lints, renders each values file in
// testdata/ to its golden manifest, refuses to render without the required
// values, and every object it renders is accepted by a real API server
// (server-side dry run) with podid's CRDs installed.
package chart

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kubeletconfigv1 "k8s.io/kubelet/config/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/podid/podid/internal/agentcmd"
	"github.com/podid/podid/internal/agentpolicy"
	"github.com/podid/podid/internal/cli"
	"github.com/podid/podid/internal/credprovider"
	"github.com/podid/podid/internal/passrole"
	"github.com/podid/podid/internal/podcheck"
	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/internal/webhook"
	"github.com/podid/podid/test/harness/localcluster"
)

var update = flag.Bool("update", false, "rewrite the golden manifests in testdata/")

const namespace = "podid-system"

// kubeVersion is the API server the tests run, which the chart is rendered for.
const kubeVersion = "1.37.2"

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin, err := filepath.Abs("../../bin/helm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("bin/helm is missing: run `make tools` (hack/tools.sh helm)")
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), errors.New(stderr.String())
	}
	return stdout.String(), nil
}

func render(t *testing.T, values string) string {
	t.Helper()
	out, err := helm(t, "template", "podid", "../../charts/podid", "--kube-version", kubeVersion, "--namespace", namespace, "--include-crds", "-f", values)
	if err != nil {
		t.Fatalf("helm template -f %s: %v", values, err)
	}
	return out
}

func cases(t *testing.T) []string {
	files, err := filepath.Glob("testdata/*.values.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no values files in testdata: %v", err)
	}
	return files
}

func TestLint(t *testing.T) {
	for _, values := range cases(t) {
		if out, err := helm(t, "lint", "--strict", "--kube-version", kubeVersion, "../../charts/podid", "-f", values); err != nil {
			t.Errorf("helm lint -f %s: %v\n%s", values, err, out)
		}
	}
}

func TestGoldenManifests(t *testing.T) {
	for _, values := range cases(t) {
		got := render(t, values)
		golden := strings.TrimSuffix(values, ".values.yaml") + ".golden.yaml"
		if *update {
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (go test ./test/chart -update writes it)", err)
		}
		if got != string(want) {
			t.Errorf("%s differs from rendering %s; review and run go test ./test/chart -update:\n%s", golden, values, diff(string(want), got))
		}
	}
}

// diff shows the first lines that differ.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n- " + wl + "\n+ " + gl
		}
	}
	return ""
}

func TestRequiredValues(t *testing.T) {
	for _, missing := range []string{"clusterName", "accountId", "region"} {
		args := []string{"template", "podid", "../../charts/podid", "--kube-version", kubeVersion}
		for _, v := range []string{"clusterName=c", "accountId=111122223333", "region=eu-west-1"} {
			if !strings.HasPrefix(v, missing+"=") {
				args = append(args, "--set", v)
			}
		}
		_, err := helm(t, args...)
		if err == nil || !strings.Contains(err.Error(), missing+" is required") {
			t.Errorf("rendering without %s: %v", missing, err)
		}
	}
}

// objects splits a rendered manifest into objects.
func objects(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	var out []*unstructured.Unstructured
	for {
		var raw map[string]any
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatal(err)
		}
		if len(raw) > 0 {
			out = append(out, &unstructured.Unstructured{Object: raw})
		}
	}
}

// Every rendered object is valid to a real API server. Objects of other
// projects' CRDs (cert-manager, Prometheus Operator) are checked only by
// their golden files: their CRDs are not installed here.
func TestManifestsAreAcceptedByTheAPIServer(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		abs, _ := filepath.Abs("../../bin")
		t.Setenv("KUBEBUILDER_ASSETS", abs)
	}
	cluster, err := localcluster.Start(localcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Stop() })
	if err := cluster.Client.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}
	foreign := map[string]bool{"cert-manager.io/v1": true, "monitoring.coreos.com/v1": true}
	for _, values := range cases(t) {
		checked := 0
		for _, obj := range objects(t, render(t, values)) {
			if foreign[obj.GetAPIVersion()] {
				continue
			}
			if obj.GetKind() == "CustomResourceDefinition" {
				continue // installed by localcluster from the same files
			}
			if err := cluster.Client.Create(t.Context(), obj, client.DryRunAll); err != nil {
				t.Errorf("%s: the API server refuses %s %s: %v", values, obj.GetKind(), obj.GetName(), err)
			}
			checked++
		}
		if checked < 10 {
			t.Errorf("%s: only %d objects checked", values, checked)
		}
	}
}

// The chart's webhook configuration is the one the Go code builds (which the
// sandbox and the tests register), apart from where the service is.
func TestWebhookConfigurationMatchesTheCode(t *testing.T) {
	var rendered *admissionregistrationv1.MutatingWebhookConfiguration
	for _, obj := range objects(t, render(t, "testdata/default.values.yaml")) {
		if obj.GetKind() == "MutatingWebhookConfiguration" {
			rendered = &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, rendered); err != nil {
				t.Fatal(err)
			}
		}
	}
	if rendered == nil {
		t.Fatal("the chart renders no MutatingWebhookConfiguration")
	}
	want := webhook.Configuration(webhook.ConfigurationOptions{
		Name:              "podid",
		Service:           &admissionregistrationv1.ServiceReference{Namespace: namespace, Name: "podid", Port: ptr.To(int32(443))},
		ExcludeNamespaces: []string{namespace, "kube-system"},
	})
	got, exp := rendered.Webhooks[0], want.Webhooks[0]
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("the chart's webhook differs from webhook.Configuration:\nchart: %+v\ncode:  %+v", got, exp)
	}
}

// Every command line the chart renders parses with the binaries' own flags,
// so a renamed or mistyped flag fails here rather than in a crash-looping pod.
func TestRenderedCommandsParse(t *testing.T) {
	for _, values := range cases(t) {
		for _, obj := range objects(t, render(t, values)) {
			kind := obj.GetKind()
			if kind != "Deployment" && kind != "DaemonSet" {
				continue
			}
			var spec struct {
				Spec struct {
					Template struct {
						Spec corev1.PodSpec `json:"spec"`
					} `json:"template"`
				} `json:"spec"`
			}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &spec); err != nil {
				t.Fatal(err)
			}
			pod := spec.Spec.Template.Spec
			for _, c := range append(pod.InitContainers, pod.Containers...) {
				argv := append(append([]string{}, c.Command...), c.Args...)
				if len(argv) == 0 {
					t.Fatalf("%s %s: container %s has no command", kind, obj.GetName(), c.Name)
				}
				if argv[0] == "/podid-credential-provider" {
					if err := credprovider.Parse(argv[1:]); err != nil {
						t.Errorf("%s: %s %s, container %s: %v\n%v", values, kind, obj.GetName(), c.Name, err, argv)
					}
					continue
				}
				var root *cobra.Command
				switch argv[0] {
				case "/podid":
					root = cli.NewRootCommand(cli.Streams{In: strings.NewReader(""), Out: io.Discard, Err: io.Discard})
				case "/podid-agent":
					root = agentcmd.NewCommand()
				default:
					t.Fatalf("%s %s: container %s runs %s, not a podid binary", kind, obj.GetName(), c.Name, argv[0])
				}
				cmd, rest, err := root.Find(argv[1:])
				if err == nil {
					err = cmd.ParseFlags(rest)
				}
				if err != nil {
					t.Errorf("%s: %s %s, container %s: %v\n%v", values, kind, obj.GetName(), c.Name, err, argv)
				}
			}
		}
	}
}

// The rotator's pod is not sent to the webhook (podid's namespace never
// is), so the chart writes the injection itself; it must be exactly what
// the webhook would inject.
func TestRotatorCarriesTheWebhooksInjection(t *testing.T) {
	var pod *corev1.Pod
	for _, obj := range objects(t, render(t, "testdata/options.values.yaml")) {
		if obj.GetKind() == "Deployment" && obj.GetName() == "podid-rotator" {
			var d appsv1.Deployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &d); err != nil {
				t.Fatal(err)
			}
			pod = &corev1.Pod{Spec: d.Spec.Template.Spec}
		}
	}
	if pod == nil {
		t.Fatal("the options case renders no podid-rotator Deployment")
	}
	// Take out what the chart injects, let the webhook inject it, compare.
	injected := map[string]bool{podidentity.EnvCredentialsFullURI: true, podidentity.EnvAuthorizationTokenFile: true}
	bare := pod.DeepCopy()
	c := &bare.Spec.Containers[0]
	c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return injected[e.Name] })
	c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == podidentity.TokenVolumeName })
	bare.Spec.Volumes = slices.DeleteFunc(bare.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == podidentity.TokenVolumeName })
	mutated, _, err := webhook.Mutate(bare, webhook.Config{CredentialsURI: "http://169.254.170.23:8079/v1/credentials"}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	pick := func(p *corev1.Pod) (env []corev1.EnvVar, mounts []corev1.VolumeMount, vols []corev1.Volume) {
		for _, e := range p.Spec.Containers[0].Env {
			if injected[e.Name] {
				env = append(env, e)
			}
		}
		for _, m := range p.Spec.Containers[0].VolumeMounts {
			if m.Name == podidentity.TokenVolumeName {
				mounts = append(mounts, m)
			}
		}
		for _, v := range p.Spec.Volumes {
			if v.Name == podidentity.TokenVolumeName {
				vols = append(vols, v)
			}
		}
		return env, mounts, vols
	}
	ce, cm, cv := pick(pod)
	we, wm, wv := pick(mutated)
	if len(ce) != 2 || !reflect.DeepEqual(ce, we) || !reflect.DeepEqual(cm, wm) || !reflect.DeepEqual(cv, wv) {
		t.Errorf("the chart's injection differs from the webhook's:\nchart:   %+v %+v %+v\nwebhook: %+v %+v %+v", ce, cm, cv, we, wm, wv)
	}
}

// The CredentialProviderConfig the chart renders is one the kubelet starts
// with (an invalid one stops it), its plugin arguments parse, and the
// plugin asks the agent where pods do.
func TestCredentialProviderConfig(t *testing.T) {
	var config string
	for _, obj := range objects(t, render(t, "testdata/options.values.yaml")) {
		if obj.GetKind() == "ConfigMap" && obj.GetName() == "podid-credential-provider" {
			data, _, _ := unstructured.NestedStringMap(obj.Object, "data")
			config = data["podid-credential-provider.yaml"]
		}
	}
	if config == "" {
		t.Fatal("the options case renders no podid-credential-provider ConfigMap")
	}
	if err := credprovider.ValidateConfig([]byte(config)); err != nil {
		t.Fatalf("%v\n%s", err, config)
	}
	var cfg kubeletconfigv1.CredentialProviderConfig
	if err := sigsyaml.UnmarshalStrict([]byte(config), &cfg); err != nil {
		t.Fatal(err)
	}
	p := cfg.Providers[0]
	if err := credprovider.Parse(p.Args); err != nil {
		t.Errorf("args %v: %v", p.Args, err)
	}
	want := []string{"--agent-url=http://169.254.170.23:8079/v1/credentials", "--timeout=30s", "--jfrog-host=mycompany.jfrog.io"}
	if !slices.Equal(p.Args, want) {
		t.Errorf("args %v, want %v", p.Args, want)
	}
	if !slices.Contains(p.MatchImages, "mycompany.jfrog.io") || !slices.Contains(p.MatchImages, "*.dkr.ecr.*.amazonaws.com") {
		t.Errorf("matchImages %v lack the JFrog host or ECR", p.MatchImages)
	}
	_, err := helm(t, "template", "podid", "../../charts/podid", "--kube-version", kubeVersion, "-f", "testdata/options.values.yaml", "--set", "agent.enabled=false")
	if err == nil || !strings.Contains(err.Error(), "needs agent.enabled") {
		t.Errorf("credentialProvider without the agent: %v", err)
	}
}

// The admission policies the chart installs are the ones packages
// passrole and podcheck build (the templates are generated from them; this
// catches a stale one). The release namespace is podid's.
func TestAdmissionPolicies(t *testing.T) {
	want := map[string]any{}
	for _, obj := range []client.Object{passrole.Policy(), passrole.Binding(), passrole.RotatorPolicy(namespace), passrole.RotatorBinding(),
		podcheck.RequesterPolicy(), podcheck.RequesterBinding(), agentpolicy.Policy(namespace), agentpolicy.Binding()} {
		want[obj.GetObjectKind().GroupVersionKind().Kind+"/"+obj.GetName()] = obj
	}
	found := 0
	for _, obj := range objects(t, render(t, "testdata/default.values.yaml")) {
		if obj.GetKind() != "ValidatingAdmissionPolicy" && obj.GetKind() != "ValidatingAdmissionPolicyBinding" {
			continue
		}
		key := obj.GetKind() + "/" + obj.GetName()
		w, ok := want[key]
		if !ok {
			t.Errorf("the chart renders %s, which no package builds", key)
			continue
		}
		found++
		wantObj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(w)
		if err != nil {
			t.Fatal(err)
		}
		unstructured.RemoveNestedField(wantObj, "metadata", "creationTimestamp")
		unstructured.RemoveNestedField(wantObj, "status")
		unstructured.RemoveNestedField(obj.Object, "metadata", "labels")
		if !reflect.DeepEqual(obj.Object, wantObj) {
			t.Errorf("the chart's %s differs from the package's (make generate):\nchart: %v\ncode:  %v", key, obj.Object, wantObj)
		}
	}
	if found != len(want) {
		t.Errorf("the chart renders %d of the %d admission policies and bindings", found, len(want))
	}
}

// The chart renders for its declared floor (Chart.yaml's kubeVersion, 1.27)
// once podid's PassRole policy and the agent's startup taint, which need
// ValidatingAdmissionPolicy v1 (1.30), are turned off, and refuses to
// render without saying so below 1.30;
// nothing it renders on the floor is an API the floor does not serve.
func TestKubeVersionFloor(t *testing.T) {
	_, err := helm(t, "template", "podid", "../../charts/podid", "--kube-version", "1.29.4", "-f", "testdata/default.values.yaml", "--set", "agent.startupTaint.enabled=false")
	if err == nil || !strings.Contains(err.Error(), "passRole.enabled needs Kubernetes 1.30 or later") || !strings.Contains(err.Error(), "passRole.enabled=false") {
		t.Fatalf("rendering for 1.29 with PassRole on: %v", err)
	}
	_, err = helm(t, "template", "podid", "../../charts/podid", "--kube-version", "1.29.4", "-f", "testdata/default.values.yaml", "--set", "passRole.enabled=false")
	if err == nil || !strings.Contains(err.Error(), "agent.startupTaint.enabled=false") {
		t.Fatalf("rendering for 1.29 with the startup taint on: %v", err)
	}
	out, err := helm(t, "template", "podid", "../../charts/podid", "--kube-version", "1.27.0", "-f", "testdata/default.values.yaml", "--set", "passRole.enabled=false", "--set", "agent.startupTaint.enabled=false")
	if err != nil {
		t.Fatalf("rendering for the floor: %v", err)
	}
	for _, obj := range objects(t, out) {
		switch obj.GetAPIVersion() + "/" + obj.GetKind() {
		case "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy", "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding",
			"admissionregistration.k8s.io/v1beta1/MutatingAdmissionPolicy", "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy":
			t.Errorf("rendered for 1.27: %s %s, which 1.27 does not serve", obj.GetKind(), obj.GetName())
		}
	}
}

// podid's pods run on Linux nodes only, whatever nodeSelector adds; the
// webhook leaves kube-system alone unless told.
func TestLinuxNodesAndKubeSystem(t *testing.T) {
	out, err := helm(t, "template", "podid", "../../charts/podid", "--kube-version", kubeVersion, "-f", "testdata/options.values.yaml",
		"--set", "agent.nodeSelector.pool=system", "--set", "webhook.excludeKubeSystem=false")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, obj := range objects(t, out) {
		switch obj.GetKind() {
		case "Deployment", "DaemonSet":
			sel, _, _ := unstructured.NestedStringMap(obj.Object, "spec", "template", "spec", "nodeSelector")
			if sel["kubernetes.io/os"] != "linux" {
				t.Errorf("%s %s runs on any OS: nodeSelector %v", obj.GetKind(), obj.GetName(), sel)
			}
			if obj.GetKind() == "DaemonSet" && sel["pool"] != "system" {
				t.Errorf("the agent's own nodeSelector was lost: %v", sel)
			}
			seen++
		case "MutatingWebhookConfiguration":
			if strings.Contains(fmt.Sprint(obj.Object), "kube-system") {
				t.Errorf("kube-system is still excluded with webhook.excludeKubeSystem=false")
			}
		}
	}
	if seen < 3 {
		t.Errorf("checked %d workloads, want the server, the agent and the rotator", seen)
	}
}

// podid server's AWS identity: a half-given set of Roles Anywhere ARNs, an
// unknown source or issuer, cert-manager without an issuer and a key
// Secret without a name are refused saying what to set; the default
// renders podid's own CA and no key.
func TestAWSIdentityValues(t *testing.T) {
	base := []string{"template", "podid", "../../charts/podid", "--kube-version", kubeVersion, "-f", "testdata/default.values.yaml"}
	for _, c := range []struct {
		set  []string
		want string
	}{
		{[]string{"server.awsIdentity.rolesAnywhere.trustAnchorArn=arn:aws:rolesanywhere:eu-west-1:111122223333:trust-anchor/x"}, "server.awsIdentity.rolesAnywhere.profileArn is required with trustAnchorArn (podid roles-anywhere setup prints it)"},
		{[]string{"server.awsIdentity.source=keys"}, "server.awsIdentity.source must be rolesAnywhere, sdk or accessKeySecret"},
		{[]string{"server.awsIdentity.rolesAnywhere.certificate.issuer=vault"}, "certificate.issuer must be podid or certManager"},
		{[]string{"server.awsIdentity.rolesAnywhere.certificate.issuer=certManager"}, "certManagerIssuerRef is required with issuer certManager"},
		{[]string{"server.awsIdentity.source=accessKeySecret"}, "server.awsIdentity.accessKeySecret.name is required"},
	} {
		args := append([]string{}, base...)
		for _, s := range c.set {
			args = append(args, "--set", s)
		}
		if _, err := helm(t, args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--set %v: %v, want %q", c.set, err, c.want)
		}
	}
	out := render(t, "testdata/default.values.yaml")
	for _, want := range []string{"--roles-anywhere-own-ca", "--roles-anywhere-certificate-secret=podid-aws-identity"} {
		if !strings.Contains(out, want) {
			t.Errorf("the default rendering lacks %s", want)
		}
	}
	for _, values := range cases(t) {
		rendered := render(t, values)
		if strings.Contains(rendered, "AWS_SECRET_ACCESS_KEY") != strings.Contains(values, "access-key-secret") {
			t.Errorf("%s: AWS_SECRET_ACCESS_KEY rendered: %v", values, strings.Contains(rendered, "AWS_SECRET_ACCESS_KEY"))
		}
	}
}
