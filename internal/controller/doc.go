// Package controller holds podid server's controllers: the association
// controller, which fills each PodIdentityAssociation's status (IDs, ARN,
// timestamps, the Ready condition) and records events a user can act on.
//
// Controllers run only on the leader replica; the Index in package association
// is fed on every replica and does not depend on them.
package controller
