// Package associationcontroller is the association controller of podid
// server: it fills the status of each PodIdentityAssociation and
// ClusterPodIdentityAssociation (IDs, ARN, timestamps, the Ready condition:
// a namespace not there yet, a ServiceAccount not there yet, a namespace's
// association superseded by a cluster one) and records events a user can act on.
// The server's other controllers are the PodIdentityCheck controller
// (internal/podcheck) and, in `podid rotator`, the SecretRotator controller
// (internal/rotator).
//
// Controllers run only on the leader replica; the Index in package association
// is fed on every replica and does not depend on them.
package associationcontroller
