package socketkeeper

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// testKeeper is the test binary as a keeper process, as the agent's
// container runs it: it claims the sockets of the store at
// $KEEPER_TEST_STORE, reserves $KEEPER_TEST_ADDR if the store held none,
// gives them to the store and runs the test server on them until SIGTERM.
func testKeeper() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	lease, held, err := Claim(os.Getenv("KEEPER_TEST_STORE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if len(held) == 0 {
		f, err := Reserve(os.Getenv("KEEPER_TEST_ADDR"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		held = []Socket{{Name: "http", File: f}}
	}
	go lease.Keep(ctx, held, nil)
	err = Run(ctx, Options{
		Command: func() *exec.Cmd {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "KEEPER_TEST_SERVER=serve")
			return cmd
		},
		Sockets: held,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// The whole keeper killed with SIGKILL, as when the kubelet's container is,
// or stopped with SIGTERM, as the kubelet restarts a container whose
// liveness probe failed, costs the clients no refused connection when a
// store holds the sockets: the next keeper claims them and serves what
// waited.
func TestSocketsOutliveTheirKeeper(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) { testSocketsOutliveTheirKeeper(t, sig) })
	}
}

func testSocketsOutliveTheirKeeper(t *testing.T, sig syscall.Signal) {
	f, addr := reserve(t)
	f.Close() // only its port: each keeper reserves the address itself
	url := "http://" + addr
	store := startStore(t, 3*time.Second)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	first := startKeeper(t, store, addr)
	firstAnswer(t, client, url)
	firstPid, _, err := ask(client, url)
	if err != nil {
		t.Fatal(err)
	}

	load := startLoad(client, url)
	time.Sleep(100 * time.Millisecond)
	first.Process.Signal(sig) // killed, its server goes too (Pdeathsig); stopped, it stops its server
	first.Wait()
	time.Sleep(300 * time.Millisecond) // the kubelet starting the container again
	startKeeper(t, store, addr)
	deadline := time.Now().Add(10 * time.Second)
	for pid, _, err := ask(client, url); err != nil || pid == firstPid; pid, _, err = ask(client, url) {
		if time.Now().After(deadline) {
			t.Fatalf("the second keeper's server did not answer: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	requests, refused, failed, _ := load.stop()
	t.Logf("%d requests while the keeper ended (%s) and another started 300ms later: %d refused, %d failed otherwise", requests, sig, refused, failed)
	if refused > 0 {
		t.Errorf("%d of %d requests refused: the store did not keep the sockets open", refused, requests)
	}
	if failed > 1 {
		t.Errorf("%d requests failed other than refused, more than the one the killed server may have been handling", failed)
	}
}

// A keeper that does not come back within Hold (a container in back-off)
// has its addresses refused, rather than connections waiting on nobody.
func TestStoreGivesUpSocketsNobodyClaims(t *testing.T) {
	f, addr := reserve(t)
	f.Close()
	url := "http://" + addr
	store := startStore(t, 500*time.Millisecond)
	cmd := startKeeper(t, store, addr)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	firstAnswer(t, client, url)
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for _, _, err := ask(client, url); !errors.Is(err, syscall.ECONNREFUSED); _, _, err = ask(client, url) {
		if time.Now().After(deadline) {
			t.Fatalf("10s after its keeper died, with Hold 500ms, a request got %v, want connection refused", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startStore serves a store with hold in a temporary directory until the
// test ends, and waits for its socket.
func startStore(t *testing.T, hold time.Duration) *Store {
	t.Helper()
	store := &Store{Path: filepath.Join(t.TempDir(), "store"), Hold: hold}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- store.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(store.Path); err == nil {
			return store
		}
		if time.Now().After(deadline) {
			t.Fatal("the store's socket did not appear")
		}
	}
}

// startKeeper runs the test binary as a keeper of addr using store, as the
// agent's container does, until the test ends.
func startKeeper(t *testing.T, store *Store, addr string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "KEEPER_TEST_SERVER=keeper", "KEEPER_TEST_STORE="+store.Path, "KEEPER_TEST_ADDR="+addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}
