// Package deptest checks what a binary links, so that a package which must
// stay out of it cannot come back through an innocent-looking import: the
// emulators and test harness out of the binaries users install, the
// Kubernetes client libraries out of the per-node ones.
//
// The check lists the dependencies of the binary as it is released
// (linux/amd64, no cgo), not of the machine running the test: a
// platform-specific file could otherwise hide or add an import.
package deptest

import (
	"encoding/json"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// Release is the platform podid's binaries are released for.
var Release = Platform{GOOS: "linux", GOARCH: "amd64"}

// Platform is a GOOS/GOARCH pair.
type Platform struct{ GOOS, GOARCH string }

// Forbidden maps an import path to why the binary must not link it. A path
// ending in "/..." forbids that package and every package under it.
type Forbidden map[string]string

// Harness forbids what only tests and the sandbox may link: a binary that
// runs in production must not carry an STS emulator that mints credentials,
// envtest, or code that rewrites a host's network and mounts.
var Harness = Forbidden{
	"github.com/podid/podid/test/...":                  "test/ holds the emulators, the harness and the suites, which only tests and cmd/podid-sandbox may link",
	"github.com/podid/podid/cmd/...":                   "a binary's main package is never imported",
	"sigs.k8s.io/controller-runtime/pkg/envtest":       "envtest starts etcd and kube-apiserver: the sandbox's, not a product's",
	"github.com/podid/podid/test/emu/awsemu":           "the STS/IAM/ECR emulator mints credentials for any role",
	"github.com/podid/podid/test/emu/registryemu":      "the registry emulator admits whoever the emulator vouches for",
	"github.com/podid/podid/test/harness/localnode":    "the node runner rewrites a host's iptables, sysctls and mounts",
	"github.com/podid/podid/test/harness/localcluster": "the local cluster starts etcd and kube-apiserver",
	"github.com/podid/podid/test/harness/netns":        "the simulated node puts the agent's addresses into network namespaces",
	"github.com/podid/podid/test/harness/sandbox":      "the sandbox runs all of the above: it is cmd/podid-sandbox's",
}

// Merge returns the union of sets; a later set's reason wins.
func Merge(sets ...Forbidden) Forbidden {
	out := Forbidden{}
	for _, s := range sets {
		for k, v := range s {
			out[k] = v
		}
	}
	return out
}

// Check fails t for every package the main package at dir (relative to the
// test's working directory, usually ".") links on p that forbidden names.
func Check(t *testing.T, dir string, p Platform, forbidden Forbidden) {
	t.Helper()
	name, deps := list(t, dir, p)
	for _, dep := range deps {
		if why, bad := forbidden.match(dep); bad {
			t.Errorf("%s links %s: %s", name, dep, why)
		}
	}
}

// Deps lists the packages the package at dir links on p, sorted.
func Deps(t *testing.T, dir string, p Platform) []string {
	t.Helper()
	_, deps := list(t, dir, p)
	return deps
}

// list returns the import path of the package at dir and what it links.
func list(t *testing.T, dir string, p Platform) (string, []string) {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Deps", dir)
	cmd.Env = append(os.Environ(), "GOOS="+p.GOOS, "GOARCH="+p.GOARCH, "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg += ": " + string(ee.Stderr)
		}
		t.Fatalf("go list %s for %s/%s: %s", dir, p.GOOS, p.GOARCH, msg)
	}
	var pkg struct {
		ImportPath string
		Deps       []string
	}
	if err := json.Unmarshal(out, &pkg); err != nil {
		t.Fatalf("go list %s: %v", dir, err)
	}
	// A listing this short means go list did not see the module: a check
	// over it would pass for the wrong reason.
	if len(pkg.Deps) < 10 {
		t.Fatalf("go list found only %d dependencies of %s: %v", len(pkg.Deps), pkg.ImportPath, pkg.Deps)
	}
	sort.Strings(pkg.Deps)
	return pkg.ImportPath, pkg.Deps
}

func (f Forbidden) match(dep string) (string, bool) {
	if why, ok := f[dep]; ok {
		return why, true
	}
	for pattern, why := range f {
		if prefix, ok := strings.CutSuffix(pattern, "/..."); ok && (dep == prefix || strings.HasPrefix(dep, prefix+"/")) {
			return why, true
		}
	}
	return "", false
}
