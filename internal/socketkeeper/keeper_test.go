package socketkeeper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary is also the server the keeper runs: with
// KEEPER_TEST_SERVER set it serves its pid and restart count on the
// inherited socket "http" until SIGTERM, or exits at once with
// KEEPER_TEST_SERVER=fail.
func TestMain(m *testing.M) {
	switch os.Getenv("KEEPER_TEST_SERVER") {
	case "":
		os.Exit(m.Run())
	case "fail":
		fmt.Fprintln(os.Stderr, "bad flag")
		os.Exit(3)
	case "keeper":
		os.Exit(testKeeper())
	}
	socks, restarts, err := Inherited()
	if err != nil || socks["http"] == nil {
		fmt.Fprintln(os.Stderr, "no inherited socket:", err)
		os.Exit(2)
	}
	if _, still := os.LookupEnv(EnvSockets); still {
		fmt.Fprintln(os.Stderr, "Inherited left", EnvSockets, "set")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "%d %d", os.Getpid(), restarts)
	})}
	go func() { <-ctx.Done(); srv.Shutdown(context.Background()) }()
	if err := srv.Serve(socks["http"]); !errors.Is(err, http.ErrServerClosed) {
		os.Exit(1)
	}
	os.Exit(0)
}

func keeper(t *testing.T, mode string) (Options, string) {
	t.Helper()
	f, addr := reserve(t)
	return Options{
		Command: func() *exec.Cmd {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "KEEPER_TEST_SERVER="+mode)
			return cmd
		},
		Sockets: []Socket{{Name: "http", File: f}},
	}, "http://" + addr
}

// reserve reserves a loopback port for a test.
func reserve(t *testing.T) (*os.File, string) {
	t.Helper()
	f, err := Reserve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return f, fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
}

// ask returns the pid and restart count of the server that answered.
func ask(client *http.Client, url string) (pid, restarts int, err error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, err
	}
	_, err = fmt.Sscanf(string(body), "%d %d", &pid, &restarts)
	return pid, restarts, err
}

