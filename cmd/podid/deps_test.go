package main

import (
	"testing"

	"github.com/podid/podid/test/deptest"
)

// podid runs as the server and the rotator in production: it links none of
// the harness.
func TestLinksNoHarness(t *testing.T) {
	deptest.Check(t, ".", deptest.Release, deptest.Harness)
}
