package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Cilium enforces NetworkPolicies, and its own CiliumNetworkPolicies, with
// one difference that decides whether a pod reaches its agent: the agent's
// address is the node's, which Cilium classes as its `host` entity, and no
// CIDR matches the host: neither a NetworkPolicy's ipBlock nor a
// CiliumNetworkPolicy's toCIDR (cilium/cilium#34387: a pod whose egress
// allows 0.0.0.0/0 is still refused). Egress to the agent is allowed by a
// rule naming the entity host (or cluster, or all), or by one without
// destinations. Doctor reads Cilium's policies only where Cilium's
// resources exist.

// ciliumPolicies are Cilium's policies that may apply to a pod: its
// namespace's CiliumNetworkPolicies and the CiliumClusterwideNetworkPolicies.
type ciliumPolicies struct {
	items []ciliumPolicy
	// nsLabels are the pod's namespace's labels, which clusterwide
	// selectors may name.
	nsLabels map[string]string
}

type ciliumPolicy struct {
	kind, name, namespace string
	specs                 []ciliumSpec
}

// ciliumSpec is the part of a Cilium policy's spec that decides egress.
type ciliumSpec struct {
	EndpointSelector  *metav1.LabelSelector `json:"endpointSelector"`
	Egress            []ciliumEgressRule    `json:"egress"`
	EgressDeny        []ciliumEgressRule    `json:"egressDeny"`
	EnableDefaultDeny struct {
		Egress *bool `json:"egress"`
	} `json:"enableDefaultDeny"`
}

type ciliumEgressRule struct {
	ToEntities []string `json:"toEntities"`
	// Destinations other than entities; none of them is the host.
	ToEndpoints []json.RawMessage `json:"toEndpoints"`
	ToCIDR      []json.RawMessage `json:"toCIDR"`
	ToCIDRSet   []json.RawMessage `json:"toCIDRSet"`
	ToServices  []json.RawMessage `json:"toServices"`
	ToFQDNs     []json.RawMessage `json:"toFQDNs"`
	ToGroups    []json.RawMessage `json:"toGroups"`
	ToNodes     []json.RawMessage `json:"toNodes"`
	ToPorts     []struct {
		Ports []struct {
			Port     string `json:"port"`
			EndPort  int32  `json:"endPort"`
			Protocol string `json:"protocol"`
		} `json:"ports"`
	} `json:"toPorts"`
}

var ciliumKinds = []struct {
	kind       string
	namespaced bool
}{{"CiliumNetworkPolicy", true}, {"CiliumClusterwideNetworkPolicy", false}}

// ciliumPolicies lists Cilium's policies for a pod in namespace; nil, and
// no error, where Cilium's resources do not exist.
func (d *Doctor) ciliumPolicies(ctx context.Context, namespace string) (*ciliumPolicies, error) {
	var out *ciliumPolicies
	for _, k := range ciliumKinds {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(schema.GroupVersionKind{Group: "cilium.io", Version: "v2", Kind: k.kind + "List"})
		var opts []client.ListOption
		if k.namespaced {
			opts = append(opts, client.InNamespace(namespace))
		}
		if err := d.Kube.List(ctx, list, opts...); err != nil {
			if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
				continue // not installed (or no longer)
			}
			return nil, fmt.Errorf("listing %ss: %w", k.kind, err)
		}
		if out == nil {
			out = &ciliumPolicies{}
		}
		for _, item := range list.Items {
			p := ciliumPolicy{kind: k.kind, name: item.GetName(), namespace: item.GetNamespace()}
			if spec, ok := item.Object["spec"]; ok {
				var s ciliumSpec
				if err := remarshal(spec, &s); err != nil {
					return nil, fmt.Errorf("%s %s: %w", k.kind, item.GetName(), err)
				}
				p.specs = append(p.specs, s)
			}
			if specs, ok := item.Object["specs"]; ok {
				var s []ciliumSpec
				if err := remarshal(specs, &s); err != nil {
					return nil, fmt.Errorf("%s %s: %w", k.kind, item.GetName(), err)
				}
				p.specs = append(p.specs, s...)
			}
			out.items = append(out.items, p)
		}
	}
	if out != nil {
		var ns corev1.Namespace
		if err := d.Kube.Get(ctx, client.ObjectKey{Name: namespace}, &ns); err == nil {
			out.nsLabels = ns.Labels
		}
	}
	return out, nil
}

func remarshal(from, to any) error {
	b, err := json.Marshal(from)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, to)
}

// ciliumVerdict is what Cilium's policies say of a pod's egress to its
// agent: the policies restricting it, and the one allowing it or denying
// it, if any.
type ciliumVerdict struct {
	restricting      []string
	allowedBy        string
	deniedBy         string
	allowedByRuleNum int
}

