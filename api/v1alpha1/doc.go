// Package v1alpha1 holds version v1alpha1 of podid's Kubernetes API, group
// podid.io: the PodIdentityAssociation resource that maps a (namespace,
// ServiceAccount) to the IAM role its pods receive credentials for.
//
// The types carry their admission rules as OpenAPI and CEL markers, so the API
// server itself refuses a bad association; controller-gen turns them into the
// CRD manifest in config/crd (make generate).
//
// +kubebuilder:object:generate=true
// +groupName=podid.io
package v1alpha1