// A server killed with SIGKILL, again and again under a client's steady
// requests, costs the client no refused connection: the keeper's sockets
// queue the connections until the restarted server answers them. Only the
// request the server was in the middle of when killed can fail (and the
// SDKs retry it).
func TestKilledServerLosesNoConnection(t *testing.T) {
	opts, url := keeper(t, "serve")
	var restarted atomic.Int32
	opts.OnRestart = func(n int) { restarted.Store(int32(n)) }
	// Reserved, the socket does not listen yet: no connection waits on it.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	if _, _, err := ask(client, url); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("before the server started, a request got %v, want connection refused", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()
	firstAnswer(t, client, url)

	load := startLoad(client, url)

	pids := map[int]bool{}
	for kill := 0; kill <= 3; kill++ {
		var pid, restarts int
		var err error
		deadline := time.Now().Add(10 * time.Second)
		for pid, restarts, err = ask(client, url); err != nil || pids[pid]; pid, restarts, err = ask(client, url) {
			if time.Now().After(deadline) {
				t.Fatalf("no new server answered after kill %d: %v", kill, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if restarts != kill {
			t.Errorf("server %d says it was restarted %d times, want %d", pid, restarts, kill)
		}
		pids[pid] = true
		if kill == 3 {
			break
		}
		// Killed as soon as it answers: a server that listened is restarted,
		// however short its life.
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	requests, refused, cut, lastRefused := load.stop()
	t.Logf("%d requests across 3 SIGKILLs: %d refused, %d cut while the killed server handled them", requests, refused, cut)
	if refused > 0 {
		t.Errorf("%d of %d requests were refused while the server was killed and restarted; last: %v", refused, requests, lastRefused)
	}
	if cut > 3 {
		t.Errorf("%d requests failed other than refused, more than the 3 the killed servers were handling", cut)
	}
	if restarted.Load() != 3 {
		t.Errorf("OnRestart saw %d restarts, want 3", restarted.Load())
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after ctx ended: %v", err)
	}
	// Stopped: the keeper's copy of the socket is closed with the server's.
	if _, _, err := ask(client, url); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after the keeper stopped, a request got %v, want connection refused", err)
	}
}

// A server that fails as it starts, before it listens, is not restarted:
// the keeper ends with its status, for the kubelet's back-off to apply.
func TestServerFailingAtStartEndsTheKeeper(t *testing.T) {
	opts, _ := keeper(t, "fail")
	var stderr strings.Builder
	command := opts.Command
	opts.Command = func() *exec.Cmd { cmd := command(); cmd.Stderr = &stderr; return cmd }
	starts := 0
	opts.OnRestart = func(int) { starts++ }
	err := Run(t.Context(), opts)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "before it listened") {
		t.Fatalf("Run = %v, want the server's exit status and no restart", err)
	}
	if starts != 0 || stderr.String() != "bad flag\n" {
		t.Errorf("restarts %d, server's stderr %q", starts, stderr.String())
	}
}

func TestSocketNames(t *testing.T) {
	for _, name := range []string{"", "a,b"} {
		f, _ := reserve(t)
		err := Run(t.Context(), Options{Command: func() *exec.Cmd { return exec.Command("true") }, Sockets: []Socket{{Name: name, File: f}}})
		if err == nil || !strings.Contains(err.Error(), strconv.Quote(name)) {
			t.Errorf("socket name %q: Run = %v, want it refused", name, err)
		}
	}
}

// A server that keeps crashing is restarted MaxRestarts times within the
// window, then the keeper ends, for the kubelet to show and back off.
func TestServerCrashingAgainEndsTheKeeper(t *testing.T) {
	opts, url := keeper(t, "serve")
	opts.MaxRestarts = 2
	restarts := 0
	opts.OnRestart = func(n int) { restarts = n }
	done := make(chan error, 1)
	go func() { done <- Run(t.Context(), opts) }()
	client := &http.Client{Timeout: 5 * time.Second}
	firstAnswer(t, client, url)
	for kill := range 3 {
		pid, _, err := ask(client, url)
		if err != nil {
			t.Fatalf("before kill %d: %v", kill, err)
		}
		syscall.Kill(pid, syscall.SIGKILL)
		client.CloseIdleConnections()
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "3 deaths within 10m0s") {
			t.Errorf("Run = %v, want it ended at the third death", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the keeper still runs after the third crash")
	}
	if restarts != 2 {
		t.Errorf("restarted %d times, want 2", restarts)
	}
}

// load makes a request on a new connection every 2 ms, as the SDKs'
// credential fetches do, counting those refused and those failing
// otherwise, until stopped.
type load struct {
	requests, refused, failed atomic.Int32
	lastRefused               atomic.Value
	done, stopped             chan struct{}
}

func startLoad(client *http.Client, url string) *load {
	l := &load{done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(l.stopped)
		for {
			select {
			case <-l.done:
				return
			case <-time.After(2 * time.Millisecond):
			}
			l.requests.Add(1)
			switch _, _, err := ask(client, url); {
			case errors.Is(err, syscall.ECONNREFUSED):
				l.refused.Add(1)
				l.lastRefused.Store(err.Error())
			case err != nil:
				l.failed.Add(1)
			}
		}
	}()
	return l
}

// stop ends the load and returns its counts and the last refusal.
func (l *load) stop() (requests, refused, failed int32, lastRefused any) {
	close(l.done)
	<-l.stopped
	return l.requests.Load(), l.refused.Load(), l.failed.Load(), l.lastRefused.Load()
}

// firstAnswer waits for the first server to listen and answer.
func firstAnswer(t *testing.T, client *http.Client, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, _, err := ask(client, url); err != nil; _, _, err = ask(client, url) {
		if time.Now().After(deadline) {
			t.Fatalf("the first server did not answer: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
