package passrole

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podid/podid/internal/admissionpolicy"
)

// RotatorName is the SecretRotator policy's and its binding's name.
const RotatorName = "podid.io-secretrotator"

// A SecretRotator makes `podid rotator` act for its creator with the
// rotator's own rights: assume the roles of its assumeRoleChain, mint a
// token for the ServiceAccount it names, read the Secret it names as a
// client certificate. RotatorPolicy admits a SecretRotator only if its
// creator could do each of those themselves (the PassRole pattern), and,
// in the namespaced variant, only if everything it names is in its own
// namespace:
//
//   - `use` on roles.podid.io for every assumeRoleChain[].roleARN, in the
//     rotator's namespace (cluster-wide for a cluster-scoped rotator);
//   - `create` on serviceaccounts/token for spec.serviceAccount;
//   - `get` on the security.certificateSecretName Secret.
//
// An update that leaves a field as it was (a role already in the chain)
// needs nothing more. podid's
// namespace, where a cluster-scoped rotator's certificate Secret is by
// default, is podidNamespace (the chart's release namespace).
func RotatorPolicy(podidNamespace string) *admissionregistrationv1.ValidatingAdmissionPolicy {
	const (
		sa      = `(has(object.spec.serviceAccount) && has(object.spec.serviceAccount.name) && object.spec.serviceAccount.name != '')`
		cert    = `(has(object.spec.security) && has(object.spec.security.enabled) && object.spec.security.enabled && has(object.spec.security.certificateSecretName) && object.spec.security.certificateSecretName != '')`
		saSame  = `(request.operation == 'UPDATE' && has(oldObject.spec.serviceAccount) && oldObject.spec.serviceAccount == object.spec.serviceAccount)`
		secSame = `(request.operation == 'UPDATE' && has(oldObject.spec.security) && oldObject.spec.security == object.spec.security)`
		hadRole = `(request.operation == 'UPDATE' && has(oldObject.spec.assumeRoleChain) && oldObject.spec.assumeRoleChain.exists(o, o.roleARN == h.roleARN))`
	)
	forbidden, invalid := ptr.To(metav1.StatusReasonForbidden), ptr.To(metav1.StatusReasonInvalid)
	variables := []admissionregistrationv1.Variable{
		// "" for a cluster-scoped rotator: the checks below are then
		// cluster-wide.
		{Name: "ns", Expression: `has(object.metadata.namespace) ? object.metadata.namespace : ''`},
		{Name: "secretNamespace", Expression: `has(object.spec.security) && has(object.spec.security.secretNamespace) && object.spec.security.secretNamespace != '' ? object.spec.security.secretNamespace : (has(object.metadata.namespace) && object.metadata.namespace != '' ? object.metadata.namespace : '` + podidNamespace + `')`},
	}
	return admissionpolicy.Policy(RotatorName, []string{"secretrotators"}, variables,
		admissionregistrationv1.Validation{
			Expression:        `variables.ns == '' || !` + sa + ` || object.spec.serviceAccount.namespace == variables.ns`,
			MessageExpression: `'a SecretRotator in namespace ' + variables.ns + ' may name a ServiceAccount of its own namespace only, not ' + object.spec.serviceAccount.namespace + '/' + object.spec.serviceAccount.name`,
			Reason:            invalid,
		},
		admissionregistrationv1.Validation{
			Expression:        `variables.ns == '' || variables.secretNamespace == variables.ns`,
			MessageExpression: `'a SecretRotator in namespace ' + variables.ns + ' may read a certificate Secret of its own namespace only, not of ' + variables.secretNamespace + ': leave security.secretNamespace out'`,
			Reason:            invalid,
		},
		admissionregistrationv1.Validation{
			Expression: `variables.ns == '' || !has(object.spec.security) || !has(object.spec.security.insecureSkipVerify) || !object.spec.security.insecureSkipVerify`,
			Message:    "a namespaced SecretRotator may not turn off TLS verification (security.insecureSkipVerify): it would hand a signed AWS request to whoever answers; give the registry's CA in security.certificateSecretName instead",
			Reason:     invalid,
		},
		admissionregistrationv1.Validation{
			Expression: `!has(object.spec.assumeRoleChain) || object.spec.assumeRoleChain.all(h, ` + hadRole + ` ||
authorizer.group('` + Group + `').resource('` + Resource + `').namespace(variables.ns).name(h.roleARN).check('` + Verb + `').allowed())`,
			MessageExpression: `request.userInfo.username + ' may not use every IAM role of assumeRoleChain (' + object.spec.assumeRoleChain.map(h, h.roleARN).join(', ') + ')' + (variables.ns == '' ? ' cluster-wide' : ' in namespace ' + variables.ns) + ': podid requires RBAC verb "` + Verb + `" on resource "` + Resource + `" of API group ` + Group + ` with each role ARN as resourceName (as EKS requires iam:PassRole)'`,
			Reason:            forbidden,
		},
		admissionregistrationv1.Validation{
			Expression: `!` + sa + ` || ` + saSame + ` ||
authorizer.group('').resource('serviceaccounts').subresource('token').namespace(object.spec.serviceAccount.namespace).name(object.spec.serviceAccount.name).check('create').allowed()`,
			MessageExpression: `request.userInfo.username + ' may not create tokens for ServiceAccount ' + object.spec.serviceAccount.namespace + '/' + object.spec.serviceAccount.name + ', which the rotator would do for this SecretRotator: RBAC verb "create" on serviceaccounts/token is required'`,
			Reason:            forbidden,
		},
		admissionregistrationv1.Validation{
			Expression: `!` + cert + ` || ` + secSame + ` ||
authorizer.group('').resource('secrets').namespace(variables.secretNamespace).name(object.spec.security.certificateSecretName).check('get').allowed()`,
			MessageExpression: `request.userInfo.username + ' may not read Secret ' + variables.secretNamespace + '/' + object.spec.security.certificateSecretName + ', which the rotator would read for this SecretRotator: RBAC verb "get" on that Secret is required'`,
			Reason:            forbidden,
		},
	)
}

// RotatorBinding enforces RotatorPolicy everywhere.
func RotatorBinding() *admissionregistrationv1.ValidatingAdmissionPolicyBinding {
	return admissionpolicy.Binding(RotatorName)
}
