package podcheck

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// namespaceLimiters give each namespace its own token bucket of checks, so
// that a namespace creating checks in a loop is refused at once and the
// other namespaces' checks are answered as before.
type namespaceLimiters struct {
	mu    sync.Mutex
	rate  rate.Limit
	burst int
	m     map[string]*rate.Limiter
}

// maxIdleLimiters bounds the map: past it, buckets that are full again
// (their namespace has not asked lately) are dropped, which forgets
// nothing a full bucket would have refused.
const maxIdleLimiters = 1024

func newNamespaceLimiters(r rate.Limit, burst int) *namespaceLimiters {
	return &namespaceLimiters{rate: r, burst: burst, m: map[string]*rate.Limiter{}}
}

// allow takes one check from ns's bucket.
func (n *namespaceLimiters) allow(ns string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	l, ok := n.m[ns]
	if !ok {
		if len(n.m) >= maxIdleLimiters {
			for k, v := range n.m {
				if v.TokensAt(now) >= float64(n.burst) {
					delete(n.m, k)
				}
			}
		}
		l = rate.NewLimiter(n.rate, n.burst)
		n.m[ns] = l
	}
	return l.AllowN(now, 1)
}

func (n *namespaceLimiters) describe() string {
	return fmt.Sprintf("%g a second, %d at once", float64(n.rate), n.burst)
}
