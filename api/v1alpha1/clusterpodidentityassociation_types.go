package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Reasons of a ClusterPodIdentityAssociation's Ready condition, beside those
// of PodIdentityAssociation.
const (
	// ReasonNamespaceNotFound: the association is valid and in force, but its
	// namespace does not exist (yet, or any more), so no pod can use it.
	ReasonNamespaceNotFound = "NamespaceNotFound"
	// ReasonSuperseded: a PodIdentityAssociation whose ServiceAccount also has
	// a ClusterPodIdentityAssociation is not in force; the cluster one is.
	ReasonSuperseded = "SupersededByClusterAssociation"
)

// ClusterPodIdentityAssociation is a Pod Identity association kept at the
// cluster level, as Amazon EKS keeps its associations: it may name a
// namespace that does not exist yet, takes effect for pods once the namespace
// and ServiceAccount exist, and survives the namespace's deletion. It is what
// the EKS-compatible API, `podid association create` and eksctl/Rafay files
// create when their caller may (the platform team's associations);
// PodIdentityAssociation is the namespace's own, which lives and dies with
// the namespace.
//
// The object is named <namespace>.<serviceAccount> (a namespace name has no
// dot, so the name is unique per ServiceAccount). When a PodIdentityAssociation
// exists for the same ServiceAccount, this one is in force and the namespaced
// one is reported as superseded.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=cpia;clusterpodidentity,categories=podid
// +kubebuilder:selectablefield:JSONPath=`.spec.namespace`
// +kubebuilder:selectablefield:JSONPath=`.spec.serviceAccount`
// +kubebuilder:printcolumn:name="Namespace",type=string,JSONPath=`.spec.namespace`
// +kubebuilder:printcolumn:name="Service Account",type=string,JSONPath=`.spec.serviceAccount`
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.spec.roleArn`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Association ID",type=string,priority=1,JSONPath=`.status.associationId`
// +kubebuilder:printcolumn:name="Target Role",type=string,priority=1,JSONPath=`.spec.targetRoleArn`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name == self.spec.__namespace__ + '.' + self.spec.serviceAccount",message="metadata.name must be <spec.namespace>.<spec.serviceAccount>: a cluster association is named after its ServiceAccount, which keeps it to one per ServiceAccount"
type ClusterPodIdentityAssociation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what the administrator asks for.
	// +required
	Spec ClusterPodIdentityAssociationSpec `json:"spec"`

	// status is what podid has made of it.
	// +optional
	Status PodIdentityAssociationStatus `json:"status,omitempty"`
}

// ClusterPodIdentityAssociationSpec is a PodIdentityAssociationSpec with the
// namespace it applies to.
type ClusterPodIdentityAssociationSpec struct {
	// namespace is the namespace of the ServiceAccount; it need not exist.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="must be a namespace name: lowercase letters, digits and '-', starting and ending with a letter or digit"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="namespace cannot be changed: delete this association and create one for the other namespace"
	Namespace string `json:"namespace"`

	PodIdentityAssociationSpec `json:",inline"`
}

// ClusterPodIdentityAssociationList is a list of ClusterPodIdentityAssociations.
//
// +kubebuilder:object:root=true
type ClusterPodIdentityAssociationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterPodIdentityAssociation `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ClusterPodIdentityAssociation{}, &ClusterPodIdentityAssociationList{})
}

// ClusterAssociationName is the name a ClusterPodIdentityAssociation for the namespace
// and ServiceAccount has.
func ClusterAssociationName(namespace, serviceAccount string) string {
	return namespace + "." + serviceAccount
}

// AsAssociation is the association as the rest of podid sees every
// association: a PodIdentityAssociation in its namespace, with this object's
// UID (so its ID), times, generation and status. It is a view: writes go to
// the ClusterPodIdentityAssociation (FromAssociation).
func (c *ClusterPodIdentityAssociation) AsAssociation() *PodIdentityAssociation {
	meta := *c.ObjectMeta.DeepCopy()
	meta.Namespace = c.Spec.Namespace
	meta.Name = c.Spec.ServiceAccount
	return &PodIdentityAssociation{
		TypeMeta:   metav1.TypeMeta{APIVersion: GroupVersion.String(), Kind: "PodIdentityAssociation"},
		ObjectMeta: meta,
		Spec:       *c.Spec.PodIdentityAssociationSpec.DeepCopy(),
		Status:     *c.Status.DeepCopy(),
	}
}

// NewClusterAssociation is the ClusterPodIdentityAssociation holding the
// association pia describes (its namespace, spec, labels and annotations).
func NewClusterAssociation(pia *PodIdentityAssociation) *ClusterPodIdentityAssociation {
	return &ClusterPodIdentityAssociation{
		ObjectMeta: metav1.ObjectMeta{
			Name:        ClusterAssociationName(pia.Namespace, pia.Spec.ServiceAccount),
			Labels:      pia.Labels,
			Annotations: pia.Annotations,
		},
		Spec: ClusterPodIdentityAssociationSpec{Namespace: pia.Namespace, PodIdentityAssociationSpec: pia.Spec},
	}
}
