package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Outcomes of a PodIdentityCheck.
const (
	// CheckIssued: podid server obtained credentials (and threw them away).
	CheckIssued = "Issued"
	// CheckRefused: the exchange was refused; code and message are what
	// the pod's SDK would have been told.
	CheckRefused = "Refused"
)

// AnnotationRequestedBy is stamped on a PodIdentityCheck at creation with
// the requesting user's name, by the chart's MutatingAdmissionPolicy
// (Kubernetes 1.36+), overriding any value the user sets.
const AnnotationRequestedBy = "podid.io/requested-by"

// PodIdentityCheck asks podid server to perform a pod's credential exchange
// and report what happened (the role session it obtained, or the refusal
// the pod would get) without handing out the credentials. With no podName
// it asks podid server to call sts:GetCallerIdentity: whether AWS STS, or
// whatever podid server is configured to use, answers from where the server
// runs. `podid doctor` creates one and deletes it once answered.
//
// Who may ask is who may create PodIdentityChecks in the pod's namespace
// (the chart grants it to the edit and admin roles: they can run a pod as
// the ServiceAccount anyway). The API server's audit log records who asked,
// and so does podid server's, with the name the chart's admission policy
// stamps (AnnotationRequestedBy); podid server deletes checks an hour after
// it answered them.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pidcheck,categories=podid
// +kubebuilder:printcolumn:name="Pod",type=string,JSONPath=`.spec.podName`
// +kubebuilder:printcolumn:name="Outcome",type=string,JSONPath=`.status.outcome`
// +kubebuilder:printcolumn:name="Identity",type=string,JSONPath=`.status.assumedRoleArn`
// +kubebuilder:printcolumn:name="Code",type=string,priority=1,JSONPath=`.status.code`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PodIdentityCheck struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec PodIdentityCheckSpec `json:"spec,omitempty"`
	// +optional
	Status PodIdentityCheckStatus `json:"status,omitempty"`
}

// PodIdentityCheckSpec names what to check.
//
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a PodIdentityCheck is a one-time request: create a new one"
type PodIdentityCheckSpec struct {
	// PodName is the pod, in the check's namespace, whose exchange podid
	// server performs. Empty: check that podid server reaches STS.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PodName string `json:"podName,omitempty"`
}

// PodIdentityCheckStatus is podid server's answer.
type PodIdentityCheckStatus struct {
	// Outcome is Issued or Refused; empty until answered.
	//
	// +optional
	// +kubebuilder:validation:Enum=Issued;Refused
	Outcome string `json:"outcome,omitempty"`
	// Code is the EKS Auth error type the pod would be refused with.
	//
	// +optional
	Code string `json:"code,omitempty"`
	// Message is the refusal's message, or what was obtained.
	//
	// +optional
	Message string `json:"message,omitempty"`
	// AssociationID is the association the pod's exchange used.
	//
	// +optional
	AssociationID string `json:"associationId,omitempty"`
	// RoleARN is the role podid server assumed (the target role when the
	// association has one).
	//
	// +optional
	RoleARN string `json:"roleArn,omitempty"`
	// AssumedRoleARN is the session's ARN; for a check without a pod,
	// podid server's own identity as STS sees it.
	//
	// +optional
	AssumedRoleARN string `json:"assumedRoleArn,omitempty"`
	// RequestedBy is who asked, as stamped at creation (see
	// AnnotationRequestedBy); empty on clusters without the policy.
	//
	// +optional
	RequestedBy string `json:"requestedBy,omitempty"`
	// Server is the podid server replica that answered.
	//
	// +optional
	Server string `json:"server,omitempty"`
	// CheckedAt is when it answered.
	//
	// +optional
	CheckedAt *metav1.Time `json:"checkedAt,omitempty"`
}

// +kubebuilder:object:root=true

// PodIdentityCheckList is a list of PodIdentityChecks.
type PodIdentityCheckList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PodIdentityCheck `json:"items"`
}

func init() {
	SchemeBuilder.Register(&PodIdentityCheck{}, &PodIdentityCheckList{})
}
