package accesskey

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podid/podid/internal/promutil"
	"github.com/podid/podid/internal/sigv4"
)

// Watcher notices changes to a keys file (a Secret volume update replaces
// it).
//
// Revocation must not fail open. Removing a key is editing the file; an
// edit that also breaks the file must not keep the removed key alive, and
// neither must deleting the file. So a file that no longer parses keeps
// only the keys of the last good parse whose ID and secret are both still
// in it, and a file that is gone keeps none.
type Watcher struct {
	path    string
	last    fileStamp
	good    []sigv4.Key // the last good parse
	metrics *watchMetrics
}

type watchMetrics struct {
	valid prometheus.Gauge
	keys  prometheus.Gauge
}

// Watch loads the keys file at path and returns them with a Watcher of its
// changes; reg receives podid_access_keys_file_valid and podid_access_keys
// (nil: no metrics). The file is stamped before it is read, so a change
// made meanwhile is seen by Run.
func Watch(path string, reg prometheus.Registerer) (*Watcher, []sigv4.Key, error) {
	stamped := stamp(path)
	loaded, err := Load(path)
	if err != nil {
		return nil, nil, err
	}
	m := &watchMetrics{
		valid: promutil.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podid_access_keys_file_valid",
			Help: "1 when the access keys file parsed at its last change; 0 when it is broken or gone (only keys still in it are accepted, or none). Alert on 0.",
		})),
		keys: promutil.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podid_access_keys",
			Help: "Access keys from the keys file in force.",
		})),
	}
	m.valid.Set(1)
	m.keys.Set(float64(len(loaded)))
	return &Watcher{path: path, last: stamped, good: loaded, metrics: m}, loaded, nil
}

// Run re-reads the file every interval and calls apply with the keys in
// force whenever it has changed.
func (w *Watcher) Run(ctx context.Context, interval time.Duration, apply func([]sigv4.Key), log *slog.Logger) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		now := stamp(w.path)
		if now == w.last {
			continue
		}
		w.last = now
		apply(w.reload(log))
	}
}

// reload reads the changed file and returns the keys to put in force.
func (w *Watcher) reload(log *slog.Logger) []sigv4.Key {
	data, err := os.ReadFile(w.path)
	if errors.Is(err, fs.ErrNotExist) {
		log.Error("access keys file is gone: every key it held is refused until it is back", "path", w.path, "revoked", len(w.good))
		return w.inForce(nil, false)
	}
	if err != nil {
		log.Error("access keys file cannot be read: every key it held is refused until it can be", "path", w.path, "error", err)
		return w.inForce(nil, false)
	}
	keys, err := Parse(data)
	if err != nil {
		kept := stillIn(w.good, data)
		log.Error("access keys file changed but does not parse: keys of its last good version that are no longer in it are refused; fix the file", "path", w.path, "error", err, "kept", len(kept), "revoked", len(w.good)-len(kept))
		return w.inForce(kept, false)
	}
	w.good = keys
	log.Info("access keys reloaded", "path", w.path, "keys", len(keys))
	return w.inForce(keys, true)
}

func (w *Watcher) inForce(keys []sigv4.Key, valid bool) []sigv4.Key {
	if valid {
		w.metrics.valid.Set(1)
	} else {
		w.metrics.valid.Set(0)
	}
	w.metrics.keys.Set(float64(len(keys)))
	return keys
}

// stillIn are the keys whose ID and secret both still appear in data.
func stillIn(keys []sigv4.Key, data []byte) []sigv4.Key {
	var out []sigv4.Key
	for _, k := range keys {
		if bytes.Contains(data, []byte(k.AccessKeyID)) && bytes.Contains(data, []byte(k.SecretAccessKey)) {
			out = append(out, k)
		}
	}
	return out
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
