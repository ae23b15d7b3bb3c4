package token

import (
	"testing"
	"time"
)

func TestRemembered(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	r := NewRemembered[string](time.Minute, 2)
	r.Put("a", "pod-a", now.Add(time.Hour), now)
	r.Put("b", "pod-b", now.Add(10*time.Second), now) // the token expires before the TTL
	if v, ok := r.Get("a", now); !ok || v != "pod-a" {
		t.Fatalf("a: %q %v", v, ok)
	}
	if _, ok := r.Get("b", now.Add(11*time.Second)); ok {
		t.Fatal("an entry outlived its token")
	}
	if _, ok := r.Get("a", now.Add(61*time.Second)); ok {
		t.Fatal("an entry outlived the TTL")
	}
	if _, ok := r.Get("c", now); ok {
		t.Fatal("an unknown token was remembered")
	}
	// Full: the lapsed entry (b, at +20 s) goes; a stays.
	r.Put("c", "pod-c", now.Add(time.Hour), now.Add(20*time.Second))
	if _, ok := r.Get("a", now.Add(20*time.Second)); !ok {
		t.Fatal("a live entry was dropped while a lapsed one could go")
	}
	// Full of live entries: all go, the new one stays.
	r.Put("d", "pod-d", now.Add(time.Hour), now.Add(20*time.Second))
	if _, ok := r.Get("a", now.Add(20*time.Second)); ok || len(r.m) != 1 {
		t.Fatalf("when full of live entries, the store was not cleared (%d left)", len(r.m))
	}
}
