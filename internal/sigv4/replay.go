package sigv4

import (
	"crypto/sha256"
	"sync"
	"time"
)

// ReplayCache remembers the requests it has accepted until their signatures
// could no longer pass the skew check, so that a captured request cannot be
// sent again. A request is known by what its signature commits to (the
// key, the algorithm, the date, the scope and the canonical request), not
// by the signature's text, which a replayer can vary without the key. The
// AWS SDKs sign a per-attempt header (amz-sdk-request), so their retries
// are new requests and are not mistaken for replays.
//
// The cache is one process's: behind a Service with several podid server
// replicas, a captured request can be accepted once by each replica within
// the skew window. TLS keeps requests from being captured in the first
// place; the threat model says so.
type ReplayCache struct {
	mu   sync.Mutex
	seen map[[sha256.Size]byte]time.Time // signed content → when it stops mattering
	max  int
}

// signedContent is the digest of what a signature commits to.
func signedContent(accessKeyID, algorithm, amzDate string, s scope, canonical string) [sha256.Size]byte {
	return sha256.Sum256([]byte(accessKeyID + "\n" + algorithm + "\n" + amzDate + "\n" + s.String() + "\n" + canonical))
}

// NewReplayCache holds at most max signatures; when full it forgets the
// lapsed ones, and if none have lapsed it refuses new requests rather than
// forget a live one (a flood of fresh signatures can only come from key
// holders, whom the log names).
func NewReplayCache(max int) *ReplayCache {
	return &ReplayCache{seen: map[[sha256.Size]byte]time.Time{}, max: max}
}

// firstUse records a request until `until` and reports whether it was new.
func (c *ReplayCache) firstUse(sig [sha256.Size]byte, now, until time.Time) (fresh, full bool) {
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
