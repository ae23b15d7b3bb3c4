// Package webhook is podid's mutating admission webhook for pods. A pod whose
// ServiceAccount has a PodIdentityAssociation gets what EKS Pod Identity
// gives it (contracts §1): the agent's URL and a projected token with the
// pods.eks.amazonaws.com audience, in every container the pod does not skip.
// A ServiceAccount with IRSA's role-arn annotation and no association gets
// IRSA's variables and token instead (contracts §6), so a cluster can move
// ServiceAccounts from IRSA to podid one at a time; where both apply, Pod
// Identity wins.
//
// The decision is read from the association index, and from the API server
// when the index has not seen an association yet, so a pod created right
// after its association is mutated. The webhook's TLS is in package
// webhookcert.
package webhook
