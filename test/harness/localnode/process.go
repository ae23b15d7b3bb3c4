package localnode

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is a component the node started: etcd, kube-apiserver, the
// controllers, containerd, the kubelet, kube-proxy, CoreDNS.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// start runs bin with args in its own process group (so a terminal's Ctrl-C
// reaches only the test or sandbox, which then stops the node in order),
// logging to <state>/logs/<name>.log, and records it.
func (n *Node) start(name, bin string, args ...string) (*process, error) {
	logFile, err := os.OpenFile(filepath.Join(n.Dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), n.extraEnv...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	n.procs = append(n.procs, p)
	n.rec.Procs = append(n.rec.Procs, proc{Name: name, PID: cmd.Process.Pid, Exe: bin})
	return p, n.rec.save()
}

// exited reports whether p has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM, then SIGKILL after grace.
func (p *process) stop(grace time.Duration) {
	if ok, _ := p.exited(); ok {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// killRecorded kills the processes a killed run left, checking that each PID
// still runs the recorded executable so that a recycled PID is spared.
func killRecorded(procs []proc) {
	for i := len(procs) - 1; i >= 0; i-- {
		pr := procs[i]
		exe, err := os.Readlink("/proc/" + strconv.Itoa(pr.PID) + "/exe")
		// " (deleted)": hack/tools.sh replaced the binary since it started.
		if err == nil && strings.TrimSuffix(exe, " (deleted)") == pr.Exe && !zombie(pr.PID) {
			_ = syscall.Kill(pr.PID, syscall.SIGKILL)
		}
	}
}

// zombie reports whether pid has exited and awaits its parent (PID 1 on
// this machine reaps orphans only every second or two).
func zombie(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

// alive reports whether pid runs (and is not a zombie).
func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil && !zombie(pid)
}

// killShims kills the containerd shims started by the containerd listening
// on socket: they outlive containerd by design, and their command line names
// the socket, which no other containerd uses.
func killShims(socket string) {
	if socket == "" {
		return
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) == 0 || !strings.Contains(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		for i := range args {
			if args[i] == "-address" && i+1 < len(args) && args[i+1] == socket {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// killCgroup kills every process left in the named cgroup tree (containers
// whose shim died), a few times over, since a dying process can leave
// children behind.
func killCgroup(name string) error {
	for range 5 {
		pids := cgroupProcs(name)
		live := pids[:0]
		for _, pid := range pids {
			if alive(pid) {
				live = append(live, pid)
			}
		}
		if len(live) == 0 {
			return nil
		}
		for _, pid := range live {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(time.Second)
	}
	if pids := cgroupProcs(name); len(pids) > 0 {
		return errors.New("processes still in the " + name + " cgroups: " + fmt.Sprint(pids))
	}
	return nil
}
