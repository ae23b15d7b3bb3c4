package agent

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Credentials are what the agent hands a pod.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	AccountID       string
	Expiration      time.Time
}

// Upstream exchanges a pod's token for credentials (podid server's EKS Auth
// API, or EKS Auth itself).
type Upstream interface {
	Fetch(ctx context.Context, token string) (Credentials, error)
}

// TokenSource reads a pod's current projected token from the node.
type TokenSource interface {
	Token(pod Pod) (string, bool)
}

// Pod identifies the pod a token belongs to.
type Pod struct {
	UID, Namespace, Name string
}

// CacheOptions tune a Cache; zero values mean the defaults.
type CacheOptions struct {
	// MinRemaining is the least life credentials handed out have; entries
	// with less are fetched anew. Default 15 min (botocore's advisory
	// refresh), so no SDK refreshes on every call.
	MinRemaining time.Duration
	// RefreshBefore is how long before expiry the background refresh runs;
	// default MinRemaining + 5 min.
	RefreshBefore time.Duration
	// MaxEntries bounds the cache; default 20,000 pods.
	MaxEntries int
	// PodRate and PodBurst limit upstream calls per pod (misses and
	// refreshes together); default 1/s, burst 5.
	PodRate  float64
	PodBurst int
	// Tokens, when set, finds a pod's current token on the node (the
	// kubelet's volume), so the cache need not keep a copy of every pod's
	// token for background refreshes: most of its memory at scale. Pods it
	// cannot find keep their token in the cache.
	Tokens TokenSource
	// TokenOwner, when set, says which pod a token is bound to, from its
	// verified claims. A background renewal presents a token read from the
	// node only if it is bound to the entry's pod: a file under another
	// pod's directory must never be exchanged for this pod's entry.
	TokenOwner func(ctx context.Context, token string) (podUID string, err error)
	// Log tells of renewals refused for that reason; nil discards.
	Log *slog.Logger
	// MaxUpstream bounds the upstream calls in flight (first requests and
	// refreshes of all pods together; default 16): a burst of new pods on
	// the node (a CronJob of hundreds) queues here instead of arriving at
	// podid server all at once, where it would time out together.
	MaxUpstream int
	// Backoff after a failed refresh starts here and doubles to MaxBackoff,
	// with jitter; defaults 1 s and 1 min.
	Backoff, MaxBackoff time.Duration
	Now                 func() time.Time
}

// Served is credentials as the agent hands them out: the response body the
// SDKs parse, rendered once when the credentials arrive, and their expiry.
type Served struct {
	Body       string
	Expiration time.Time
}

// Cache holds credentials per pod UID: a rotated token for the same pod is
// served from the cache, concurrent first requests for a pod make one
// upstream call, entries refresh in the background before they run low,
// and an entry is dropped when its pod leaves the node.
//
// An entry is kept small, because an agent may hold a node's every pod: the
// rendered body (most of it the session token), the pod's UID, and a few
// integers. Times are Unix nanoseconds of the injected clock.
type Cache struct {
	opts     CacheOptions
	upstream Upstream
	group    singleflight.Group
	// slots holds a token per upstream call in flight (MaxUpstream).
	slots chan struct{}

	// observe, when set, learns each upstream call's outcome (the agent's
	// metrics); set before the cache is used.
	observe func(err error)

	mu      sync.Mutex
	entries map[string]*entry // by pod UID
}

type entry struct {
	uid string
	// token is the newest token seen, kept for refreshes; "" when the
	// node's TokenSource has it.
	token   string
	served  Served
	valid   bool
	created int64
	// lastUsed orders eviction.
	lastUsed int64
	// failures since the last success, and when the next refresh may run.
	failures  int32
	nextTryAt int64
	// A token bucket limiting this pod's upstream calls.
	allowance float32
	refilled  int64
}

