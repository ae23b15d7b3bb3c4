package auth

import (
	"crypto/sha256"
	"sync"
	"time"
)

// agentCache remembers agents whose tokens verified, for a few seconds, so
// that an agent's many calls cost one signature check per interval instead
// of two per call. The TTL bounds how long a deleted agent pod keeps its
// standing; entries never outlive the token.
type agentCache struct {
	ttl time.Duration
	max int
	mu  sync.Mutex
	m   map[[32]byte]agentEntry
}

type agentEntry struct {
	caller  *Caller
	expires time.Time
}

func newAgentCache(ttl time.Duration, max int) *agentCache {
	return &agentCache{ttl: ttl, max: max, m: map[[32]byte]agentEntry{}}
}

func (c *agentCache) get(raw string, now time.Time) (*Caller, bool) {
	key := sha256.Sum256([]byte(raw))
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || !now.Before(e.expires) {
		return nil, false
	}
	return e.caller, true
}

func (c *agentCache) put(raw string, caller *Caller, tokenExpiry, now time.Time) {
	expires := now.Add(c.ttl)
	if tokenExpiry.Before(expires) {
		expires = tokenExpiry
	}
	key := sha256.Sum256([]byte(raw))
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		// One agent per node and a token rotation an hour keep this small;
		// if it is full, something is minting tokens: drop the lapsed, then all.
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= c.max {
			clear(c.m)
		}
	}
	c.m[key] = agentEntry{caller: caller, expires: expires}
}
