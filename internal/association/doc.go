// Package association is podid's model of an association — a namespace's
// PodIdentityAssociation or a ClusterPodIdentityAssociation — as the rest
// of podid uses it: the cluster identity that names associations in
// EKS's formats (IDs, ARNs, external IDs), the checks an association's fields
// must pass beyond what the API server's CEL rules can express, and the Index
// that answers "which role does (namespace, ServiceAccount) get?" in O(1) from
// an informer, for the credential exchange and the webhook.
//
// It does not talk to the API server itself: the controller package keeps
// status up to date, and callers feed the Index from their informer.
package association
