package doctor

import (
	"net"
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