// NewCache returns an empty cache over upstream.
func NewCache(upstream Upstream, opts CacheOptions) *Cache {
	if opts.MinRemaining == 0 {
		opts.MinRemaining = 15 * time.Minute
	}
	if opts.RefreshBefore == 0 {
		opts.RefreshBefore = opts.MinRemaining + 5*time.Minute
	}
	if opts.MaxEntries == 0 {
		opts.MaxEntries = 20000
	}
	if opts.PodRate == 0 {
		opts.PodRate, opts.PodBurst = 1, 5
	}
	if opts.MaxUpstream == 0 {
		opts.MaxUpstream = 16
	}
	if opts.Backoff == 0 {
		opts.Backoff = time.Second
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Cache{opts: opts, upstream: upstream, entries: map[string]*entry{}, slots: make(chan struct{}, opts.MaxUpstream)}
}

// ErrRateLimited is returned when a pod asks upstream more often than its
// limit allows.
var ErrRateLimited = errors.New("too many credential requests for this pod; retry shortly")

// Get returns credentials for pod, presenting token upstream when the cache
// cannot answer. Cached credentials with at least MinRemaining left are
// served without an upstream call.
func (c *Cache) Get(ctx context.Context, pod Pod, token string) (Served, error) {
	now := c.opts.Now()
	c.mu.Lock()
	if e := c.entries[pod.UID]; e != nil {
		if e.token != "" {
			e.token = token
		}
		e.lastUsed = now.UnixNano()
		left := e.served.Expiration.Sub(now)
		fresh := e.valid && left >= c.opts.MinRemaining
		// While upstream is failing and backing off, valid credentials are
		// served at once rather than after another doomed call.
		stillValid := e.valid && left > 0 && now.UnixNano() < e.nextTryAt
		if fresh || stillValid {
			served := e.served
			c.mu.Unlock()
			return served, nil
		}
	}
	c.mu.Unlock()

	v, err, _ := c.group.Do(pod.UID, func() (any, error) {
		return c.fetch(context.WithoutCancel(ctx), pod, token)
	})
	if err != nil {
		// Upstream failed: credentials that are still valid beat an error.
		c.mu.Lock()
		defer c.mu.Unlock()
		if e := c.entries[pod.UID]; e != nil && e.valid && e.served.Expiration.After(c.opts.Now()) {
			return e.served, nil
		}
		return Served{}, err
	}
	return v.(Served), nil
}

// fetch makes the upstream call for pod and stores the result.
func (c *Cache) fetch(ctx context.Context, pod Pod, token string) (Served, error) {
	// A new pod whose token the node holds need not have it copied here.
	onDisk := false
	if c.opts.Tokens != nil {
		if found, ok := c.opts.Tokens.Token(pod); ok && found == token {
			onDisk = true
		}
	}
	c.mu.Lock()
	e := c.entryLocked(pod.UID, token, onDisk)
	allowed := c.allowLocked(e)
	c.mu.Unlock()
	if !allowed {
		return Served{}, ErrRateLimited
	}
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return Served{}, ctx.Err()
	}
	creds, err := c.upstream.Fetch(ctx, token)
	<-c.slots
	if c.observe != nil {
		c.observe(err)
	}
	now := c.opts.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[pod.UID] != e {
		// The pod left the node while we were asking: do not keep it.
		if err != nil {
			return Served{}, err
		}
		return render(creds), nil
	}
	if err != nil {
		e.failures++
		e.nextTryAt = now.Add(c.backoff(int(e.failures))).UnixNano()
		return Served{}, err
	}
	e.served, e.valid, e.failures, e.nextTryAt = render(creds), true, 0, 0
	return e.served, nil
}

// entryLocked returns uid's entry, making room and creating it if needed.
func (c *Cache) entryLocked(uid, token string, onDisk bool) *entry {
	if e := c.entries[uid]; e != nil {
		return e
	}
	if len(c.entries) >= c.opts.MaxEntries {
		c.evictLocked()
	}
	now := c.opts.Now().UnixNano()
	e := &entry{uid: uid, created: now, lastUsed: now, allowance: float32(c.opts.PodBurst), refilled: now}
	if !onDisk {
		e.token = token
	}
	c.entries[uid] = e
	return e
}

