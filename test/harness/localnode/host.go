package localnode

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runDir holds the machine-wide lock and the record of host changes. It is
// fixed, not per run, so that a run can find what a killed one left.
const runDir = "/run/podid-localnode"

// hostSysctls are the kernel settings a node changes on the host: the
// kubelet's (protectKernelDefaults: false), the bridge plugin's and
// kube-proxy's. Their old values are recorded before anything starts and
// written back at teardown; panic_on_oops=1 on a shared machine is the one
// that matters most.
var hostSysctls = []string{
	"vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes",
	"net.ipv4.ip_forward", "net.ipv4.conf.all.route_localnet",
	"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables",
	"net.netfilter.nf_conntrack_max", "net.netfilter.nf_conntrack_tcp_timeout_established",
	"net.netfilter.nf_conntrack_tcp_timeout_close_wait", "net.netfilter.nf_conntrack_tcp_be_liberal",
}

// hostPaths are directories outside the node's own that the kubelet,
// containerd or the CNI plugins create wherever they are configured; those
// that did not exist before are removed at teardown.
var hostPaths = []string{
	"/var/lib/kubelet", "/var/lib/cni", "/run/netns", "/var/log/pods", "/var/log/containers",
	"/run/containerd", "/opt/containerd", "/run/nri", "/usr/libexec/kubernetes", "/opt/cni",
}

// record is what a run changed on the host, written to disk before each
// change so that teardown — this run's, or the next run's after a kill —
// undoes exactly that.
type record struct {
	StateDir     string            `json:"stateDir"`
	Sysctls      map[string]string `json:"sysctls"`
	CreatedPaths []string          `json:"createdPaths"`
	NetnsBefore  []string          `json:"netnsBefore"`
	KubepodsNew  bool              `json:"kubepodsNew"`
	Bridge       string            `json:"bridge"`
	BridgeNew    bool              `json:"bridgeNew"`
	Routes       []string          `json:"routes"`
	// LoAddrs are the agent's addresses that were not on lo before: the
	// chart's init container puts them there on a node without the dummy
	// link type.
	LoAddrs []string `json:"loAddrs"`
	// AgentLinkNew: podid agent's dummy link was not there before (nodes
	// with the dummy link type get it from the chart's init container).
	AgentLinkNew bool `json:"agentLinkNew"`
	// Procs are the processes started, by PID and executable, so that a
	// recycled PID is never killed.
	Procs []proc `json:"procs"`
	// ContainerdSocket identifies this node's shims by their command line.
	ContainerdSocket string `json:"containerdSocket"`
}

type proc struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	Exe  string `json:"exe"`
}

func recordPath() string { return filepath.Join(runDir, "host.json") }

func (r *record) save() error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := recordPath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("recording host changes: %w", err)
	}
	return os.Rename(tmp, recordPath())
}

func loadRecord() (*record, error) {
	data, err := os.ReadFile(recordPath())
	if err != nil {
		return nil, err
	}
	r := &record{}
	if err := json.Unmarshal(data, r); err != nil {
		return nil, fmt.Errorf("%s is not a record of host changes (%w); inspect and remove it", recordPath(), err)
	}
	return r, nil
}

