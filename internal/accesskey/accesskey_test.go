package accesskey

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

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

// A key removed from the file stops working, even when the same edit
// breaks the file, and every key stops working when the file is deleted;
// a broken file keeps the keys still written in it. Requests are signed by
// aws-sdk-go-v2's signer and checked by podid's verifier over the keys the
// watcher puts in force.
func TestRevocationDoesNotFailOpen(t *testing.T) {
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
	const (
		keep     = "- accessKeyId: AKIAPODIDKEPTKEY0001\n  secretAccessKey: kept-secret-0123456789abcd\n  name: kept\n"
		revoked  = "- accessKeyId: AKIAPODIDREVOKED0001\n  secretAccessKey: revoked-secret-0123456789ab\n  name: revoked\n"
		interval = 10 * time.Millisecond
	)
	write("keys:\n"+keep+revoked, time.Unix(1000, 0))
	reg := prometheus.NewRegistry()
	w, loaded, err := Watch(path, reg)
	if err != nil {
		t.Fatal(err)
	}
	store := sigv4.NewStaticKeys(loaded...)
	applied := make(chan struct{}, 8)
	go w.Run(t.Context(), interval, func(k []sigv4.Key) { store.Replace(k...); applied <- struct{}{} }, slog.New(slog.DiscardHandler))
	wait := func() {
		t.Helper()
		select {
		case <-applied:
		case <-time.After(5 * time.Second):
			t.Fatal("the change was not seen")
		}
	}
	accepts := func(id, secret string) bool {
		t.Helper()
		r := httptest.NewRequest("POST", "https://podid.example/clusters/c/pod-identity-associations", strings.NewReader("{}"))
		sum := sha256.Sum256([]byte("{}"))
		if err := v4.NewSigner().SignHTTP(t.Context(), aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}, r, hex.EncodeToString(sum[:]), "eks", "eu-west-1", time.Now()); err != nil {
			t.Fatal(err)
		}
		_, err := (&sigv4.Verifier{Service: "eks", Keys: store}).Verify(r)
		return err == nil
	}
	valid := func() float64 { return testutil.ToFloat64(w.metrics.valid) }
	if !accepts("AKIAPODIDKEPTKEY0001", "kept-secret-0123456789abcd") || !accepts("AKIAPODIDREVOKED0001", "revoked-secret-0123456789ab") {
		t.Fatal("the loaded keys are not accepted")
	}

	// The revoked key is removed, and the same edit breaks the file.
	write("keys:\n"+keep+"- [ broken\n", time.Unix(2000, 0))
	wait()
	if accepts("AKIAPODIDREVOKED0001", "revoked-secret-0123456789ab") {
		t.Error("a key removed in an edit that broke the file is still accepted")
	}
	if !accepts("AKIAPODIDKEPTKEY0001", "kept-secret-0123456789abcd") {
		t.Error("a key still in the broken file was dropped")
	}
	if valid() != 0 || testutil.ToFloat64(w.metrics.keys) != 1 {
		t.Errorf("metrics: valid %v keys %v", valid(), testutil.ToFloat64(w.metrics.keys))
	}

	// Fixed: valid again.
	write("keys:\n"+keep, time.Unix(3000, 0))
	wait()
	if valid() != 1 || !accepts("AKIAPODIDKEPTKEY0001", "kept-secret-0123456789abcd") {
		t.Error("the fixed file is not in force")
	}

	// Deleted: nothing is accepted.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	wait()
	if accepts("AKIAPODIDKEPTKEY0001", "kept-secret-0123456789abcd") || valid() != 0 {
		t.Error("a key is accepted after its file was deleted")
	}
}
