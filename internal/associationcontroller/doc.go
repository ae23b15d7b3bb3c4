// Package associationcontroller is the association controller of podid
// server: it fills each PodIdentityAssociation's status (IDs, ARN,
// timestamps, the Ready condition) and records events a user can act on.
// The server's other controllers are the PodIdentityCheck controller
// (internal/podcheck) and, in `podid rotator`, the SecretRotator controller
// (internal/rotator).
//
// Controllers run only on the leader replica; the Index in package association
// is fed on every replica and does not depend on them.
package associationcontroller
