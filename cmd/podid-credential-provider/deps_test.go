package main

import (
	"testing"

	"github.com/podid/podid/test/deptest"
)

// The kubelet starts the plugin for every uncached pull: it must not link
// the Kubernetes client libraries (the kubelet's own API types, which need
// apimachinery, are the protocol and stay).
const startedPerPull = "the kubelet starts the plugin for every uncached pull; keep Kubernetes client libraries out of internal/credprovider"

func TestLinksNoHarnessNorKubernetesClient(t *testing.T) {
	deptest.Check(t, ".", deptest.Release, deptest.Merge(deptest.Harness, deptest.Forbidden{
		"k8s.io/client-go/...":               startedPerPull,
		"k8s.io/api/...":                     startedPerPull,
		"sigs.k8s.io/controller-runtime/...": startedPerPull,
	}))
}
