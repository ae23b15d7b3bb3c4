package doctor

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/podidentity"
)

type networkPolicy = networkingv1.NetworkPolicy

func (d *Doctor) networkPolicies(ctx context.Context, namespace string) ([]networkPolicy, error) {
	var l networkingv1.NetworkPolicyList
	if err := d.Kube.List(ctx, &l, client.InNamespace(namespace)); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// checkNetworkPolicies evaluates the NetworkPolicies selecting the pod, and
// Cilium's policies where Cilium runs, as a CNI enforcing them would: once
// one restricts its egress, some policy must allow TCP to the agent's
// address and port (and, under Cilium, none deny it).
func checkNetworkPolicies(pc *podContext) Check {
	const name = "network-policy"
	switch {
	case pc.policyErr != nil:
		return skipped(name, "could not list NetworkPolicies: "+short(pc.policyErr))
	case pc.ciliumErr != nil:
		return skipped(name, "could not list Cilium's policies: "+short(pc.ciliumErr))
	}
	host, port := agentHost(pc), agentPort(pc)
	ip := net.ParseIP(host)
	cilium := pc.cilium != nil
	var restricting []string
	allowed := ""
	for i := range pc.policies {
		np := &pc.policies[i]
		if !selects(&np.Spec.PodSelector, pc.pod.Labels) || !restrictsEgress(np) {
			continue
		}
		if rule := allowingRule(np, ip, port, cilium); rule >= 0 && allowed == "" {
			allowed = fmt.Sprintf("NetworkPolicy %s allows egress to %s:%d (egress rule %d)", np.Name, host, port, rule+1)
		}
		restricting = append(restricting, np.Name)
	}
	if cilium {
		v := pc.cilium.verdict(pc.pod, pc.sa, port)
		if v.deniedBy != "" {
			return failed(name, fmt.Sprintf("%s denies this pod egress to the host entity, where the agent is (%s:%d): the SDK cannot reach it", v.deniedBy, host, port),
				"remove the egressDeny rule for the host entity on TCP "+strconv.Itoa(int(port))+" from "+v.deniedBy)
		}
		if len(restricting) > 0 || len(v.restricting) > 0 {
			for i := range restricting {
				restricting[i] = "NetworkPolicy " + restricting[i]
			}
			restricting = append(restricting, v.restricting...)
		}
		if allowed == "" && v.allowedBy != "" {
			allowed = fmt.Sprintf("%s allows egress to the host entity on TCP %d, where the agent is (egress rule %d)", v.allowedBy, port, v.allowedByRuleNum)
		}
	}
	switch {
	case len(restricting) == 0 && cilium:
		return ok(name, "no NetworkPolicy or Cilium policy restricts this pod's egress")
	case len(restricting) == 0:
		return ok(name, "no NetworkPolicy restricts this pod's egress")
	case allowed != "":
		return ok(name, allowed)
	case cilium:
		return failed(name, fmt.Sprintf("under Cilium, this pod's egress is restricted (by %s) and nothing allows it to %s:%d: the SDK cannot reach the agent", strings.Join(restricting, ", "), host, port),
			ciliumFix(host, port))
	}
	return failed(name, fmt.Sprintf("NetworkPolicies %s select this pod and allow no egress to %s:%d: the SDK cannot reach the agent", strings.Join(restricting, ", "), host, port),
		fmt.Sprintf("add to one of them the egress rule {to: [{ipBlock: {cidr: %s/32}}], ports: [{protocol: TCP, port: %d}]}", host, port))
}

func restrictsEgress(np *networkPolicy) bool {
	for _, t := range np.Spec.PolicyTypes {
		if t == networkingv1.PolicyTypeEgress {
			return true
		}
	}
	return len(np.Spec.PolicyTypes) == 0 && len(np.Spec.Egress) > 0
}

// allowingRule is the index of the egress rule allowing TCP to ip:port, or
// -1. Pod and namespace selectors never match the agent's link-local
// address, which belongs to no pod; under Cilium, neither does an ipBlock
// (the address is the host entity's).
func allowingRule(np *networkPolicy, ip net.IP, port int32, cilium bool) int {
	for i, rule := range np.Spec.Egress {
		if portAllowed(rule.Ports, port) && (len(rule.To) == 0 || !cilium && peerAllowed(rule.To, ip)) {
			return i
		}
	}
	return -1
}

func portAllowed(ports []networkingv1.NetworkPolicyPort, port int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
			continue
		}
		if p.Port == nil {
			return true
		}
		if p.Port.StrVal != "" {
			continue // a named port is a pod's; the agent's address is no pod's
		}
		end := p.Port.IntVal
		if p.EndPort != nil {
			end = *p.EndPort
		}
		if port >= p.Port.IntVal && port <= end {
			return true
		}
	}
	return false
}

func peerAllowed(peers []networkingv1.NetworkPolicyPeer, ip net.IP) bool {
	if len(peers) == 0 {
		return true
	}
	for _, peer := range peers {
		if peer.IPBlock == nil || ip == nil {
			continue
		}
		if _, n, err := net.ParseCIDR(peer.IPBlock.CIDR); err != nil || !n.Contains(ip) {
			continue
		}
		excepted := false
		for _, e := range peer.IPBlock.Except {
			if _, n, err := net.ParseCIDR(e); err == nil && n.Contains(ip) {
				excepted = true
			}
		}
		if !excepted {
			return true
		}
	}
	return false
}

// agentPort is the port of the pod's credentials URI (80 by default).
func agentPort(pc *podContext) int32 {
	for _, env := range pc.env {
		u, err := url.Parse(envValue(env, podidentity.EnvCredentialsFullURI))
		if err != nil || u.Host == "" {
			continue
		}
		if p, err := strconv.Atoi(u.Port()); err == nil {
			return int32(p)
		}
		if u.Scheme == "https" {
			return 443
		}
		return 80
	}
	return 80
}
