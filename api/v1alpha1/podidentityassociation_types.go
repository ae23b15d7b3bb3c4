package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types and reasons of a PodIdentityAssociation.
const (
	// ConditionReady says whether pods running as the ServiceAccount can be
	// given credentials for the role.
	ConditionReady = "Ready"

	// ReasonAssociated: the association is in force.
	ReasonAssociated = "Associated"
	// ReasonServiceAccountNotFound: the association is valid and in force, but
	// its ServiceAccount does not exist yet, so no pod can use it. A warning,
	// not a failure: creating the ServiceAccount is enough.
	ReasonServiceAccountNotFound = "ServiceAccountNotFound"
	// ReasonInvalidPolicy: spec.policy is not a JSON object, so podid refuses
	// to issue credentials rather than issue them without the intended limits.
	ReasonInvalidPolicy = "InvalidPolicy"
)

// PodIdentityAssociation maps a ServiceAccount to an IAM role: every pod that
// runs as that ServiceAccount can obtain short-lived credentials for the role
// through the standard AWS SDK credential chain.
//
// The object is named after its ServiceAccount, so there is at most one
// association per (namespace, ServiceAccount), enforced by the API server.
// Whoever may create one may obtain its role: by default only cluster
// administrators can.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pia;podidentity,categories=podid
// +kubebuilder:printcolumn:name="Service Account",type=string,JSONPath=`.spec.serviceAccount`
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.spec.roleArn`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Association ID",type=string,priority=1,JSONPath=`.status.associationId`
// +kubebuilder:printcolumn:name="Target Role",type=string,priority=1,JSONPath=`.spec.targetRoleArn`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name == self.spec.serviceAccount",message="metadata.name must equal spec.serviceAccount: an association is named after its ServiceAccount, which keeps it to one per ServiceAccount"
type PodIdentityAssociation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what the administrator asks for.
	// +required
	Spec PodIdentityAssociationSpec `json:"spec"`

	// status is what podid has made of it.
	// +optional
	Status PodIdentityAssociationStatus `json:"status,omitempty"`
}

// PodIdentityAssociationSpec is the desired mapping. Its fields and their
// limits follow the Amazon EKS CreatePodIdentityAssociation API.
type PodIdentityAssociationSpec struct {
	// serviceAccount is the name of the ServiceAccount, in the association's
	// namespace, whose pods receive credentials. It must equal metadata.name
	// and cannot change; the ServiceAccount need not exist yet.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",message="must be a ServiceAccount name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="serviceAccount cannot be changed: delete this association and create one for the other ServiceAccount"
	ServiceAccount string `json:"serviceAccount"`

	// roleArn is the IAM role whose credentials the pods receive, for example
	// arn:aws:iam::111122223333:role/my-app. The role must trust podid's own
	// AWS identity with sts:AssumeRole and sts:TagSession.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/([\\x21-\\x7E]*/)?[A-Za-z0-9+=,.@_-]{1,64}$')",message="must be an IAM role ARN such as arn:aws:iam::111122223333:role/my-role"
	RoleARN string `json:"roleArn"`

	// targetRoleArn, when set, is a second role that podid assumes with the
	// credentials of roleArn, passing status.externalId as the external ID.
	// Pods then receive the target role's credentials. Use it to reach a role
	// in another account.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self == '' || self.matches('^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/([\\x21-\\x7E]*/)?[A-Za-z0-9+=,.@_-]{1,64}$')",message="must be an IAM role ARN such as arn:aws:iam::444455556666:role/target-role, or empty"
	TargetRoleARN string `json:"targetRoleArn,omitempty"`

	// disableSessionTags stops podid from attaching the six transitive session
	// tags (cluster, namespace, ServiceAccount, pod) to the role session. Set
	// it when the role's trust policy does not allow sts:TagSession or when
	// STS answers PackedPolicyTooLarge.
	// +optional
	DisableSessionTags bool `json:"disableSessionTags,omitempty"`

	// policy is an IAM session policy, a JSON object of at most 2,048
	// characters, that further limits what the credentials may do: the
	// session gets the intersection of the role's policies and this one.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self == '' || self.matches('^\\\\s*\\\\{[\\\\s\\\\S]*\\\\}\\\\s*$')",message="must be a JSON object, an IAM policy document such as {\"Version\":\"2012-10-17\",\"Statement\":[...]}"
	// +kubebuilder:validation:XValidation:rule="self.matches('^[\\\\t\\\\n\\\\r\\\\x20-\\\\xFF]*$')",message="may only hold printable characters, tabs and line breaks, as STS requires of a session policy"
	Policy string `json:"policy,omitempty"`

	// tags are AWS-style tags kept with the association (1 to 50; keys of 1 to
	// 128 characters not starting with "aws:", values of at most 256). They
	// label the association; they are not session tags.
	// +optional
	// +kubebuilder:validation:MinProperties=1
	// +kubebuilder:validation:MaxProperties=50
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) >= 1 && size(k) <= 128)",message="tag keys must be 1 to 128 characters long"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('aws:'))",message="tag keys starting with 'aws:' are reserved for AWS"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(self[k]) <= 256)",message="tag values must be at most 256 characters long"
	Tags map[string]string `json:"tags,omitempty"`
}

// PodIdentityAssociationStatus is what podid's controller observed and
// assigned. The identifiers follow Amazon EKS's formats, so that tools written
// for the EKS API see what they expect.
type PodIdentityAssociationStatus struct {
	// associationId identifies the association in the EKS-compatible API:
	// "a-" and 17 lowercase letters and digits, derived from the object's UID.
	// +optional
	AssociationID string `json:"associationId,omitempty"`

	// associationArn is arn:{partition}:eks:{region}:{account}:podidentityassociation/{cluster}/{associationId}.
	// +optional
	AssociationARN string `json:"associationArn,omitempty"`

	// externalId is the sts:ExternalId podid passes when it assumes
	// targetRoleArn; put it in the target role's trust policy.
	// +optional
	ExternalID string `json:"externalId,omitempty"`

	// createdAt is when the association was created.
	// +optional
	CreatedAt *metav1.Time `json:"createdAt,omitempty"`

	// modifiedAt is when the association's spec last changed.
	// +optional
	ModifiedAt *metav1.Time `json:"modifiedAt,omitempty"`

	// observedGeneration is the metadata.generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions hold Ready, with a reason to act on when it is not True or
	// when its reason is ServiceAccountNotFound.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// PodIdentityAssociationList is a list of PodIdentityAssociations.
//
// +kubebuilder:object:root=true
type PodIdentityAssociationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PodIdentityAssociation `json:"items"`
}
