package sigv4

import (
	"sync"
	"time"
)

// ReplayCache remembers the signatures it has accepted until they could no
// longer pass the skew check, so that a captured request cannot be sent
// again. The AWS SDKs sign a per-attempt header (amz-sdk-request), so their
// retries carry new signatures and are not mistaken for replays.
type ReplayCache struct {
	mu   sync.Mutex
	seen map[string]time.Time // signature → when it stops mattering
	max  int
}

// NewReplayCache holds at most max signatures; when full it forgets the
// lapsed ones, and if none have lapsed it refuses new requests rather than
// forget a live one (a flood of fresh signatures can only come from key
// holders, whom the log names).
func NewReplayCache(max int) *ReplayCache {
	return &ReplayCache{seen: map[string]time.Time{}, max: max}
}

// firstUse records sig until `until` and reports whether it was new.
func (c *ReplayCache) firstUse(sig string, now, until time.Time) (fresh, full bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp, ok := c.seen[sig]; ok && now.Before(exp) {
		return false, false
	}
	if len(c.seen) >= c.max {
		for s, exp := range c.seen {
			if !now.Before(exp) {
				delete(c.seen, s)
			}
		}
		if len(c.seen) >= c.max {
			return false, true
		}
	}
	c.seen[sig] = until
	return true, false
}