func (cp *ciliumPolicies) verdict(pod *corev1.Pod, sa string, port int32) ciliumVerdict {
	var v ciliumVerdict
	podLabels := ciliumEndpointLabels(pod, sa, cp.nsLabels)
	for _, p := range cp.items {
		if p.namespace != "" && p.namespace != pod.Namespace {
			continue
		}
		for _, s := range p.specs {
			if !ciliumSelects(s.EndpointSelector, podLabels) {
				continue
			}
			for _, r := range s.EgressDeny {
				if r.reachesHost(port) && v.deniedBy == "" {
					v.deniedBy = p.kind + " " + p.name
				}
			}
			defaultDeny := s.EnableDefaultDeny.Egress == nil || *s.EnableDefaultDeny.Egress
			if (len(s.Egress) > 0 || len(s.EgressDeny) > 0) && defaultDeny && !slices.Contains(v.restricting, p.kind+" "+p.name) {
				v.restricting = append(v.restricting, p.kind+" "+p.name)
			}
			for i, r := range s.Egress {
				if r.reachesHost(port) && v.allowedBy == "" {
					v.allowedBy, v.allowedByRuleNum = p.kind+" "+p.name, i+1
				}
			}
		}
	}
	return v
}

// reachesHost says whether an egress rule covers TCP to the host entity
// on port.
func (r ciliumEgressRule) reachesHost(port int32) bool {
	destinations := len(r.ToEndpoints) + len(r.ToCIDR) + len(r.ToCIDRSet) + len(r.ToServices) + len(r.ToFQDNs) + len(r.ToGroups) + len(r.ToNodes)
	host := slices.ContainsFunc(r.ToEntities, func(e string) bool { return e == "host" || e == "cluster" || e == "all" })
	switch {
	case host:
	case len(r.ToEntities) == 0 && destinations == 0 && len(r.ToPorts) > 0:
		// Ports to anywhere. An empty rule ({}) allows nothing: it only
		// turns default deny on.
	default:
		return false
	}
	if len(r.ToPorts) == 0 {
		return true
	}
	for _, tp := range r.ToPorts {
		if len(tp.Ports) == 0 {
			return true
		}
		for _, p := range tp.Ports {
			if p.Protocol != "" && !strings.EqualFold(p.Protocol, "TCP") && !strings.EqualFold(p.Protocol, "ANY") {
				continue
			}
			first, err := strconv.Atoi(p.Port)
			if err != nil {
				continue // a named port is a pod's
			}
			last := int32(first)
			if p.EndPort > 0 {
				last = p.EndPort
			}
			if first == 0 || (port >= int32(first) && port <= last) {
				return true
			}
		}
	}
	return false
}

// ciliumEndpointLabels are the labels Cilium gives a pod's endpoint, which
// selectors match: the pod's, its namespace, ServiceAccount and the
// namespace's labels.
func ciliumEndpointLabels(pod *corev1.Pod, sa string, nsLabels map[string]string) labels.Set {
	set := labels.Set{"io.kubernetes.pod.namespace": pod.Namespace, "io.cilium.k8s.policy.serviceaccount": sa}
	for k, v := range pod.Labels {
		set[k] = v
	}
	for k, v := range nsLabels {
		set["io.cilium.k8s.namespace.labels."+k] = v
	}
	return set
}

// ciliumSelects matches an endpointSelector, whose keys may carry a
// source prefix (k8s:, any:).
func ciliumSelects(sel *metav1.LabelSelector, set labels.Set) bool {
	if sel == nil {
		return false // a node selector policy, or none: not this pod
	}
	plain := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for k, v := range sel.MatchLabels {
		plain.MatchLabels[unprefixed(k)] = v
	}
	for _, e := range sel.MatchExpressions {
		e.Key = unprefixed(e.Key)
		plain.MatchExpressions = append(plain.MatchExpressions, e)
	}
	s, err := metav1.LabelSelectorAsSelector(plain)
	return err == nil && s.Matches(set)
}

func unprefixed(key string) string {
	for _, source := range []string{"k8s:", "any:"} {
		if rest, ok := strings.CutPrefix(key, source); ok {
			return rest
		}
	}
	return key
}

// ciliumFix is the rule to add for a pod refused under Cilium.
func ciliumFix(host string, port int32) string {
	return fmt.Sprintf("Cilium classes %s, an address of the node, as its host entity, which no ipBlock or toCIDR matches: add a CiliumNetworkPolicy selecting this pod with the egress rule {toEntities: [host], toPorts: [{ports: [{port: \"%d\", protocol: TCP}]}]}", host, port)
}
