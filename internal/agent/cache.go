package agent

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
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
	PodRate  rate.Limit
	PodBurst int
	// Tokens, when set, finds a pod's current token on the node (the
	// kubelet's volume), so the cache need not keep a copy of every pod's
	// token for background refreshes: most of its memory at scale. Pods it
	// cannot find keep their token in the cache.
	Tokens TokenSource
	// Backoff after a failed refresh starts here and doubles to MaxBackoff,
	// with jitter; defaults 1 s and 1 min.
	Backoff, MaxBackoff time.Duration
	Now                 func() time.Time
}

// Cache holds credentials per pod UID: a rotated token for the same pod is
// served from the cache, concurrent first requests for a pod make one
// upstream call, entries refresh in the background before they run low,
// and an entry is dropped when its pod leaves the node.
type Cache struct {
	opts     CacheOptions
	upstream Upstream
	group    singleflight.Group

	mu      sync.Mutex
	entries map[string]*entry // by pod UID
}

type entry struct {
	pod Pod
	// token is the newest token seen, kept for refreshes unless the node's
	// TokenSource has it.
	token    string
	onDisk   bool
	creds    Credentials
	valid    bool
	lastUsed time.Time
	limiter  *rate.Limiter
	// failures since the last success, and when the next refresh may run.
	failures  int
	nextTryAt time.Time
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
	if opts.Backoff == 0 {
		opts.Backoff = time.Second
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Cache{opts: opts, upstream: upstream, entries: map[string]*entry{}}
}

// ErrRateLimited is returned when a pod asks upstream more often than its
// limit allows.
var ErrRateLimited = errors.New("too many credential requests for this pod; retry shortly")

// Get returns credentials for pod, presenting token upstream when the cache
// cannot answer. Cached credentials with at least MinRemaining left are
// served without an upstream call.
func (c *Cache) Get(ctx context.Context, pod Pod, token string) (Credentials, error) {
	now := c.opts.Now()
	c.mu.Lock()
	e := c.entries[pod.UID]
	if e != nil {
		if !e.onDisk {
			e.token = token
		}
		e.lastUsed = now
		fresh := e.valid && e.creds.Expiration.Sub(now) >= c.opts.MinRemaining
		// While upstream is failing and backing off, valid credentials are
		// served at once rather than after another doomed call.
		stillValid := e.valid && e.creds.Expiration.After(now) && now.Before(e.nextTryAt)
		if fresh || stillValid {
			creds := e.creds
			c.mu.Unlock()
			return creds, nil
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
		if e := c.entries[pod.UID]; e != nil && e.valid && e.creds.Expiration.After(c.opts.Now()) {
			return e.creds, nil
		}
		return Credentials{}, err
	}
	return v.(Credentials), nil
}

// fetch makes the upstream call for pod and stores the result.
func (c *Cache) fetch(ctx context.Context, pod Pod, token string) (Credentials, error) {
	// A new pod whose token the node holds need not have it copied here.
	onDisk := false
	if c.opts.Tokens != nil {
		if found, ok := c.opts.Tokens.Token(pod); ok && found == token {
			onDisk = true
		}
	}
	c.mu.Lock()
	e := c.entryLocked(pod, token, onDisk)
	limiter := e.limiter
	c.mu.Unlock()
	if !limiter.AllowN(c.opts.Now(), 1) {
		return Credentials{}, ErrRateLimited
	}
	creds, err := c.upstream.Fetch(ctx, token)
	now := c.opts.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e = c.entries[pod.UID]
	if e == nil {
		// The pod left the node while we were asking: do not keep it.
		return creds, err
	}
	if err != nil {
		e.failures++
		e.nextTryAt = now.Add(c.backoff(e.failures))
		return Credentials{}, err
	}
	e.creds, e.valid, e.failures, e.nextTryAt = creds, true, 0, time.Time{}
	return creds, nil
}

// entryLocked returns pod's entry, making room and creating it if needed.
func (c *Cache) entryLocked(pod Pod, token string, onDisk bool) *entry {
	if e := c.entries[pod.UID]; e != nil {
		return e
	}
	if len(c.entries) >= c.opts.MaxEntries {
		c.evictLocked()
	}
	e := &entry{pod: pod, lastUsed: c.opts.Now(), onDisk: onDisk, limiter: rate.NewLimiter(c.opts.PodRate, c.opts.PodBurst)}
	if !onDisk {
		e.token = token
	}
	c.entries[pod.UID] = e
	return e
}

// evictLocked drops the least recently used entry.
func (c *Cache) evictLocked() {
	var oldest string
	var at time.Time
	for uid, e := range c.entries {
		if oldest == "" || e.lastUsed.Before(at) {
			oldest, at = uid, e.lastUsed
		}
	}
	delete(c.entries, oldest)
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
	var due []Pod
	var tokens []string
	c.mu.Lock()
	for uid, e := range c.entries {
		if e.valid && !e.creds.Expiration.After(now) {
			// Expired and not renewed: the pod fetches anew if it asks again.
			delete(c.entries, uid)
			continue
		}
		if e.valid && e.creds.Expiration.Sub(now) < c.opts.RefreshBefore && !now.Before(e.nextTryAt) {
			due = append(due, e.pod)
			tokens = append(tokens, e.token) // "" when on disk: read below
		}
	}
	c.mu.Unlock()
	renewed := 0
	for i, pod := range due {
		if tokens[i] == "" {
			var ok bool
			if tokens[i], ok = c.opts.Tokens.Token(pod); !ok {
				continue // gone from disk: the pod is leaving; its next request refetches
			}
		}
		if _, err, _ := c.group.Do(pod.UID, func() (any, error) { return c.fetch(ctx, pod, tokens[i]) }); err == nil {
			renewed++
		}
	}
	return renewed
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
