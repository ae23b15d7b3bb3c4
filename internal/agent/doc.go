// Package agent is `podid agent`, the node agent every pod's AWS SDK calls
// at http://169.254.170.23/v1/credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI)
// with its projected token.
//
// It verifies the token's signature locally, answers from a cache kept per
// pod UID (Cache), and otherwise exchanges the token upstream — podid
// server's EKS Auth-compatible API, or EKS Auth itself — once per pod however
// many requests arrive together. It refreshes credentials in the background
// before they run low and forgets a pod as soon as it leaves the node.
package agent
