package localnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Stop takes the node down and puts the host back as it was: pods first
// (through the kubelet, so volumes and networks are released), then the
// kubelet, containers, containerd and its shims, the control plane, and
// finally every recorded host change. It is safe to call twice.
func (n *Node) Stop() error {
	if n.stopped || n.rec == nil {
		if n.lock != nil {
			n.lock.Close()
			n.lock = nil
		}
		return nil
	}
	n.stopped = true
	began := time.Now()
	var errs []error
	n.stopNamed("kube-controller-manager", 10*time.Second)
	n.stopNamed("kube-scheduler", 10*time.Second)
	n.deletePods(20 * time.Second)
	n.stopNamed("kubelet", 15*time.Second)
	n.removeContainers()
	n.stopNamed("containerd", 15*time.Second)
	killShims(n.rec.ContainerdSocket)
	if n.rec.KubepodsNew {
		if err := killCgroup("kubepods"); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(n.procs) - 1; i >= 0; i-- {
		n.procs[i].stop(15 * time.Second)
	}
	if err := n.rec.restore(n.logf); err != nil {
		errs = append(errs, err)
	}
	if err := os.Remove(recordPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	n.lock.Close()
	n.lock = nil
	n.logf("node stopped and host restored (%.1fs)", time.Since(began).Seconds())
	return errors.Join(errs...)
}

func (n *Node) stopNamed(name string, grace time.Duration) {
	for _, p := range n.procs {
		if p.name == name {
			p.stop(grace)
		}
	}
}

func (n *Node) running(name string) bool {
	for _, p := range n.procs {
		if p.name == name {
			if ok, _ := p.exited(); !ok {
				return true
			}
		}
	}
	return false
}

// deletePods deletes every pod and waits, at most timeout, for the kubelet
// to tear them down.
func (n *Node) deletePods(timeout time.Duration) {
	if !n.running("kubelet") || !n.running("kube-apiserver") {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	pods, err := n.Clientset.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	grace := int64(1)
	for _, p := range pods.Items {
		_ = n.Clientset.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
	}
	for ctx.Err() == nil {
		entries, _ := os.ReadDir(filepath.Join(kubeletRoot, "pods"))
		if len(entries) == 0 {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// removeContainers kills and deletes whatever containers are left, while
// containerd still runs.
func (n *Node) removeContainers() {
	if !n.running("containerd") {
		return
	}
	ctr := func(args ...string) []string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, _ := exec.CommandContext(ctx, filepath.Join(n.bin, "ctr"), append([]string{"--address", n.containerdSocket(), "-n", "k8s.io"}, args...)...).Output()
		return strings.Fields(string(out))
	}
	for _, t := range ctr("tasks", "ls", "-q") {
		ctr("tasks", "kill", "-s", "SIGKILL", t)
	}
	for _, t := range ctr("tasks", "ls", "-q") {
		ctr("tasks", "delete", "-f", t)
	}
	for _, c := range ctr("containers", "ls", "-q") {
		ctr("containers", "delete", c)
	}
}

// RestartAPIServer stops kube-apiserver and starts it again with the same
// flags, returning once it is ready: a fault the tests inject.
func (n *Node) RestartAPIServer(ctx context.Context) error {
	return n.restart(ctx, "kube-apiserver", readyz(n.Clientset))
}

func (n *Node) restart(ctx context.Context, name string, ready func(context.Context) error) error {
	var old *process
	for _, p := range n.procs {
		if p.name == name {
			old = p
		}
	}
	if old == nil {
		return fmt.Errorf("no %s to restart", name)
	}
	old.stop(15 * time.Second)
	p, err := n.start(name, old.cmd.Path, old.cmd.Args[1:]...)
	if err != nil {
		return err
	}
	return n.waitFor(ctx, name+" after a restart", 90*time.Second, p, ready)
}

func ips(addrs ...string) []net.IP {
	out := make([]net.IP, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, net.ParseIP(a))
	}
	return out
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
