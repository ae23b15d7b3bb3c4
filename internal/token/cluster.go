package token

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"k8s.io/client-go/rest"
)

// ForCluster returns a verifier of the cluster's ServiceAccount tokens: the
// API server's own issuer and keys, or, when issuer is set, an external OIDC
// issuer's. now is the clock (nil: time.Now).
func ForCluster(ctx context.Context, cfg *rest.Config, issuer string, now func() time.Time) (*Verifier, error) {
	if issuer != "" {
		d, err := Discover(ctx, http.DefaultClient, strings.TrimSuffix(issuer, "/"))
		if err != nil {
			return nil, fmt.Errorf("--token-issuer %s: %w", issuer, err)
		}
		keys := NewKeySet(HTTPFetcher(http.DefaultClient, d.JWKSURI), KeySetOptions{Now: now})
		return NewVerifier(Options{Issuer: d.Issuer, Keys: keys, Now: now}), nil
	}
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("building a client for the API server: %w", err)
	}
	host := strings.TrimSuffix(cfg.Host, "/")
	d, err := Discover(ctx, client, host)
	if err != nil {
		return nil, fmt.Errorf("discovering the cluster's ServiceAccount token issuer (the server's ServiceAccount needs the system:service-account-issuer-discovery role): %w", err)
	}
	// The discovery document's jwks_uri is the issuer's public address, which
	// may not be reachable from inside; the API server serves the same keys.
	keys := NewKeySet(HTTPFetcher(client, host+"/openid/v1/jwks"), KeySetOptions{Now: now})
	return NewVerifier(Options{Issuer: d.Issuer, Keys: keys, Now: now}), nil
}
