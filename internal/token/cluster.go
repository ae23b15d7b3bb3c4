package token

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// ForIssuer returns a verifier of tokens from an external OIDC issuer (the
// cluster's --service-account-issuer when its keys are published there):
// discovery and keys are fetched from the issuer itself.
func ForIssuer(ctx context.Context, client *http.Client, issuer string, now func() time.Time) (*Verifier, error) {
	d, err := Discover(ctx, client, strings.TrimSuffix(issuer, "/"))
	if err != nil {
		return nil, fmt.Errorf("token issuer %s: %w", issuer, err)
	}
	keys := NewKeySet(HTTPFetcher(client, d.JWKSURI), KeySetOptions{Now: now})
	return NewVerifier(Options{Issuer: d.Issuer, Keys: keys, Now: now}), nil
}

// ForAPIServer returns a verifier of the cluster's ServiceAccount tokens,
// with the issuer and keys the API server at host publishes. client carries
// the caller's credentials for the API server (the discovery endpoints need
// the system:service-account-issuer-discovery role). It takes a plain HTTP
// client rather than a client-go config so that podid agent need not link
// client-go.
func ForAPIServer(ctx context.Context, client *http.Client, host string, now func() time.Time) (*Verifier, error) {
	host = strings.TrimSuffix(host, "/")
	d, err := Discover(ctx, client, host)
	if err != nil {
		return nil, fmt.Errorf("discovering the cluster's ServiceAccount token issuer (the caller needs the system:service-account-issuer-discovery role): %w", err)
	}
	// The discovery document's jwks_uri is the issuer's public address, which
	// may not be reachable from inside; the API server serves the same keys.
	keys := NewKeySet(HTTPFetcher(client, host+"/openid/v1/jwks"), KeySetOptions{Now: now})
	return NewVerifier(Options{Issuer: d.Issuer, Keys: keys, Now: now}), nil
}
