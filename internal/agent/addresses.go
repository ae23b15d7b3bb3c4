package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podid/podid/internal/podidentity"
)

// The link-local addresses the SDKs call, as EKS Pod Identity uses them.
var (
	DefaultIPv4 = net.ParseIP(podidentity.AgentIPv4)
	DefaultIPv6 = net.ParseIP(podidentity.AgentIPv6)
)

// AddressOptions configure SetupAddresses.
type AddressOptions struct {
	// Link holds the addresses. It is created as a dummy link unless it
	// exists (use "lo" where the dummy module is missing).
	Link string
	// IPs to put on it, each as a host address (/32 or /128).
	IPs []net.IP
	Log *slog.Logger
	// Handle is the netlink handle to use; nil means this network namespace.
	Handle *netlink.Handle
}

// SetupAddresses puts opts.IPs on opts.Link, creating and raising it as
// needed. It is idempotent. An IPv6 address that cannot be added (a node
// without IPv6) is logged and skipped; it returns the addresses in place.
func SetupAddresses(opts AddressOptions) ([]net.IP, error) {
	h := opts.Handle
	if h == nil {
		var err error
		if h, err = netlink.NewHandle(); err != nil {
			return nil, fmt.Errorf("opening netlink: %w", err)
		}
		defer h.Close()
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	link, err := h.LinkByName(opts.Link)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		err = h.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: opts.Link}})
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP) {
			return nil, fmt.Errorf("creating dummy link %s: the kernel has no dummy link support (load it with `modprobe dummy`, or put the addresses on lo with --link lo): %w", opts.Link, err)
		}
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("creating dummy link %s: %w", opts.Link, err)
		}
		link, err = h.LinkByName(opts.Link)
	}
	if err != nil {
		return nil, fmt.Errorf("finding link %s: %w", opts.Link, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("bringing %s up: %w", opts.Link, err)
	}
	var placed []net.IP
	for _, ip := range opts.IPs {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)}}
		if ip.To4() == nil {
			// No duplicate address detection: it would keep the address
			// tentative, and unbindable, for a while.
			addr = &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(128, 128)}, Flags: unix.IFA_F_NODAD}
		}
		if err := h.AddrReplace(link, addr); err != nil {
			if ip.To4() == nil {
				opts.Log.Warn("IPv6 address not added; the node seems to have no IPv6, continuing with IPv4 only", "address", ip.String(), "link", opts.Link, "error", err.Error())
				continue
			}
			return placed, fmt.Errorf("adding %s to %s: %w", ip, opts.Link, err)
		}
		placed = append(placed, ip)
	}
	return placed, nil
}
