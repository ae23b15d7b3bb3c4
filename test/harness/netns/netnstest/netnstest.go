// Package netnstest gives tests a node (package netns) that is deleted when the
// test ends, and skips, saying why, where namespaces cannot be created.
package netnstest

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/podid/podid/test/harness/netns"
)

var counter atomic.Int64

// NewNode returns a fresh node for t. Without root it skips the test: network
// namespaces need CAP_SYS_ADMIN, and .ci/run runs as root so CI never skips.
func NewNode(t testing.TB) *netns.Node {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: this test makes a network namespace as a node, which needs root (CAP_SYS_ADMIN); run it as root, as .ci/run does")
	}
	name := fmt.Sprintf("podid-test-%d-%d", os.Getpid(), counter.Add(1))
	n, err := netns.NewNode(name)
	if err != nil {
		t.Fatalf("making node %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := n.Delete(); err != nil {
			t.Errorf("deleting node %s: %v", name, err)
		}
	})
	return n
}
