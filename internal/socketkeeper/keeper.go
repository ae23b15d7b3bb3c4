// Package socketkeeper runs a server as the child of a small process that
// holds the server's listening sockets and outlives it. When the server
// dies (a panic, the OOM killer, SIGKILL) its addresses stay open: the
// kernel goes on accepting connections into the sockets' queues, and the
// server, restarted at once with the same sockets, answers them. Clients
// see a short wait where they would have seen refused connections for as
// long as the kubelet takes to restart a container.
//
// It is the pattern of nginx's master process and of systemd's socket
// activation, reduced to what podid's node agent needs: the keeper binds,
// passes the sockets as inherited file descriptors (3, 4, …) named in an
// environment variable, forwards SIGTERM, and restarts a server that had
// started properly (its sockets listen); a server that fails before it
// listens (a bad flag, a missing file) or keeps crashing ends the keeper
// with its error, so that the kubelet's back-off applies and its restarts
// show.
//
// A Store, run in a second container of the same pod, extends this to the
// keeper's own death: it holds copies of the sockets while the kubelet
// restarts the keeper's container, and the next keeper takes them back.
package socketkeeper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Environment variables the keeper sets for the server.
const (
	// EnvSockets names the inherited sockets, comma-separated, in the order
	// of their file descriptors from 3.
	EnvSockets = "PODID_KEPT_SOCKETS"
	// EnvRestarts is how many times the keeper has restarted the server.
	EnvRestarts = "PODID_KEEPER_RESTARTS"
)

// Socket is a socket the keeper holds (see Reserve), with the name the
// server finds it by.
type Socket struct {
	Name string
	File *os.File
}

// Options configure Run.
type Options struct {
	// Command returns the server's command, afresh for each start; Run adds
	// the sockets and the environment variables above. Its Stdout and
	// Stderr are the keeper's unless set.
	Command func() *exec.Cmd
	// Sockets are passed to every start of the server, which listens on them
	// when it is ready (Inherited). Run owns them: they are closed when it
	// returns.
	Sockets []Socket
	// MaxRestarts bounds the restarts within RestartWindow: a server that
	// keeps crashing ends the keeper, so that its container's restarts and
	// the kubelet's back-off show it. Defaults 5 and 10 minutes.
	MaxRestarts   int
	RestartWindow time.Duration
	// Log says when the server is restarted.
	Log *slog.Logger
	// OnRestart, when set, is called after each restart (metrics, tests).
	OnRestart func(restarts int)
}

// Run starts the server and restarts it each time it dies once started,
// until ctx ends. Started means that the sockets listen (the server calls
// Inherited when it is ready to accept): a death before that, a bad flag or
// a missing file, ends the keeper with the server's status, whereas a death
// after it is a crash, however soon it comes (the OOM killer does not wait).
// When ctx ends, the keeper closes its copies of the sockets (so that a socket the server closes stops listening, and a
// replacement sharing the address with SO_REUSEPORT gets its connections),
// sends the server SIGTERM and waits for it. It returns nil when the server
// stopped because ctx ended or exited 0, and an error saying how it ended
// otherwise.
func Run(ctx context.Context, opts Options) error {
	if opts.MaxRestarts == 0 {
		opts.MaxRestarts = 5
	}
	if opts.RestartWindow == 0 {
		opts.RestartWindow = 10 * time.Minute
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	var recent []time.Time // restarts within the window
	files, names, err := socketFiles(opts.Sockets)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if err != nil {
		return err
	}
	for restarts := 0; ; restarts++ {
		cmd := opts.Command()
		cmd.ExtraFiles = files
		cmd.Env = append(cmd.Environ(), EnvSockets+"="+strings.Join(names, ","), EnvRestarts+"="+strconv.Itoa(restarts))
		if cmd.Stdout == nil {
			cmd.Stdout = os.Stdout
		}
		if cmd.Stderr == nil {
			cmd.Stderr = os.Stderr
		}
		// Should the keeper die without stopping it, the server stops too
		// (it is then the kubelet's to restart the container).
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		started := time.Now()
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting the server: %w", err)
		}
		if restarts > 0 && opts.OnRestart != nil {
			opts.OnRestart(restarts)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case <-ctx.Done():
			return stop(cmd, files, exited)
		case err := <-exited:
			uptime := time.Since(started)
			if ctx.Err() != nil || err == nil {
				return nil
			}
			if !listening(files) {
				return fmt.Errorf("the server ended %s after it started, before it listened (%v); not restarting it", uptime.Round(time.Millisecond), err)
			}
			now := time.Now()
			recent = slices.DeleteFunc(recent, func(t time.Time) bool { return now.Sub(t) > opts.RestartWindow })
			if len(recent) >= opts.MaxRestarts {
				return fmt.Errorf("the server died again (%v): %d deaths within %s; not restarting it", err, len(recent)+1, opts.RestartWindow)
			}
			recent = append(recent, now)
			opts.Log.Warn("the server process died; restarted it at once, its addresses stayed open and connections wait for it",
				"status", err.Error(), "uptime", uptime.Round(time.Second).String(), "restarts", restarts+1)
		}
	}
}

// stop ends a server the keeper was asked to stop.
func stop(cmd *exec.Cmd, files []*os.File, exited <-chan error) error {
	for _, f := range files {
		f.Close()
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping the server: %w", err)
	}
	if err := <-exited; err != nil {
		return fmt.Errorf("the server did not stop cleanly: %w", err)
	}
	return nil
}

// socketFiles checks the sockets' names and lists their files and names.
func socketFiles(sockets []Socket) ([]*os.File, []string, error) {
	var files []*os.File
	var names []string
	for _, s := range sockets {
		files = append(files, s.File)
		if s.Name == "" || strings.Contains(s.Name, ",") {
			return files, nil, fmt.Errorf("socket name %q: it must be non-empty, without a comma", s.Name)
		}
		names = append(names, s.Name)
	}
	return files, names, nil
}

// Inherited returns the sockets a keeper passed to this process, listening,
// by name,
// and how many times it has restarted it; nil when this process was not
// started by a keeper. It clears the environment variables, so that a
// process this one starts does not take descriptors it does not have.
func Inherited() (map[string]net.Listener, int, error) {
	names, ok := os.LookupEnv(EnvSockets)
	if !ok {
		return nil, 0, nil
	}
	restarts, _ := strconv.Atoi(os.Getenv(EnvRestarts))
	os.Unsetenv(EnvSockets)
	os.Unsetenv(EnvRestarts)
	out := map[string]net.Listener{}
	if names == "" {
		return out, restarts, nil
	}
	for i, name := range strings.Split(names, ",") {
		// The server is ready to accept: the socket listens from now on.
		l, err := Listen(os.NewFile(uintptr(3+i), name))
		if err != nil {
			return nil, 0, fmt.Errorf("the socket %s the keeper passed as descriptor %d: %w", name, 3+i, err)
		}
		out[name] = l
	}
	return out, restarts, nil
}
