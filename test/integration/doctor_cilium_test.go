package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/doctor"
)

// Where Cilium runs (its CRDs exist), doctor reads CiliumNetworkPolicies
// and knows that Cilium classes the agent's address as the host entity:
// a NetworkPolicy allowing egress to 0.0.0.0/0 does not reach it
// (cilium/cilium#34387), a CiliumNetworkPolicy with toEntities host does.
// Cilium itself is not here: its CRDs are, as Cilium's install makes them
// (the objects' shape is what doctor reads), for this test only.
func TestDoctorUnderCilium(t *testing.T) {
	ctx := t.Context()
	installCiliumCRDs(t)
	ns := newNamespace(t)
	d := &doctor.Doctor{Kube: k8s, Namespace: doctorNS}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{ServiceAccountName: "default", NodeName: "node-a", Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}}
	injected(pod)
	create(t, pod)
	says := func(status doctor.Status, want string) {
		t.Helper()
		r, err := d.Pod(ctx, ns, "app")
		if err != nil {
			t.Fatal(err)
		}
		c := checkNamed(r, "network-policy")
		if c.Status != status || !strings.Contains(c.Fact+" | "+c.Fix, want) {
			t.Fatalf("network-policy: %s: %s | %s; want %s saying %q", c.Status, c.Fact, c.Fix, status, want)
		}
		t.Logf("%s network-policy: %s | %s", c.Status, c.Fact, c.Fix)
	}

	says(doctor.OK, "no NetworkPolicy or Cilium policy restricts")
	create(t, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "internet-only"}, Spec: networkingv1.NetworkPolicySpec{
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		Egress:      []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}}}}},
	}})
	says(doctor.Fail, "toEntities: [host]")

	cnp := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
		"metadata": map[string]any{"namespace": ns, "name": "podid-agent"},
		"spec": map[string]any{
			"endpointSelector": map[string]any{"matchLabels": map[string]any{"k8s:app": "web"}},
			"egress": []any{map[string]any{
				"toEntities": []any{"world"},
				"toPorts":    []any{map[string]any{"ports": []any{map[string]any{"port": "80", "protocol": "TCP"}}}},
			}},
		},
	}}
	create(t, cnp)
	says(doctor.Fail, "restricted (by NetworkPolicy internet-only, CiliumNetworkPolicy podid-agent)")

	// The fix doctor gives.
	if err := updateLatest(t, cnp, func() {
		rule := cnp.Object["spec"].(map[string]any)["egress"].([]any)[0].(map[string]any)
		rule["toEntities"] = []any{"host"}
	}); err != nil {
		t.Fatal(err)
	}
	says(doctor.OK, "CiliumNetworkPolicy podid-agent allows egress to the host entity on TCP 80")
}

// installCiliumCRDs makes Cilium's two policy resources for the test, and
// removes them after it, waiting until they are gone, so that no other
// test's doctor sees Cilium.
func installCiliumCRDs(t *testing.T) {
	t.Helper()
	for _, k := range []struct {
		kind  string
		scope apiextensionsv1.ResourceScope
	}{{"CiliumNetworkPolicy", apiextensionsv1.NamespaceScoped}, {"CiliumClusterwideNetworkPolicy", apiextensionsv1.ClusterScoped}} {
		plural := strings.ToLower(k.kind) + "s"
		crd := &apiextensionsv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: plural + ".cilium.io"},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{
				Group: "cilium.io", Scope: k.scope,
				Names: apiextensionsv1.CustomResourceDefinitionNames{Kind: k.kind, ListKind: k.kind + "List", Plural: plural, Singular: strings.ToLower(k.kind)},
				Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v2", Served: true, Storage: true,
					Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
						Type: "object", XPreserveUnknownFields: ptr.To(true)}}}},
			},
		}
		// As unstructured: the test client's scheme has no CRD types.
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(crd)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: obj}
		u.SetAPIVersion("apiextensions.k8s.io/v1")
		u.SetKind("CustomResourceDefinition")
		create(t, u)
		eventually(t, k.kind+" to be served", func(ctx context.Context) (bool, error) {
			list := &unstructured.UnstructuredList{}
			list.SetAPIVersion("cilium.io/v2")
			list.SetKind(k.kind + "List")
			return k8s.List(ctx, list) == nil, nil
		})
		t.Cleanup(func() {
			ctx := context.Background()
			if err := k8s.Delete(ctx, u); err != nil && !apierrors.IsNotFound(err) {
				t.Error(err)
			}
			// The test's context has ended: wait on one of its own.
			if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
				list := &unstructured.UnstructuredList{}
				list.SetAPIVersion("cilium.io/v2")
				list.SetKind(k.kind + "List")
				err := k8s.List(ctx, list)
				return meta.IsNoMatchError(err) || apierrors.IsNotFound(err), nil
			}); err != nil {
				t.Errorf("%s still served after its CRD was deleted: %v", k.kind, err)
			}
		})
	}
}

// create makes obj, deleted after the test.
func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8s.Create(t.Context(), obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k8s.Delete(context.Background(), obj) })
}
