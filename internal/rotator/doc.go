// Package rotator is `podid rotator`: the SecretRotator controller. For each
// SecretRotator it obtains one registry token per rotation — from the AWS
// identity credsource resolves, through a regcred exchanger (JFrog
// Artifactory's passwordless exchange, or ECR) — and writes it as docker
// pull secrets (and generic token secrets) into every namespace the
// rotator's selector matches.
//
// What it does that JFrog's operator does not: the token is shared by every
// namespace and renewed only when due (not once per reconcile); failures
// back off exponentially with jitter instead of retrying every second; a
// secret is written only when its content or metadata differ, and
// secretMetadata is kept in sync; a same-named secret it did not create is
// never touched (the status and an event say so); matchExpressions count
// when namespaces change; the Ready condition is really set, with reasons.
//
// Files: reconcile.go (one pass), token.go (the shared token, renewal and
// backoff), secrets.go (desired secrets and the writes), spec.go (what a
// spec asks for), status.go, metrics.go, setup.go (watches and the manager).
package rotator
