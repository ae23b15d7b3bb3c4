package accesskey

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podid/podid/internal/sigv4"
)

func TestParse(t *testing.T) {
	good := "keys:\n- accessKeyId: AKIAPODIDSTOCKAGENT1\n  secretAccessKey: 0123456789abcdefghijABCD\n  name: stock-agent\n  node: node-a\n"
	keys, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].Principal.(Entry).Node != "node-a" || keys[0].SecretAccessKey != "0123456789abcdefghijABCD" {
		t.Fatalf("keys = %+v", keys)
	}
	for _, c := range []struct{ doc, want string }{
		{"keys:\n- accessKeyId: short\n  secretAccessKey: 0123456789abcdefghijABCD\n  name: a\n", "accessKeyId must be"},
		{"keys:\n- accessKeyId: AKIAPODIDSTOCKAGENT1\n  secretAccessKey: short\n  name: a\n", "at least 20"},
		{"keys:\n- accessKeyId: AKIAPODIDSTOCKAGENT1\n  secretAccessKey: 0123456789abcdefghijABCD\n", "name is required"},
		{good + "- accessKeyId: AKIAPODIDSTOCKAGENT1\n  secretAccessKey: 0123456789abcdefghijABCD\n  name: b\n", "appears twice"},
		{"keys:\n- accessKeyId: AKIAPODIDSTOCKAGENT1\n  secret: x\n", "unknown field"},
	} {
		if _, err := Parse([]byte(c.doc)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error with %q", c.doc, err, c.want)
		}
	}
}

func TestWatchReloadsAndKeepsKeysOnBadFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.yaml")
	// Replace the file in one rename, as the kubelet updates a mounted
	// Secret: written in place, the watcher could read it half-written
	// (empty) on a busy machine.
	write := func(doc string, at time.Time) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(tmp, at, at) // a distinct stamp even within one clock tick
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("keys: []\n", time.Unix(1000, 0))
	got := make(chan []sigv4.Key, 4)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w := NewWatcher(path)
	go w.Run(ctx, 10*time.Millisecond, func(k []sigv4.Key) { got <- k }, slog.New(slog.DiscardHandler))

	write("keys:\n- accessKeyId: AKIAPODIDROTATED0001\n  secretAccessKey: 0123456789abcdefghijABCD\n  name: rotated\n", time.Unix(2000, 0))
	select {
	case k := <-got:
		if len(k) != 1 || k[0].AccessKeyID != "AKIAPODIDROTATED0001" {
			t.Fatalf("reloaded %+v", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the changed file was not reloaded")
	}
	write("keys: [ broken", time.Unix(3000, 0))
	select {
	case k := <-got:
		t.Fatalf("a broken file replaced the keys with %+v", k)
	case <-time.After(200 * time.Millisecond):
	}
}
