package registryemu

import (
	"context"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Push writes a small random image to ref (host:port/repo:tag, plain HTTP
// when insecure) as user and returns its digest, so a test has something
// to pull.
func Push(ctx context.Context, ref, user, password string, insecure bool, transport http.RoundTripper) (string, error) {
	r, err := parse(ref, insecure)
	if err != nil {
		return "", err
	}
	img, err := random.Image(256, 1)
	if err != nil {
		return "", err
	}
	if transport == nil {
		transport = http.DefaultTransport
	}
	auth := remote.WithAuth(&authn.Basic{Username: user, Password: password})
	if err := remote.Write(r, img, auth, remote.WithContext(ctx), remote.WithTransport(transport)); err != nil {
		return "", fmt.Errorf("pushing %s: %w", ref, err)
	}
	d, err := img.Digest()
	return d.String(), err
}

// ManifestDigest fetches ref's manifest with the given login, as a docker
// client given a pull secret would, and returns its digest.
func ManifestDigest(ctx context.Context, ref, user, password string, insecure bool, transport http.RoundTripper) (string, error) {
	r, err := parse(ref, insecure)
	if err != nil {
		return "", err
	}
	if transport == nil {
		transport = http.DefaultTransport
	}
	desc, err := remote.Head(r, remote.WithAuth(&authn.Basic{Username: user, Password: password}), remote.WithContext(ctx), remote.WithTransport(transport))
	if err != nil {
		return "", err
	}
	return desc.Digest.String(), nil
}

// parse reads ref; insecure allows plain HTTP.
func parse(ref string, insecure bool) (name.Reference, error) {
	if insecure {
		return name.ParseReference(ref, name.Insecure)
	}
	return name.ParseReference(ref)
}
