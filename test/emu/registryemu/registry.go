// Package registryemu emulates the registries podid's registry credentials
// are for, where the real ones are unreachable: an OCI registry (the one
// go-containerregistry ships) that admits only the credentials of an
// emulated issuer — ECR passwords from awsemu, or tokens from the emulated
// Artifactory — and Artifactory's passwordless AWS token exchange, which
// checks the SigV4A-signed GetCallerIdentity it is handed by replaying it to
// the STS emulator, as Artifactory does to STS.
//
// Tests reach them only through real clients: go-containerregistry's remote
// package, containerd, and podid's own exchangers.
package registryemu

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Checker decides a registry login for the repository a request names:
// ok admits it; otherwise a non-empty denied means the login is valid but
// may not use the repository (403 with that message, as ECR and Artifactory
// answer), and an empty one that it is not a valid login (401).
type Checker func(username, password, repository string) (denied string, ok bool)

// Registry is an OCI distribution registry behind HTTP Basic authentication,
// as ECR and Artifactory answer docker clients.
type Registry struct {
	// Realm names the registry in its challenge.
	Realm string
	Check Checker
	// AdminPassword, when set, admits user "admin" with it, so tests can
	// push images.
	AdminPassword string
	handler       http.Handler
	// refused, denied and admitted count requests, for the tests' assertions.
	refused, denied, admitted atomic.Int64
}

// NewRegistry returns an empty registry that admits what check admits.
func NewRegistry(realm string, check Checker) *Registry {
	return &Registry{Realm: realm, Check: check, handler: registry.New(registry.Logger(discardLogger()))}
}

// Refused, Denied and Admitted count requests so far: refused without a
// valid login, denied with one that may not use the repository, admitted.
func (g *Registry) Refused() int64  { return g.refused.Load() }
func (g *Registry) Denied() int64   { return g.denied.Load() }
func (g *Registry) Admitted() int64 { return g.admitted.Load() }

// ServeHTTP implements http.Handler.
func (g *Registry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, password, ok := r.BasicAuth()
	if ok && g.AdminPassword != "" && user == "admin" && password == g.AdminPassword {
		g.handler.ServeHTTP(w, r)
		return
	}
	if ok {
		denied, admitted := g.Check(user, password, repositoryOf(r.URL.Path))
		if admitted {
			g.admitted.Add(1)
			g.handler.ServeHTTP(w, r)
			return
		}
		if denied != "" {
			g.denied.Add(1)
			writeError(w, http.StatusForbidden, "DENIED", denied)
			return
		}
	}
	g.refused.Add(1)
	w.Header().Set("WWW-Authenticate", `Basic realm="`+g.Realm+`"`)
	writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
}

// writeError answers in the distribution API's error format, which
// containerd quotes in the pull's error (a HEAD's too: it asks again with
// GET for the body).
func writeError(w http.ResponseWriter, status int, code, message string) {
	body, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": code, "message": message}}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// repositoryOf is the repository a /v2/<name>/(manifests|blobs|tags)/… path
// names, "" for /v2/ itself.
func repositoryOf(path string) string {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return ""
	}
	for _, kind := range []string{"/manifests/", "/blobs/", "/tags/"} {
		if i := strings.LastIndex(rest, kind); i >= 0 {
			return rest[:i]
		}
	}
	return ""
}

// BasicAuth is the value of an Authorization header for user and password,
// for tests that speak to a registry by hand.
func BasicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}
