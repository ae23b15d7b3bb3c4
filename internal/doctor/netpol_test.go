package doctor

import (
	"encoding/json"
	"net"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func TestNetworkPolicies(t *testing.T) {
	tcp, udp := ptr.To(corev1.ProtocolTCP), ptr.To(corev1.ProtocolUDP)
	port := func(p int32) *intstr.IntOrString { v := intstr.FromInt32(p); return &v }
	egress := func(rules ...networkingv1.NetworkPolicyEgressRule) networkPolicy {
		return networkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}, Egress: rules}}
	}
	block := func(cidr string, except ...string) []networkingv1.NetworkPolicyPeer {
		return []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}}
	}
	for _, c := range []struct {
		name   string
		policy networkPolicy
		status Status
	}{
		{"deny all egress", egress(), Fail},
		{"allow all egress", egress(networkingv1.NetworkPolicyEgressRule{}), OK},
		{"DNS only", egress(networkingv1.NetworkPolicyEgressRule{Ports: []networkingv1.NetworkPolicyPort{{Protocol: udp, Port: port(53)}}}), Fail},
		{"agent /32 on 80", egress(networkingv1.NetworkPolicyEgressRule{To: block("169.254.170.23/32"), Ports: []networkingv1.NetworkPolicyPort{{Protocol: tcp, Port: port(80)}}}), OK},
		{"agent on 443 only", egress(networkingv1.NetworkPolicyEgressRule{To: block("169.254.170.23/32"), Ports: []networkingv1.NetworkPolicyPort{{Port: port(443)}}}), Fail},
		{"port range", egress(networkingv1.NetworkPolicyEgressRule{To: block("0.0.0.0/0"), Ports: []networkingv1.NetworkPolicyPort{{Port: port(1), EndPort: ptr.To(int32(1024))}}}), OK},
		{"link-local excepted", egress(networkingv1.NetworkPolicyEgressRule{To: block("0.0.0.0/0", "169.254.0.0/16")}), Fail},
		{"pods only", egress(networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}), Fail},
		{"named port", egress(networkingv1.NetworkPolicyEgressRule{Ports: []networkingv1.NetworkPolicyPort{{Port: ptr.To(intstr.FromString("http"))}}}), Fail},
		{"ingress only", networkPolicy{Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}, OK},
		{"not selecting the pod", networkPolicy{Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}}}, OK},
	} {
		t.Run(c.name, func(t *testing.T) {
			pc := &podContext{pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}}, policies: []networkPolicy{c.policy}}
			if got := checkNetworkPolicies(pc); got.Status != c.status {
				t.Errorf("%s: %s", got.Status, got.Fact)
			}
		})
	}
	if peerAllowed(block("10.0.0.0/8"), net.ParseIP("169.254.170.23")) {
		t.Error("10.0.0.0/8 holds the agent")
	}
}

func TestBypasses(t *testing.T) {
	for _, c := range []struct {
		noProxy string
		want    bool
	}{
		{"", false}, {"*", true}, {"169.254.170.23", true}, {" .svc, 169.254.170.23 ", true}, {"169.254.0.0/16", true},
		{"10.0.0.0/8,.cluster.local", false}, {"169.254.170.2", false}, {"[169.254.170.23]", true},
	} {
		if got := bypasses(c.noProxy, "169.254.170.23"); got != c.want {
			t.Errorf("bypasses(%q) = %v", c.noProxy, got)
		}
	}
}

