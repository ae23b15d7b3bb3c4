package accesskey

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/podid/podid/internal/sigv4"
)

// Watcher notices changes to a keys file (a Secret volume update replaces
// it). Make it before loading the file, so no change in between is missed.
type Watcher struct {
	path string
	last fileStamp
}

// NewWatcher remembers path as it is now.
func NewWatcher(path string) *Watcher {
	return &Watcher{path: path, last: stamp(path)}
}

// Run re-reads the file every interval and calls apply with its keys
// whenever it has changed. A file that fails to parse is logged and
// ignored: the keys in force stay in force.
func (w *Watcher) Run(ctx context.Context, interval time.Duration, apply func([]sigv4.Key), log *slog.Logger) {
	path, last := w.path, w.last
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		now := stamp(path)
		if now == last {
			continue
		}
		keys, err := Load(path)
		if err != nil {
			log.Error("access keys file changed but cannot be used; keeping the previous keys", "path", path, "error", err)
			last = now
			continue
		}
		last = now
		apply(keys)
		log.Info("access keys reloaded", "path", path, "keys", len(keys))
	}
}

type fileStamp struct {
	mod  time.Time
	size int64
	ok   bool
}

func stamp(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size(), ok: true}
}
