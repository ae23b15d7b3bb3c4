package podcheck

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/admissionpolicy"
)

// RequesterPolicyName is the ValidatingAdmissionPolicy (and binding) that
// binds podid.io/requested-by to the user who creates a PodIdentityCheck.
const RequesterPolicyName = "podid.io-check-requester-bound"

// RequesterPolicy admits a PodIdentityCheck whose podid.io/requested-by is
// absent or names its creator, and no update of that annotation. On
// Kubernetes 1.36+ the chart's MutatingAdmissionPolicy stamps the
// creator's name first (mutation runs before validation); before that,
// `podid doctor` writes its user's name and this policy holds it to the
// truth. podid server believes the annotation only where this policy is
// installed (--check-requester-bound).
func RequesterPolicy() *admissionregistrationv1.ValidatingAdmissionPolicy {
	const (
		key      = `'` + v1alpha1.AnnotationRequestedBy + `'`
		has      = `has(object.metadata.annotations) && ` + key + ` in object.metadata.annotations`
		hadOld   = `has(oldObject.metadata.annotations) && ` + key + ` in oldObject.metadata.annotations`
		value    = `object.metadata.annotations[` + key + `]`
		oldValue = `oldObject.metadata.annotations[` + key + `]`
	)
	forbidden := ptr.To(metav1.StatusReasonForbidden)
	return admissionpolicy.Policy(RequesterPolicyName, []string{"podidentitychecks"}, nil,
		admissionregistrationv1.Validation{
			Expression:        `request.operation != 'CREATE' || !(` + has + `) || ` + value + ` == request.userInfo.username`,
			MessageExpression: `'podid.io/requested-by must be the name of the user creating the check (' + request.userInfo.username + '), or be left out'`,
			Reason:            forbidden,
		},
		admissionregistrationv1.Validation{
			Expression: `request.operation != 'UPDATE' || ((` + has + `) == (` + hadOld + `) && (!(` + has + `) || ` + value + ` == ` + oldValue + `))`,
			Message:    "podid.io/requested-by names who created the check and cannot be changed",
			Reason:     forbidden,
		},
	)
}

// RequesterBinding enforces RequesterPolicy everywhere.
func RequesterBinding() *admissionregistrationv1.ValidatingAdmissionPolicyBinding {
	return admissionpolicy.Binding(RequesterPolicyName)
}
