package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The agent runs on every node, so its resident memory is multiplied by the
// cluster's size: linking client-go, the API types or controller-runtime
// costs about 30 MB before it caches anything (their package initialisation
// alone). This keeps them out.
func TestAgentLinksNoKubernetesClientLibraries(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{"k8s.io/client-go", "k8s.io/api/", "k8s.io/apimachinery", "sigs.k8s.io/controller-runtime", "k8s.io/klog"}
	deps := strings.Fields(string(out))
	for _, dep := range deps {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("podid-agent links %s; keep Kubernetes client libraries out of internal/agent and internal/agentcmd", dep)
			}
		}
	}
	if len(deps) < 10 {
		t.Fatalf("go list found only %d packages: %v", len(deps), deps)
	}
}
