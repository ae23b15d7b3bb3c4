// Package netns makes a Linux network namespace stand in for a Kubernetes
// node: it holds the link-local addresses of the node agent (169.254.170.23
// and fd00:ec2::23) on its loopback, so that an agent can bind the real
// addresses and a workload process in the same namespace can reach them, as
// on a node, without touching the host's network.
//
// The addresses go on the namespace's lo rather than on a dummy link because
// the dummy kernel module is missing on some machines; for the agent and its
// clients the difference does not show. Creating a namespace needs root.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/podid/podid/internal/agent"
)

// Node is a named network namespace with the agent's addresses on its lo.
type Node struct {
	// Name names the namespace, as `ip netns exec NAME` takes it.
	Name string
	// IPv6 reports whether fd00:ec2::23 could be added: a kernel without
	// IPv6 leaves the node IPv4-only, as such a node would be.
	IPv6 bool

	handle netns.NsHandle
}

// NewNode creates the namespace name, brings its lo up and puts the agent's
// addresses on it.
func NewNode(name string) (*Node, error) {
	handle, err := createNamed(name)
	if err != nil {
		return nil, fmt.Errorf("creating network namespace %s: %w", name, err)
	}
	n := &Node{Name: name, handle: handle}
	if err := n.configure(); err != nil {
		_ = n.Delete()
		return nil, err
	}
	return n, nil
}

// createNamed creates a named namespace without leaving the calling thread
// in it.
func createNamed(name string) (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return 0, err
	}
	defer orig.Close()
	handle, err := netns.NewNamed(name)
	if restoreErr := netns.Set(orig); restoreErr != nil {
		// The thread is stuck in the other namespace: keep it locked so the
		// runtime retires it with this goroutine instead of reusing it.
		return 0, errors.Join(err, restoreErr)
	}
	runtime.UnlockOSThread()
	return handle, err
}

func (n *Node) configure() error {
	h, err := netlink.NewHandleAt(n.handle)
	if err != nil {
		return fmt.Errorf("opening netlink in %s: %w", n.Name, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("finding lo in %s: %w", n.Name, err)
	}
	v4 := &netlink.Addr{IPNet: &net.IPNet{IP: agent.DefaultIPv4, Mask: net.CIDRMask(32, 32)}}
	if err := h.AddrAdd(lo, v4); err != nil {
		return fmt.Errorf("adding %s to lo in %s: %w", v4, n.Name, err)
	}
	// No duplicate address detection: the address would stay tentative, and
	// unbindable, for a while after it is added.
	v6 := &netlink.Addr{IPNet: &net.IPNet{IP: agent.DefaultIPv6, Mask: net.CIDRMask(128, 128)}, Flags: unix.IFA_F_NODAD}
	n.IPv6 = h.AddrAdd(lo, v6) == nil
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bringing lo up in %s: %w", n.Name, err)
	}
	// The kernel installs the local routes of lo's addresses asynchronously
	// once lo is up (IPv6 in particular); hand out the node only when both
	// addresses can be reached.
	want := []net.IP{agent.DefaultIPv4}
	if n.IPv6 {
		want = append(want, agent.DefaultIPv6)
	}
	for _, ip := range want {
		if err := waitForRoute(h, ip); err != nil {
			return fmt.Errorf("in %s: %w", n.Name, err)
		}
	}
	return nil
}

func waitForRoute(h *netlink.Handle, ip net.IP) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		// Until lo is ready, the kernel answers with an unreachable route
		// rather than an error: wait for the local one.
		routes, err := h.RouteGet(ip)
		if err == nil && len(routes) > 0 && routes[0].Type == unix.RTN_LOCAL {
			return nil
		}
		if err == nil {
			err = errors.New("the route is not local yet")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no route to %s on lo after 5s: %w", ip, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Do runs fn on an OS thread that is inside the node's namespace. Sockets fn
// creates belong to the node and stay there after fn returns; goroutines fn
// starts do not run in the namespace.
func (n *Node) Do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(n.handle); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering %s: %w", n.Name, err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		return errors.Join(fnErr, fmt.Errorf("leaving %s: %w", n.Name, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// Listen opens a listener inside the node, e.g. on 169.254.170.23:80.
func (n *Node) Listen(network, address string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() (err error) {
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}

// DialContext connects from inside the node, as a workload would (it has
// the signature of net.Dialer.DialContext, for an http.Transport).
func (n *Node) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var conn net.Conn
	err := n.Do(func() (err error) {
		conn, err = (&net.Dialer{}).DialContext(ctx, network, address)
		return err
	})
	return conn, err
}

// Command prepares a process that runs inside the node, as a workload
// container's process would, through `ip netns exec`.
func (n *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Delete removes the namespace; processes still in it keep it alive until
// they exit.
func (n *Node) Delete() error {
	_ = n.handle.Close()
	return netns.DeleteNamed(n.Name)
}
