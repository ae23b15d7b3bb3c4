package main

import (
	"testing"

	"github.com/podid/podid/test/deptest"
)

// The agent runs on every node, so its resident memory is multiplied by the
// cluster's size: linking client-go, the API types or controller-runtime
// costs about 30 MB before it caches anything (their package initialisation
// alone).
const kubernetesClients = "keep Kubernetes client libraries out of internal/agent and internal/agentcmd: the agent runs on every node, and their initialisation alone costs about 30 MB"

func TestLinksNoHarnessNorKubernetesClients(t *testing.T) {
	deptest.Check(t, ".", deptest.Release, deptest.Merge(deptest.Harness, deptest.Forbidden{
		"k8s.io/client-go/...":               kubernetesClients,
		"k8s.io/api/...":                     kubernetesClients,
		"k8s.io/apimachinery/...":            kubernetesClients,
		"sigs.k8s.io/controller-runtime/...": kubernetesClients,
		"k8s.io/klog/...":                    kubernetesClients,
	}))
}
