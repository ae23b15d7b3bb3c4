package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeUpstream counts calls and answers after a delay.
type fakeUpstream struct {
	calls    atomic.Int32
	delay    time.Duration
	lifetime time.Duration
	now      func() time.Time
	mu       sync.Mutex
	err      error
	tokens   []string
}

func (f *fakeUpstream) Fetch(ctx context.Context, token string) (Credentials, error) {
	f.calls.Add(1)
	f.mu.Lock()
	f.tokens = append(f.tokens, token)
	err := f.err
	f.mu.Unlock()
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	if err != nil {
		return Credentials{}, err
	}
	return Credentials{AccessKeyID: "ASIA" + token, SecretAccessKey: "s", SessionToken: "t", AccountID: "111122223333", Expiration: f.now().Add(f.lifetime)}, nil
}

func (f *fakeUpstream) fail(err error) { f.mu.Lock(); f.err = err; f.mu.Unlock() }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func setup(delay time.Duration) (*Cache, *fakeUpstream, *clock) {
	c := &clock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	up := &fakeUpstream{delay: delay, lifetime: time.Hour, now: c.Now}
	return NewCache(up, CacheOptions{Now: c.Now, PodRate: 100, PodBurst: 100}), up, c
}

var pod = Pod{UID: "uid-1", Namespace: "demo", Name: "app-0"}

