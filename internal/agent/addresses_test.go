package agent

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// bareNamespace makes an empty network namespace, as a fresh node is.
func bareNamespace(t *testing.T) *netlink.Handle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: this test makes a network namespace, which needs root (CAP_SYS_ADMIN); .ci/run runs as root")
	}
	name := fmt.Sprintf("podid-agent-init-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func addressesOn(t *testing.T, h *netlink.Handle, link string) []string {
	l, err := h.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		if !a.IP.IsLoopback() {
			out = append(out, a.IPNet.String())
		}
	}
	return out
}

func TestSetupAddressesIsIdempotent(t *testing.T) {
	h := bareNamespace(t)
	opts := AddressOptions{Link: "lo", IPs: []net.IP{DefaultIPv4, DefaultIPv6}, Handle: h}
	for i := range 2 {
		placed, err := SetupAddresses(opts)
		if err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		if len(placed) == 0 || !placed[0].Equal(DefaultIPv4) {
			t.Fatalf("run %d placed %v", i+1, placed)
		}
	}
	got := strings.Join(addressesOn(t, h, "lo"), " ")
	if strings.Count(got, "169.254.170.23/32") != 1 {
		t.Fatalf("addresses on lo after two runs: %s", got)
	}
}

func TestSetupAddressesOnADummyLink(t *testing.T) {
	h := bareNamespace(t)
	_, err := SetupAddresses(AddressOptions{Link: "podid0", IPs: []net.IP{DefaultIPv4}, Handle: h})
	if err != nil {
		// This machine's kernel may lack the dummy module: the error must say what to do.
		if !strings.Contains(err.Error(), "modprobe dummy") || !strings.Contains(err.Error(), "--link lo") {
			t.Fatalf("error without a remedy: %v", err)
		}
		return
	}
	if got := addressesOn(t, h, "podid0"); len(got) != 1 || got[0] != "169.254.170.23/32" {
		t.Fatalf("addresses on podid0: %v", got)
	}
}
