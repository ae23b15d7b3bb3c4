package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"syscall"
	"time"
)

// bind is reserve, waiting while the address is held by a process without
// SO_REUSEPORT: an agent of an earlier podid on its way out, or another
// program (named in the log, every 30 s, until it lets go or ctx ends).
// The agent is not ready meanwhile, so a rollout does not go on past it.
func bind(ctx context.Context, log *slog.Logger, what, addr, setting string) (*os.File, error) {
	const retry = 250 * time.Millisecond
	for attempt := 0; ; attempt++ {
		f, err := reserve(what, addr, setting)
		var taken *addrTakenError
		if err == nil || !errors.As(err, &taken) {
			return f, err
		}
		if attempt%int(30*time.Second/retry) == 0 {
			log.Warn(err.Error()+"; waiting for it to let go", "address", addr)
		}
		if sleep(ctx, retry); ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// markReady writes the ready file once the agent serves (its addresses
// bound, its pod watch synced), for the kubelet's exec readiness probe:
// during a surge rollout the old and the new agent answer the same HTTP
// probe port, so only a file in the pod's own volume says which one is
// ready. It is removed as soon as the agent starts shutting down.
func (a *Agent) markReady(ctx context.Context) {
	if a.opts.ReadyFile == "" || !a.waitReady(ctx) {
		return
	}
	if err := os.WriteFile(a.opts.ReadyFile, []byte("ready\n"), 0o644); err != nil {
		a.opts.Log.Error("writing the ready file failed; the kubelet will not see this agent ready", "file", a.opts.ReadyFile, "error", err.Error())
		return
	}
	<-ctx.Done()
	if err := os.Remove(a.opts.ReadyFile); err != nil && !errors.Is(err, syscall.ENOENT) {
		a.opts.Log.Warn("removing the ready file failed", "file", a.opts.ReadyFile, "error", err.Error())
	}
}

// ready: serving credentials and the pod watch synced.
func (a *Agent) ready() bool { return a.serving.Load() && a.synced.Load() }

// waitReady waits until the agent is ready; false if ctx ended first.
func (a *Agent) waitReady(ctx context.Context) bool {
	for !a.ready() {
		if sleep(ctx, 100*time.Millisecond); ctx.Err() != nil {
			return false
		}
	}
	return true
}