// Under Cilium the agent's address is the host entity: ipBlocks and
// toCIDR do not reach it (cilium/cilium#34387); toEntities host, cluster
// or all, and rules without destinations, do.
func TestNetworkPoliciesUnderCilium(t *testing.T) {
	egress := func(rules ...networkingv1.NetworkPolicyEgressRule) networkPolicy {
		return networkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "np"}, Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}, Egress: rules}}
	}
	tcp80 := []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(80))}}
	cnp := func(ns, spec string) ciliumPolicy {
		var s ciliumSpec
		if err := json.Unmarshal([]byte(spec), &s); err != nil {
			t.Fatal(err)
		}
		kind := "CiliumNetworkPolicy"
		if ns == "" {
			kind = "CiliumClusterwideNetworkPolicy"
		}
		return ciliumPolicy{kind: kind, name: "cnp", namespace: ns, specs: []ciliumSpec{s}}
	}
	const web = `"endpointSelector": {"matchLabels": {"k8s:app": "web"}}`
	for _, c := range []struct {
		name   string
		np     []networkPolicy
		cnp    []ciliumPolicy
		status Status
		says   string
	}{
		{"nothing restricts", nil, nil, OK, "no NetworkPolicy or Cilium policy restricts"},
		{"NetworkPolicy to 0.0.0.0/0 (cilium#34387)", []networkPolicy{egress(networkingv1.NetworkPolicyEgressRule{
			To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}}}})}, nil, Fail, "toEntities: [host]"},
		{"NetworkPolicy allowing all egress", []networkPolicy{egress(networkingv1.NetworkPolicyEgressRule{})}, nil, OK, "NetworkPolicy np allows"},
		{"NetworkPolicy allowing TCP 80 anywhere", []networkPolicy{egress(networkingv1.NetworkPolicyEgressRule{Ports: tcp80})}, nil, OK, "NetworkPolicy np allows"},
		{"toEntities host on 80", nil, []ciliumPolicy{cnp("team", `{`+web+`, "egress": [{"toEntities": ["host"], "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}]}]}`)}, OK, "CiliumNetworkPolicy cnp allows egress to the host entity on TCP 80"},
		{"toEntities host on 443 only", nil, []ciliumPolicy{cnp("team", `{`+web+`, "egress": [{"toEntities": ["host"], "toPorts": [{"ports": [{"port": "443"}]}]}]}`)}, Fail, "restricted (by CiliumNetworkPolicy cnp)"},
		{"toEntities cluster", nil, []ciliumPolicy{cnp("team", `{`+web+`, "egress": [{"toEntities": ["cluster"]}]}`)}, OK, "allows"},
		{"toEntities world", nil, []ciliumPolicy{cnp("team", `{`+web+`, "egress": [{"toEntities": ["world"]}]}`)}, Fail, "toEntities: [host]"},
		{"toCIDR the agent's address", nil, []ciliumPolicy{cnp("team", `{`+web+`, "egress": [{"toCIDR": ["169.254.170.23/32"]}]}`)}, Fail, "no ipBlock or toCIDR matches"},
		{"ports to anywhere", nil, []ciliumPolicy{cnp("team", `{`+web+`, "egress": [{"toPorts": [{"ports": [{"port": "1", "endPort": 1024, "protocol": "ANY"}]}]}]}`)}, OK, "allows"},
		{"empty rule: default deny", nil, []ciliumPolicy{cnp("team", `{`+web+`, "egress": [{}]}`)}, Fail, "restricted (by CiliumNetworkPolicy cnp)"},
		{"default deny off", nil, []ciliumPolicy{cnp("team", `{`+web+`, "enableDefaultDeny": {"egress": false}, "egress": [{"toEntities": ["world"]}]}`)}, OK, "no NetworkPolicy or Cilium policy restricts"},
		{"egressDeny of the host", nil, []ciliumPolicy{cnp("team", `{`+web+`, "egress": [{"toEntities": ["all"]}], "egressDeny": [{"toEntities": ["host"]}]}`)}, Fail, "denies this pod egress to the host entity"},
		{"another pod's", nil, []ciliumPolicy{cnp("team", `{"endpointSelector": {"matchLabels": {"app": "db"}}, "egress": [{}]}`)}, OK, "no NetworkPolicy or Cilium policy restricts"},
		{"another namespace's", nil, []ciliumPolicy{cnp("other", `{"endpointSelector": {}, "egress": [{}]}`)}, OK, "no NetworkPolicy or Cilium policy restricts"},
		{"clusterwide, by namespace", nil, []ciliumPolicy{cnp("", `{"endpointSelector": {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "team"}}, "egress": [{"toEntities": ["world"]}]}`)}, Fail, "CiliumClusterwideNetworkPolicy cnp"},
		{"clusterwide, by namespace label", nil, []ciliumPolicy{cnp("", `{"endpointSelector": {"matchExpressions": [{"key": "io.cilium.k8s.namespace.labels.tier", "operator": "In", "values": ["apps"]}]}, "egress": [{}]}`)}, Fail, "CiliumClusterwideNetworkPolicy cnp"},
		{"clusterwide, by ServiceAccount, allowing", nil, []ciliumPolicy{cnp("", `{"endpointSelector": {"matchLabels": {"io.cilium.k8s.policy.serviceaccount": "app"}}, "egress": [{"toEntities": ["host"]}]}`)}, OK, "allows"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pc := &podContext{pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Labels: map[string]string{"app": "web"}}}, sa: "app",
				policies: c.np, cilium: &ciliumPolicies{items: c.cnp, nsLabels: map[string]string{"tier": "apps"}}}
			got := checkNetworkPolicies(pc)
			if got.Status != c.status || !strings.Contains(got.Fact+" | "+got.Fix, c.says) {
				t.Errorf("%s: %s | %s; want %s saying %q", got.Status, got.Fact, got.Fix, c.status, c.says)
			}
		})
	}
}
