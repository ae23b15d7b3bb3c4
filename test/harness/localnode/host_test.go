package localnode

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestKubeChainsCleanup: the restore script removes the node's chains and
// the jumps to them, and nothing else (another program's chain, a rule whose
// comment merely mentions KUBE-, a table without the node's chains).
func TestKubeChainsCleanup(t *testing.T) {
	save, err := os.ReadFile(filepath.Join("testdata", "iptables-save.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got := kubeChainsCleanup(string(save))
	golden := filepath.Join("testdata", "iptables-cleanup.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("cleanup script:\n%s\nwant:\n%s", got, want)
	}
	if kubeChainsCleanup("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j ACCEPT\nCOMMIT\n") != "" {
		t.Error("a save without the node's chains must give no script")
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/var/lib/kubelet`:  "/var/lib/kubelet",
		`/run/a\040b`:       "/run/a b",
		`/x\011tab\134back`: "/x\ttab\\back",
		`/trailing\04`:      `/trailing\04`,
		`/not\999octal`:     `/not\999octal`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
