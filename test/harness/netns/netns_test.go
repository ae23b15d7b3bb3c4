package netns_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/podid/podid/internal/agent"
	"github.com/podid/podid/test/harness/localnode"
	"github.com/podid/podid/test/harness/netns/netnstest"
)

// A workload process started in the node reaches a server bound to the
// agent's address inside the node, with an ordinary HTTP client; the host
// cannot.
func TestNodeHostsAgentAddress(t *testing.T) {
	node := netnstest.NewNode(t)
	l, err := node.Listen("tcp", "169.254.170.23:80")
	if err != nil {
		t.Fatalf("binding the agent address in the node: %v", err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from the node, host %s", r.Host)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })

	cmd := node.Command(t.Context(), os.Args[0], "-test.run=^TestWorkloadProcess$")
	cmd.Env = append(os.Environ(), "PODID_NETNS_WORKLOAD_URL=http://169.254.170.23/")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("workload in the node: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "hello from the node, host 169.254.170.23") {
		t.Fatalf("workload got %q", out)
	}

	// The address lives in the node only: no interface of the host holds it,
	// but the host's lo while a real node runs on this machine (its agent
	// puts the address there, as on any node). Checked without sending
	// anything: on some machines the host routes link-local addresses off
	// the machine.
	realNode, err := localnode.Running()
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	if !realNode {
		// One that started while the addresses were listed counts too.
		if realNode, err = localnode.Running(); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range addrs {
		if !a.IP.Equal(agent.DefaultIPv4) && !a.IP.Equal(agent.DefaultIPv6) {
			continue
		}
		link, err := netlink.LinkByIndex(a.LinkIndex)
		if err != nil {
			t.Fatal(err)
		}
		if realNode && link.Attrs().Name == "lo" {
			t.Logf("the host's lo holds %s: the real node running on this machine put it there", a.IP)
			continue
		}
		t.Fatalf("the host namespace holds %s on %s: the node is not isolated", a.IP, link.Attrs().Name)
	}
}

func TestNodeHasIPv6AddressWhenTheKernelDoes(t *testing.T) {
	node := netnstest.NewNode(t)
	if !node.IPv6 {
		if _, err := os.Stat("/proc/sys/net/ipv6"); err == nil {
			t.Fatal("the kernel has IPv6 but fd00:ec2::23 could not be added")
		}
		t.Skip("skipped: this kernel has no IPv6, so the node is IPv4-only")
	}
	l, err := node.Listen("tcp", "[fd00:ec2::23]:80")
	if err != nil {
		t.Fatalf("binding [fd00:ec2::23]:80: %v", err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			_, _ = io.WriteString(c, "v6\n")
			c.Close()
		}
	}()
	var line string
	err = node.Do(func() error {
		c, err := net.Dial("tcp", "[fd00:ec2::23]:80")
		if err != nil {
			return err
		}
		defer c.Close()
		line, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	if err != nil || line != "v6\n" {
		t.Fatalf("dialling [fd00:ec2::23]:80 inside the node: %q, %v", line, err)
	}
}

// TestWorkloadProcess is the workload that TestNodeHostsAgentAddress runs in
// the node; on its own it does nothing.
func TestWorkloadProcess(t *testing.T) {
	url := os.Getenv("PODID_NETNS_WORKLOAD_URL")
	if url == "" {
		return
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
}
