package agent

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An agent serves on sockets bound before it (by its keeper): credentials,
// probes and metrics; a ready file left by a killed predecessor is not
// taken for its own; it counts the restarts it is told of.
func TestRunOnSocketsBoundBefore(t *testing.T) {
	opts := Options{Listen: []string{"127.0.0.1:0"}, ProbeAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0"}
	sockets, err := Bind(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(sockets.Credentials) != 1 || sockets.Probes == nil || sockets.Metrics == nil {
		t.Fatalf("bound %+v", sockets)
	}
	readyFile := filepath.Join(t.TempDir(), "ready")
	if err := os.WriteFile(readyFile, []byte("stale\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := New(Options{Sockets: sockets, Cache: NewCache(nil, CacheOptions{}), ReadyFile: readyFile, Restarts: 2})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	deadline := time.Now().Add(5 * time.Second)
	for b, _ := os.ReadFile(readyFile); string(b) != "ready\n"; b, _ = os.ReadFile(readyFile) {
		if time.Now().After(deadline) {
			t.Fatalf("ready file holds %q", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	get := func(addr, path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get(sockets.Probes.Addr().String(), "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d %s", code, body)
	}
	if _, body := get(sockets.Metrics.Addr().String(), "/metrics"); !strings.Contains(body, "podid_agent_restarts_total 2\n") {
		t.Errorf("/metrics lacks the restart count:\n%s", body)
	}
	if code, body := get(sockets.Credentials[0].Addr().String(), "/v1/credentials"); code != http.StatusBadRequest {
		t.Errorf("credentials without a token: %d %s, want 400", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(readyFile); !os.IsNotExist(err) {
		t.Errorf("ready file after the agent stopped: %v", err)
	}
}
