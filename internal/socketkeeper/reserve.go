package socketkeeper

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// A kept socket is bound when it is reserved but listens only once a
// server is ready to accept on it. Until the first server listens, the
// kernel gives the address's connections to the other sockets sharing it
// (SO_REUSEPORT: the agent being replaced in a rollout) rather than queuing
// them where nobody accepts yet; after a server dies, the socket still
// listens, and connections wait for the next one.

// backlog is the accept queue asked for; the kernel caps it at
// net.core.somaxconn.
const backlog = 4096

// Reserve binds a TCP socket to addr (host:port; an empty host is every
// address, IPv6 and IPv4) with SO_REUSEADDR and SO_REUSEPORT, without
// listening. An address held by a socket without SO_REUSEPORT is an error
// wrapping unix.EADDRINUSE; errors are *net.OpError, as net.Listen's.
func Reserve(addr string) (*os.File, error) {
	tcp, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, err
	}
	fail := func(call string, err error) error {
		return &net.OpError{Op: "listen", Net: "tcp", Addr: tcp, Err: os.NewSyscallError(call, err)}
	}
	// An empty host or :: is every address of both families, as with
	// net.Listen; 0.0.0.0 is IPv4's only.
	dualStack := tcp.IP == nil || tcp.IP.Equal(net.IPv6unspecified)
	ip4 := tcp.IP.To4()
	family := unix.AF_INET6
	if ip4 != nil {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if errors.Is(err, unix.EAFNOSUPPORT) && dualStack {
		family, ip4, dualStack = unix.AF_INET, net.IPv4zero.To4(), false // a node without IPv6
		fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	}
	if err != nil {
		return nil, fail("socket", err)
	}
	setopt := func(level, opt, value int) error {
		if err := unix.SetsockoptInt(fd, level, opt, value); err != nil {
			unix.Close(fd)
			return fail("setsockopt", err)
		}
		return nil
	}
	if err := setopt(unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return nil, err
	}
	if err := setopt(unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return nil, err
	}
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		a := &unix.SockaddrInet4{Port: tcp.Port}
		copy(a.Addr[:], ip4)
		sa = a
	} else {
		a := &unix.SockaddrInet6{Port: tcp.Port}
		copy(a.Addr[:], tcp.IP.To16())
		if tcp.Zone != "" {
			ifi, err := net.InterfaceByName(tcp.Zone)
			if err != nil {
				unix.Close(fd)
				return nil, fail("bind", err)
			}
			a.ZoneId = uint32(ifi.Index)
		}
		sa = a
		if dualStack {
			if err := setopt(unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
				return nil, err
			}
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fail("bind", err)
	}
	return os.NewFile(uintptr(fd), addr), nil
}

// Listen makes a reserved socket (or one already listening) listen, and
// returns it as a net.Listener; f is closed, the listener holds its own
// descriptor.
func Listen(f *os.File) (net.Listener, error) {
	defer f.Close()
	if err := unix.Listen(int(f.Fd()), backlog); err != nil {
		return nil, fmt.Errorf("listening on %s: %w", f.Name(), os.NewSyscallError("listen", err))
	}
	return net.FileListener(f)
}

// listening says whether any of the sockets listens: a server was ready to
// accept on them. The keeper's descriptors share the socket with the
// server's, so a listen() by the server shows on them.
func listening(files []*os.File) bool {
	for _, f := range files {
		if on, err := unix.GetsockoptInt(int(f.Fd()), unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err == nil && on == 1 {
			return true
		}
	}
	return false
}