func TestConcurrentFirstRequestsMakeOneUpstreamCall(t *testing.T) {
	cache, up, _ := setup(50 * time.Millisecond)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Go(func() {
			if _, err := cache.Get(t.Context(), pod, "tok"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := up.calls.Load(); n != 1 {
		t.Fatalf("upstream calls = %d, want 1", n)
	}
}

func TestRotatedTokenIsServedFromCache(t *testing.T) {
	cache, up, _ := setup(0)
	first, _ := cache.Get(t.Context(), pod, "token-v1")
	second, err := cache.Get(t.Context(), pod, "token-v2")
	if err != nil || second != first || up.calls.Load() != 1 {
		t.Fatalf("after rotation: %v, calls %d", err, up.calls.Load())
	}
}

func TestNeverHandsOutCredentialsWithLittleLife(t *testing.T) {
	cache, up, clk := setup(0)
	cache.Get(t.Context(), pod, "t1")
	clk.Add(46 * time.Minute) // 14 min left: under MinRemaining
	creds, err := cache.Get(t.Context(), pod, "t2")
	if err != nil || up.calls.Load() != 2 || creds.Expiration.Sub(clk.Now()) < 15*time.Minute {
		t.Fatalf("creds expire in %s after %d calls (%v)", creds.Expiration.Sub(clk.Now()), up.calls.Load(), err)
	}
}

func TestBackgroundRefreshUsesNewestTokenAndStopsWhenPodLeaves(t *testing.T) {
	cache, up, clk := setup(0)
	cache.Get(t.Context(), pod, "t1")
	cache.Get(t.Context(), pod, "t2") // rotated, from cache
	if n := cache.RefreshDue(t.Context()); n != 0 {
		t.Fatalf("refreshed %d fresh entries", n)
	}
	clk.Add(41 * time.Minute) // 19 min left: within RefreshBefore (20 min)
	if n := cache.RefreshDue(t.Context()); n != 1 || up.tokens[len(up.tokens)-1] != "t2" {
		t.Fatalf("refreshed %d, last token %q", n, up.tokens[len(up.tokens)-1])
	}
	cache.Forget(pod.UID)
	clk.Add(59 * time.Minute)
	if n := cache.RefreshDue(t.Context()); n != 0 || cache.Len() != 0 {
		t.Fatalf("a forgotten pod was renewed (%d) or kept (%d)", n, cache.Len())
	}
}

func TestServesValidCredentialsWhileUpstreamFails(t *testing.T) {
	cache, up, clk := setup(0)
	good, _ := cache.Get(t.Context(), pod, "t")
	up.fail(&UpstreamError{Status: 503, Code: "ServiceUnavailable", Message: "down"})
	clk.Add(41 * time.Minute)
	if n := cache.RefreshDue(t.Context()); n != 0 {
		t.Fatal("a failing refresh counted as renewed")
	}
	calls := up.calls.Load()
	// Backing off: the pod is answered from the cache without an upstream call.
	got, err := cache.Get(t.Context(), pod, "t")
	if err != nil || got != good || up.calls.Load() != calls {
		t.Fatalf("while upstream is down: %v, calls %d → %d", err, calls, up.calls.Load())
	}
	// A pod the cache never saw gets the upstream's error.
	other := Pod{UID: "uid-2", Namespace: "demo", Name: "new"}
	var ue *UpstreamError
	if _, err := cache.Get(t.Context(), other, "t"); !errors.As(err, &ue) || ue.Status != 503 {
		t.Fatalf("fresh pod while upstream is down: %v", err)
	}
	// Once they expire, expired credentials are never served; the entry goes.
	clk.Add(20 * time.Minute)
	cache.RefreshDue(t.Context())
	if _, err := cache.Get(t.Context(), pod, "t"); err == nil {
		t.Fatal("served expired credentials")
	}
}

func TestPerPodRateLimitAndBoundedSize(t *testing.T) {
	clk := &clock{t: time.Now()}
	up := &fakeUpstream{lifetime: time.Hour, now: clk.Now}
	up.fail(&UpstreamError{Status: 404, Code: "ResourceNotFound", Message: "no association"})
	cache := NewCache(up, CacheOptions{Now: clk.Now, PodRate: 1, PodBurst: 2, MaxEntries: 3})
	for range 5 {
		cache.Get(t.Context(), pod, "t")
	}
	if n := up.calls.Load(); n != 2 {
		t.Fatalf("a pod without an association reached upstream %d times in a burst, want 2", n)
	}
	if _, err := cache.Get(t.Context(), pod, "t"); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("over the limit: %v", err)
	}
	up.fail(nil)
	for i := range 10 {
		cache.Get(t.Context(), Pod{UID: string(rune('a' + i))}, "t")
	}
	if n := cache.Len(); n > 3 {
		t.Fatalf("cache holds %d entries, bound 3", n)
	}
}

func TestRefreshAfterASingleRequestUsesItsToken(t *testing.T) {
	cache, up, clk := setup(0)
	cache.Get(t.Context(), pod, "only-token")
	clk.Add(41 * time.Minute)
	if n := cache.RefreshDue(t.Context()); n != 1 || up.tokens[len(up.tokens)-1] != "only-token" {
		t.Fatalf("refreshed %d with %q", n, up.tokens[len(up.tokens)-1])
	}
}

func TestTokensOnTheNodeAreNotCopied(t *testing.T) {
	dir := t.TempDir()
	write := func(tok string) {
		p := filepath.Join(dir, pod.UID, "volumes", "kubernetes.io~projected", "eks-pod-identity-token")
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "eks-pod-identity-token"), []byte(tok+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("disk-v1")
	clk := &clock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	up := &fakeUpstream{lifetime: time.Hour, now: clk.Now}
	cache := NewCache(up, CacheOptions{Now: clk.Now, Tokens: KubeletTokens{Dir: dir}})
	if _, err := cache.Get(t.Context(), pod, "disk-v1"); err != nil {
		t.Fatal(err)
	}
	cache.mu.Lock()
	kept := cache.entries[pod.UID].token
	cache.mu.Unlock()
	if kept != "" {
		t.Fatalf("the cache copied a token the node holds: %q", kept)
	}
	write("disk-v2") // the kubelet rotates it
	clk.Add(41 * time.Minute)
	if n := cache.RefreshDue(t.Context()); n != 1 || up.tokens[len(up.tokens)-1] != "disk-v2" {
		t.Fatalf("refreshed %d with %q, want the rotated token from disk", n, up.tokens[len(up.tokens)-1])
	}
	if _, ok := (KubeletTokens{Dir: dir}).Token(Pod{UID: "../etc"}); ok {
		t.Fatal("a UID walked out of the pods directory")
	}
}

// A background renewal presents a token read from the node only if it is
// bound to the entry's own pod: a file holding another pod's token (in
// the pod's directory by whatever means) is never exchanged for it.
func TestRenewalUsesOnlyThePodsOwnTokenFromDisk(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, pod.UID, "volumes", "kubernetes.io~projected", "eks-pod-identity-token")
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(tok string) {
		if err := os.WriteFile(filepath.Join(p, "eks-pod-identity-token"), []byte(tok), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Tokens name their pod as "token-of:<uid>", as verified claims would.
	owner := func(_ context.Context, tok string) (string, error) {
		uid, ok := strings.CutPrefix(tok, "token-of:")
		if !ok {
			return "", errors.New("not a pod token")
		}
		return uid, nil
	}
	own := "token-of:" + pod.UID
	write(own)
	clk := &clock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	up := &fakeUpstream{lifetime: time.Hour, now: clk.Now}
	cache := NewCache(up, CacheOptions{Now: clk.Now, Tokens: KubeletTokens{Dir: dir}, TokenOwner: owner})
	if _, err := cache.Get(t.Context(), pod, own); err != nil {
		t.Fatal(err)
	}
	write("token-of:another-pods-uid")
	clk.Add(41 * time.Minute)
	calls := len(up.tokens)
	if n := cache.RefreshDue(t.Context()); n != 0 || len(up.tokens) != calls {
		t.Fatalf("renewed %d with %v: another pod's token was presented for this pod", n, up.tokens[calls:])
	}
	write(own)
	if n := cache.RefreshDue(t.Context()); n != 1 || up.tokens[len(up.tokens)-1] != own {
		t.Fatalf("renewed %d; want the pod's own token", n)
	}
}

// The upstream calls one pod costs a day, with a pod asking every minute
// and the background renewal running every 10 s of the simulated clock:
// EKS's six-hour sessions cost five (the first, then one every 5 h 40 min:
// EKS's agent, 4), hourly ones 36 (one every 40 min). The figure is printed
// with -v.
func TestUpstreamCallsPerPodPerDay(t *testing.T) {
	for _, c := range []struct {
		lifetime time.Duration
		max      int32
	}{
		{6 * time.Hour, 5},
		{time.Hour, 37},
	} {
		cache, up, clk := setup(0)
		up.lifetime = c.lifetime
		for elapsed := time.Duration(0); elapsed < 24*time.Hour; elapsed += 10 * time.Second {
			if elapsed%time.Minute == 0 {
				if _, err := cache.Get(t.Context(), pod, "t"); err != nil {
					t.Fatal(err)
				}
			}
			cache.RefreshDue(t.Context())
			clk.Add(10 * time.Second)
		}
		t.Logf("figure: sessions of %s cost one pod %d upstream calls a day", c.lifetime, up.calls.Load())
		if n := up.calls.Load(); n > c.max {
			t.Errorf("sessions of %s: %d upstream calls a day, want at most %d", c.lifetime, n, c.max)
		}
	}
}

// A burst of new pods queues at the agent: no more than MaxUpstream calls
// are in flight at once, and every pod is served.
func TestUpstreamCallsInFlightAreBounded(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	up := &concurrencyUpstream{fakeUpstream: fakeUpstream{delay: 20 * time.Millisecond, lifetime: time.Hour, now: c.Now}}
	cache := NewCache(up, CacheOptions{Now: c.Now, MaxUpstream: 4})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			_, err := cache.Get(t.Context(), Pod{UID: fmt.Sprintf("uid-%d", i)}, fmt.Sprintf("t%d", i))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if up.calls.Load() != 64 || up.max.Load() > 4 {
		t.Errorf("%d calls, at most %d in flight; want 64 and at most 4", up.calls.Load(), up.max.Load())
	}
}

// concurrencyUpstream records the most calls in flight at once.
type concurrencyUpstream struct {
	fakeUpstream
	inFlight, max atomic.Int32
}

func (c *concurrencyUpstream) Fetch(ctx context.Context, token string) (Credentials, error) {
	n := c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	for m := c.max.Load(); n > m && !c.max.CompareAndSwap(m, n); m = c.max.Load() {
	}
	return c.fakeUpstream.Fetch(ctx, token)
}
