package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The kubelet starts the plugin for every uncached pull: it must not link
// the Kubernetes client libraries (the kubelet's own API types, which need
// apimachinery, are the protocol and stay).
func TestPluginLinksNoKubernetesClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	for _, dep := range deps {
		for _, f := range []string{"k8s.io/client-go", "sigs.k8s.io/controller-runtime", "k8s.io/api/"} {
			if strings.HasPrefix(dep, f) {
				t.Errorf("podid-credential-provider links %s", dep)
			}
		}
	}
	if len(deps) < 10 {
		t.Fatalf("go list found only %d packages", len(deps))
	}
}
