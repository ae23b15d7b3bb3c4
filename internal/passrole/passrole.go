// Package passrole is podid's iam:PassRole for Kubernetes: a
// ValidatingAdmissionPolicy (no webhook in the path) that lets a user create
// an association, or change what its pods' session may do (its role,
// target role, session policy or session tags), only if RBAC lets the user
// "use" the IAM role (and target role) it names. On EKS, creating an association
// needs iam:PassRole on the role; without this, whoever may create
// associations in a namespace may hand its pods any role podid can assume.
//
// The permission is verb `use` on resource `roles` of API group podid.io,
// in the association's namespace, with the role's ARN as resourceName:
//
//	rules:
//	- apiGroups: [podid.io]
//	  resources: [roles]
//	  verbs: [use]
//	  resourceNames: ["arn:aws:iam::111122223333:role/billing"]
//
// No resourceNames means every role, and so does any RBAC wildcard (a
// verb or resource "*" in a Role or ClusterRole grants `use` on every
// role). Cluster administrators hold it already. The EKS-compatible API and the CLI act as the user, so they go
// through the same check.
package passrole

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podid/podid/internal/admissionpolicy"
)

// Name is the policy's and its binding's name.
const Name = "podid.io-passrole"

// The permission the policy checks.
const (
	Group    = "podid.io"
	Resource = "roles"
	Verb     = "use"
)

// sessionFields are what decides the session an association's pods get:
// changing any of them (clearing the session policy an administrator set to
// narrow it, turning session tags off so that conditions on them no longer
// bind, a new role or target role) needs `use` on the roles, as creating
// the association does.
var sessionFields = []string{"roleArn", "targetRoleArn", "policy"}

// sessionUnchanged is the CEL of an update that leaves the session as it
// was. Unset and empty are the same (EKS clears a field sent empty).
func sessionUnchanged() string {
	out := "request.operation == 'UPDATE'"
	for _, f := range sessionFields {
		out += ` &&
(has(oldObject.spec.` + f + `) ? oldObject.spec.` + f + ` : '') == (has(object.spec.` + f + `) ? object.spec.` + f + ` : '')`
	}
	return out + ` &&
(has(oldObject.spec.disableSessionTags) && oldObject.spec.disableSessionTags) == (has(object.spec.disableSessionTags) && object.spec.disableSessionTags)`
}

// check is the CEL of one role field: empty, the session unchanged on
// update, or the user may use the role in the association's namespace.
func check(field string) string {
	return `!has(object.spec.` + field + `) || object.spec.` + field + ` == '' ||
(` + sessionUnchanged() + `) ||
authorizer.group('` + Group + `').resource('` + Resource + `').namespace(variables.ns).name(object.spec.` + field + `).check('` + Verb + `').allowed()`
}

// message says which permission is missing, and how to grant it.
func message(field, what string) string {
	return `request.userInfo.username + ' may not use ` + what + ` ' + object.spec.` + field + ` + ' in namespace ' + variables.ns + ': podid requires RBAC verb "` + Verb + `" on resource "` + Resource + `" of API group ` + Group + ` with resourceNames ["' + object.spec.` + field + ` + '"] to create an association or change its roleArn, targetRoleArn, policy or disableSessionTags (as EKS requires iam:PassRole)'`
}

// Policy is the ValidatingAdmissionPolicy.
func Policy() *admissionregistrationv1.ValidatingAdmissionPolicy {
	// A cluster association's namespace is in its spec; the role is used
	// by pods there, so "use" is checked there (a ClusterRoleBinding grants
	// it everywhere, and is the only grant for a namespace not created yet).
	variables := []admissionregistrationv1.Variable{{Name: "ns",
		Expression: `has(object.metadata.namespace) && object.metadata.namespace != '' ? object.metadata.namespace : object.spec.namespace`}}
	return admissionpolicy.Policy(Name, []string{"podidentityassociations", "clusterpodidentityassociations"}, variables,
		admissionregistrationv1.Validation{Expression: check("roleArn"), MessageExpression: message("roleArn", "IAM role"), Reason: ptr.To(metav1.StatusReasonForbidden)},
		admissionregistrationv1.Validation{Expression: check("targetRoleArn"), MessageExpression: message("targetRoleArn", "target IAM role"), Reason: ptr.To(metav1.StatusReasonForbidden)},
	)
}

// Binding enforces the policy everywhere.
func Binding() *admissionregistrationv1.ValidatingAdmissionPolicyBinding {
	return admissionpolicy.Binding(Name)
}