// lock takes the machine-wide node lock, waiting up to wait for another run
// to finish. The kernel releases it when the process dies, however it dies.
func lock(wait time.Duration) (*os.File, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(runDir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("another real node runs on this machine (lock %s held for %s): one node per machine", f.Name(), wait)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Running reports whether a real node runs on this machine now, by whether
// its machine-wide lock is held: tests that look at the host (a real node's
// agent puts its addresses on the host's lo) ask it rather than depend on
// the order packages run in.
func Running() (bool, error) {
	f, err := os.Open(filepath.Join(runDir, "lock"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	// A shared lock is refused only while a node holds the exclusive one,
	// and never keeps a node from starting for longer than this call.
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return false, syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// snapshot records the host's state before a node changes it.
func snapshot(stateDir, bridge string) (*record, error) {
	r := &record{StateDir: stateDir, Sysctls: map[string]string{}, Bridge: bridge}
	for _, k := range hostSysctls {
		if v, err := readSysctl(k); err == nil {
			r.Sysctls[k] = v
		}
	}
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			r.CreatedPaths = append(r.CreatedPaths, p)
		}
	}
	r.NetnsBefore, _ = filepath.Glob("/run/netns/*")
	if m, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods"); len(m) == 0 {
		r.KubepodsNew = true
	}
	for _, a := range []string{agentIPv4 + "/32", agentIPv6 + "/128"} {
		if !hasAddr("lo", a) {
			r.LoAddrs = append(r.LoAddrs, a)
		}
	}
	r.AgentLinkNew = exec.Command("ip", "link", "show", agentLink).Run() != nil
	return r, nil
}

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

func readSysctl(key string) (string, error) {
	data, err := os.ReadFile(sysctlPath(key))
	return strings.TrimSpace(string(data)), err
}

func hasAddr(link, cidr string) bool {
	out, err := exec.Command("ip", "-o", "addr", "show", "dev", link).Output()
	return err == nil && bytes.Contains(out, []byte(" "+cidr+" "))
}

// restore undoes what r records, best effort: it goes on past failures and
// returns them all. The processes must be stopped first (stopProcesses).
func (r *record) restore(logf func(string, ...any)) error {
	var errs []error
	// Unmount everything below the node's directories, deepest first: the
	// kubelet bind-mounts its root onto itself and mounts each pod's
	// volumes; containerd mounts overlays.
	for _, dir := range []string{kubeletRoot, runDir + "/containerd", r.StateDir} {
		if dir == "" {
			continue
		}
		if err := unmountBelow(dir); err != nil {
			errs = append(errs, err)
		}
	}
	netns, _ := filepath.Glob("/run/netns/cni-*")
	for _, ns := range netns {
		if contains(r.NetnsBefore, ns) {
			continue
		}
		_ = syscall.Unmount(ns, syscall.MNT_DETACH)
		_ = os.Remove(ns)
	}
	if r.Bridge != "" {
		if r.BridgeNew {
			_ = exec.Command("ip", "link", "del", r.Bridge).Run()
		}
	}
	for _, route := range r.Routes {
		_ = exec.Command("ip", append([]string{"route", "del"}, strings.Fields(route)...)...).Run()
	}
	for _, a := range r.LoAddrs {
		if hasAddr("lo", a) {
			if err := exec.Command("ip", "addr", "del", a, "dev", "lo").Run(); err != nil {
				errs = append(errs, fmt.Errorf("removing %s from lo: %w", a, err))
			}
		}
	}
	if r.AgentLinkNew {
		_ = exec.Command("ip", "link", "del", agentLink).Run()
	}
	for _, ipt := range []string{"iptables", "ip6tables"} {
		if err := removeKubeChains(ipt); err != nil {
			errs = append(errs, err)
		}
	}
	if r.KubepodsNew {
		removeCgroups("kubepods")
	}
	keys := make([]string, 0, len(r.Sysctls))
	for k := range r.Sysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if cur, err := readSysctl(k); err == nil && cur != r.Sysctls[k] {
			if err := os.WriteFile(sysctlPath(k), []byte(r.Sysctls[k]), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("restoring %s=%s: %w", k, r.Sysctls[k], err))
			} else {
				logf("restored %s=%s (was %s)", k, r.Sysctls[k], cur)
			}
		}
	}
	for _, p := range r.CreatedPaths {
		if p == "/run/netns" {
			// Other programs (ip netns) may have put namespaces there
			// meanwhile: remove it only if empty.
			_ = os.Remove(p)
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", p, err))
		}
	}
	if r.StateDir != "" {
		if err := os.RemoveAll(r.StateDir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", r.StateDir, err))
		}
	}
	for _, d := range []string{runDir + "/containerd", runDir + "/runc", runDir + "/cni"} {
		_ = os.RemoveAll(d)
	}
	return errors.Join(errs...)
}

