// Package agentpolicy bounds what podid agent may do to nodes. The agent
// removes its startup taint (agent.StartupTaintKey) from its node once it
// serves, which RBAC can only grant as `patch` on every node: a policy the
// API server evaluates at admission keeps each agent to the node it runs
// on (the node its token is bound to) and to removing that taint, so that
// an agent's credentials, stolen on one node, can neither untaint,
// relabel nor cordon another.
package agentpolicy

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podid/podid/internal/admissionpolicy"
	"github.com/podid/podid/internal/agent"
)

// Name is the policy's and its binding's name.
const Name = "podid.io-agent-node"

// nodeNameExtra is where the API server puts the node of the pod a
// ServiceAccount token is bound to (Kubernetes 1.30 and later).
const nodeNameExtra = "authentication.kubernetes.io/node-name"

// Policy is the policy for the agent's ServiceAccount podid-agent in
// namespace.
func Policy(namespace string) *admissionregistrationv1.ValidatingAdmissionPolicy {
	key := agent.StartupTaintKey
	// The node as it was and as it would be, but for the startup taint:
	// nothing else may differ.
	same := func(field string) string {
		return `has(object.` + field + `) == has(oldObject.` + field + `) && (!has(object.` + field + `) || object.` + field + ` == oldObject.` + field + `)`
	}
	// The taints are the old ones without the startup taint: as many, and
	// each an old one that is not it.
	taints := `(has(oldObject.spec.taints) ? oldObject.spec.taints.filter(t, t.key != '` + key + `').size() : 0) == (has(object.spec.taints) ? object.spec.taints.size() : 0)` +
		` && (!has(object.spec.taints) || object.spec.taints.all(t, t.key != '` + key + `' && has(oldObject.spec.taints) && t in oldObject.spec.taints))`
	p := admissionpolicy.New(Name, admissionregistrationv1.RuleWithOperations{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"nodes"}},
	},
		admissionregistrationv1.Validation{
			Expression: `'` + nodeNameExtra + `' in request.userInfo.extra && request.userInfo.extra['` + nodeNameExtra + `'].exists(n, n == object.metadata.name)`,
			Message:    "podid-agent may change only the node it runs on",
			Reason:     ptr.To(metav1.StatusReasonForbidden),
		},
		admissionregistrationv1.Validation{
			Expression: taints + ` && ` + same("metadata.labels") + ` && ` + same("metadata.annotations") + ` && ` + same("spec.unschedulable"),
			Message:    "podid-agent may only remove the taint " + key + " from its node",
			Reason:     ptr.To(metav1.StatusReasonForbidden),
		},
	)
	p.Spec.MatchConditions = []admissionregistrationv1.MatchCondition{{
		Name:       "podid-agent",
		Expression: `request.userInfo.username == 'system:serviceaccount:` + namespace + `:podid-agent'`,
	}}
	return p
}

// Binding enforces the policy everywhere.
func Binding() *admissionregistrationv1.ValidatingAdmissionPolicyBinding {
	return admissionpolicy.Binding(Name)
}
