package agent

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/podid/podid/internal/socketkeeper"
)

// reserve binds addr with SO_REUSEPORT, not listening yet (see
// socketkeeper.Reserve), so that the agent replacing this one on the node
// (the DaemonSet rolls out with a surge) binds the same addresses while
// this one still serves, and takes over without a refused connection. An
// address already taken by a process without it is an *addrTakenError
// naming who holds it, as far as this process can see, and what to
// change: on a node, the agent shares the host's ports with every
// host-network pod and system service.
func reserve(what, addr, setting string) (*os.File, error) {
	f, err := socketkeeper.Reserve(addr)
	if err == nil {
		return f, nil
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("listening for %s on %s: %w", what, addr, err)
	}
	return nil, &addrTakenError{what: what, addr: addr, holder: portHolder(procRoot, addr), setting: setting}
}

// addrTakenError is an address another process holds.
type addrTakenError struct{ what, addr, holder, setting string }

func (e *addrTakenError) Error() string {
	return fmt.Sprintf("listening for %s on %s: the address is taken on this node by %s; free it, or move the agent's %s (%s)", e.what, e.addr, e.holder, e.what, e.setting)
}

func (e *addrTakenError) Unwrap() error { return syscall.EADDRINUSE }

// procRoot is where /proc is; tests point it elsewhere.
var procRoot = "/proc"

// portHolder names the process listening on addr's port, from the
// kernel's socket tables and the processes this one can see; the agent's
// container sees only its own, so a holder outside it is described with
// the command that finds it.
func portHolder(proc, addr string) string {
	_, portText, err := net.SplitHostPort(addr)
	port, perr := strconv.Atoi(portText)
	unknown := fmt.Sprintf("another process (`ss -ltnp 'sport = :%s'` on the node names it)", portText)
	if err != nil || perr != nil {
		return unknown
	}
	inodes := listeningInodes(proc, port)
	if len(inodes) == 0 {
		return unknown
	}
	pids, _ := os.ReadDir(proc)
	for _, p := range pids {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(proc, p.Name(), "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(proc, p.Name(), "fd", fd.Name()))
			inode, isSocket := strings.CutPrefix(target, "socket:[")
			if err != nil || !isSocket || !inodes[strings.TrimSuffix(inode, "]")] {
				continue
			}
			comm, _ := os.ReadFile(filepath.Join(proc, p.Name(), "comm"))
			return fmt.Sprintf("process %s (pid %d)", strings.TrimSpace(string(comm)), pid)
		}
	}
	return unknown
}

// listeningInodes are the socket inodes in LISTEN state on port, from
// /proc/net/tcp and tcp6.
func listeningInodes(proc string, port int) map[string]bool {
	const listenState = "0A"
	out := map[string]bool{}
	for _, table := range []string{"net/tcp", "net/tcp6"} {
		f, err := os.Open(filepath.Join(proc, table))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // the header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != listenState {
				continue
			}
			_, hexPort, ok := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil && int(p) == port {
				out[fields[9]] = true
			}
		}
		f.Close()
	}
	return out
}
