package deptest

import "testing"

func TestForbiddenMatch(t *testing.T) {
	f := Forbidden{"example.com/a/...": "tree", "example.com/b": "one"}
	for _, tc := range []struct {
		dep  string
		want bool
	}{
		{"example.com/a", true},
		{"example.com/a/x/y", true},
		{"example.com/ab", false},
		{"example.com/b", true},
		{"example.com/b/c", false},
		{"example.com/c", false},
	} {
		if _, got := f.match(tc.dep); got != tc.want {
			t.Errorf("match(%q) = %v, want %v", tc.dep, got, tc.want)
		}
	}
}

// The module's own harness is found by the check: a binary that links it
// is reported, so the check cannot pass because it looked at nothing.
func TestDepsListsTheReleaseBuild(t *testing.T) {
	deps := Deps(t, "github.com/podid/podid/test/deptest", Release)
	found := false
	for _, d := range deps {
		if d == "os/exec" {
			found = true
		}
	}
	if !found {
		t.Fatalf("deps of deptest lack os/exec: %v", deps)
	}
}
