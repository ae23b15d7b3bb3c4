package agent

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podid/podid/internal/socketkeeper"
)

// A port taken on the node is an error that names the process holding it
// when the agent can see it, and says what to change.
func TestPortTakenNamesItsHolder(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	comm, _ := os.ReadFile("/proc/self/comm")
	_, err = reserve("probes", held.Addr().String(), "chart value agent.healthPort")
	want := "the address is taken on this node by process " + strings.TrimSpace(string(comm)) + " (pid " + strconv.Itoa(os.Getpid()) + "); free it, or move the agent's probes (chart value agent.healthPort)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v\nwant it to say %q", err, want)
	}
}

// A holder outside the agent's view (another container's process) is
// described with the command that finds it.
func TestPortHolderOutOfSight(t *testing.T) {
	proc := t.TempDir()
	os.MkdirAll(filepath.Join(proc, "net"), 0o755)
	table := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 17AAFEA9:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 424242 1 0000000000000000 100 0 0 10 0\n"
	os.WriteFile(filepath.Join(proc, "net", "tcp"), []byte(table), 0o644)
	os.MkdirAll(filepath.Join(proc, "1", "fd"), 0o755)
	os.Symlink("socket:[111]", filepath.Join(proc, "1", "fd", "3"))
	if got := portHolder(proc, "169.254.170.23:80"); got != "another process (`ss -ltnp 'sport = :80'` on the node names it)" {
		t.Errorf("holder = %q", got)
	}
	if got := listeningInodes(proc, 80); !got["424242"] || len(got) != 1 {
		t.Errorf("inodes = %v", got)
	}
}

// Two agents on one node (the old and the new pod of a surge rollout) bind
// the same address; a holder without SO_REUSEPORT is waited for, and the
// address is taken as soon as it lets go.
func TestHandoverBinds(t *testing.T) {
	old, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	replacement, err := listen(old.Addr().String())
	if err != nil {
		t.Fatalf("the replacement agent could not bind beside the old one: %v", err)
	}
	replacement.Close()

	held, err := net.Listen("tcp", "127.0.0.1:0") // no SO_REUSEPORT: an earlier agent
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		l, err := bind(t.Context(), slog.New(slog.DiscardHandler), "credentials", held.Addr().String(), "")
		if err == nil {
			l.Close()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("bound while the address was held: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	held.Close()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after the holder let go")
	}
}

// listen reserves addr as the agent does and listens on it.
func listen(addr string) (net.Listener, error) {
	f, err := reserve("credentials", addr, "")
	if err != nil {
		return nil, err
	}
	return socketkeeper.Listen(f)
}