// allowLocked takes one upstream call from e's token bucket: PodRate calls a
// second, up to PodBurst at once. It is a few bytes per pod, where a
// rate.Limiter per pod would be a hundred.
func (c *Cache) allowLocked(e *entry) bool {
	now := c.opts.Now().UnixNano()
	if elapsed := now - e.refilled; elapsed > 0 {
		e.allowance = min(float32(c.opts.PodBurst), e.allowance+float32(float64(elapsed)/1e9*float64(c.opts.PodRate)))
		e.refilled = now
	}
	if e.allowance < 1 {
		return false
	}
	e.allowance--
	return true
}

// evictLocked drops the least recently used entry.
func (c *Cache) evictLocked() {
	var oldest *entry
	for _, e := range c.entries {
		if oldest == nil || e.lastUsed < oldest.lastUsed {
			oldest = e
		}
	}
	if oldest != nil {
		delete(c.entries, oldest.uid)
	}
}

// backoff is the wait after n consecutive failures: doubling, capped, with
// up to 50% jitter so that a fleet of agents does not retry in step.
func (c *Cache) backoff(n int) time.Duration {
	d := c.opts.Backoff << min(n-1, 20)
	if d > c.opts.MaxBackoff || d <= 0 {
		d = c.opts.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

// Forget drops pod's entry: it left the node, and its credentials must not
// be renewed any more.
func (c *Cache) Forget(uid string) {
	c.mu.Lock()
	delete(c.entries, uid)
	c.mu.Unlock()
}

// ForgetAllBut drops the entries of pods not in onNode that were created
// at or before since: after a relist of the node's pods, those that went while the
// watch was down. Entries created since then are kept, since their pods may
// be newer than the list.
func (c *Cache) ForgetAllBut(onNode map[string]bool, since time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	forgotten := 0
	for uid, e := range c.entries {
		if !onNode[uid] && e.created <= since.UnixNano() {
			delete(c.entries, uid)
			forgotten++
		}
	}
	return forgotten
}

// Len is the number of pods cached.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// RefreshDue renews, one upstream call per pod, every entry within
// RefreshBefore of expiry whose backoff has passed. Run it every second or so
// (Run does); it returns how many it renewed.
func (c *Cache) RefreshDue(ctx context.Context) int {
	now := c.opts.Now()
	type due struct{ uid, token string }
	var dues []due
	c.mu.Lock()
	for uid, e := range c.entries {
		left := e.served.Expiration.Sub(now)
		if e.valid && left <= 0 {
			// Expired and not renewed: the pod fetches anew if it asks again.
			delete(c.entries, uid)
			continue
		}
		if e.valid && left < c.opts.RefreshBefore && now.UnixNano() >= e.nextTryAt {
			dues = append(dues, due{uid, e.token}) // token "" when on disk: read below
		}
	}
	c.mu.Unlock()
	renewed := 0
	for _, d := range dues {
		pod := Pod{UID: d.uid}
		if d.token == "" {
			var ok bool
			if d.token, ok = c.opts.Tokens.Token(pod); !ok {
				continue // gone from disk: the pod is leaving; its next request refetches
			}
			if !c.boundTo(ctx, d.token, d.uid) {
				continue // the pod's own next request refetches with its own token
			}
		}
		if _, err, _ := c.group.Do(pod.UID, func() (any, error) { return c.fetch(ctx, pod, d.token) }); err == nil {
			renewed++
		}
	}
	return renewed
}

// boundTo reports whether token, read from the node, is bound to the pod
// with uid.
func (c *Cache) boundTo(ctx context.Context, token, uid string) bool {
	if c.opts.TokenOwner == nil {
		return true
	}
	owner, err := c.opts.TokenOwner(ctx, token)
	if err != nil || owner != uid {
		c.opts.Log.Warn("a token read from the node for a background renewal is not this pod's own; the renewal is skipped", "podUID", uid, "tokenPodUID", owner, "error", err)
		return false
	}
	return true
}

// Run refreshes due entries every interval until ctx ends.
func (c *Cache) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.RefreshDue(ctx)
		}
	}
}