// unmountBelow unmounts every mount point at or below dir, deepest first.
func unmountBelow(dir string) error {
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return err
	}
	var points []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		p := unescapeMount(f[1])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, 0); err != nil {
			if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("unmounting %s: %w", p, err))
			}
		}
	}
	return errors.Join(errs...)
}

// unescapeMount decodes /proc/self/mounts' octal escapes (\040 for space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeKubeChains deletes every KUBE-* chain the kubelet and kube-proxy
// made and the node's own guard chain, and every rule elsewhere that jumps
// to one, in one iptables-restore per table, leaving all other rules as they
// are.
func removeKubeChains(ipt string) error {
	if _, err := exec.LookPath(ipt + "-save"); err != nil {
		return nil
	}
	out, err := exec.Command(ipt + "-save").Output()
	if err != nil {
		return fmt.Errorf("%s-save: %w", ipt, err)
	}
	script := kubeChainsCleanup(string(out))
	if script == "" {
		return nil
	}
	cmd := exec.Command(ipt+"-restore", "--noflush")
	cmd.Stdin = strings.NewReader(script)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s-restore removing KUBE-* chains: %w: %s", ipt, err, msg)
	}
	return nil
}

// ownChain reports whether a chain is one a node makes.
func ownChain(name string) bool {
	return strings.HasPrefix(name, "KUBE-") || name == guardChain
}

// kubeChainsCleanup turns iptables-save output into an iptables-restore
// --noflush script that removes the node's chains (ownChain) and the rules
// of other chains that jump to them; "" when there are none.
func kubeChainsCleanup(save string) string {
	var b strings.Builder
	var table string
	var deletes, chains []string
	flush := func() {
		if table != "" && (len(deletes) > 0 || len(chains) > 0) {
			fmt.Fprintf(&b, "*%s\n", table)
			for _, d := range deletes {
				b.WriteString(d + "\n")
			}
			for _, c := range chains {
				fmt.Fprintf(&b, "-F %s\n", c)
			}
			for _, c := range chains {
				fmt.Fprintf(&b, "-X %s\n", c)
			}
			b.WriteString("COMMIT\n")
		}
		deletes, chains = nil, nil
	}
	for _, line := range strings.Split(save, "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			flush()
			table = strings.TrimPrefix(line, "*")
		case strings.HasPrefix(line, ":"):
			if name := strings.Fields(line[1:]); len(name) > 0 && ownChain(name[0]) {
				chains = append(chains, name[0])
			}
		case strings.HasPrefix(line, "-A "):
			f := strings.Fields(line)
			if len(f) > 1 && !ownChain(f[1]) && jumpsToOwn(f) {
				deletes = append(deletes, "-D"+strings.TrimPrefix(line, "-A"))
			}
		}
	}
	flush()
	return b.String()
}

// jumpsToOwn reports whether a rule's target (-j or -g) is a node's chain.
func jumpsToOwn(fields []string) bool {
	for i := 0; i+1 < len(fields); i++ {
		if (fields[i] == "-j" || fields[i] == "-g") && ownChain(fields[i+1]) {
			return true
		}
	}
	return false
}

// removeCgroups removes the named cgroup tree in every v1 hierarchy (and the
// unified one), deepest first. Its processes must be gone.
func removeCgroups(name string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	if _, err := os.Stat("/sys/fs/cgroup/" + name); err == nil {
		roots = append(roots, "/sys/fs/cgroup/"+name)
	}
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = syscall.Rmdir(dirs[i])
		}
	}
}

// cgroupProcs lists the processes in the named cgroup tree.
func cgroupProcs(name string) []int {
	var pids []int
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			data, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
