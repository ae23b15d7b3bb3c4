package token

import (
	"crypto/sha256"
	"sync"
	"time"
)

// Remembered holds what was learnt from tokens that passed verification,
// keyed by the token's SHA-256, so that the same token presented again costs
// a hash instead of a signature check. An entry lives until the token
// expires or TTL passes, whichever is first: the TTL bounds how long a
// verdict that depends on more than the token (a pod still existing) is
// taken on trust. It is bounded: when full, lapsed entries go, then all.
type Remembered[V any] struct {
	ttl time.Duration
	max int
	mu  sync.RWMutex
	m   map[[sha256.Size]byte]remembered[V]
}

type remembered[V any] struct {
	value   V
	expires time.Time
}

// NewRemembered returns an empty store of at most max tokens.
func NewRemembered[V any](ttl time.Duration, max int) *Remembered[V] {
	return &Remembered[V]{ttl: ttl, max: max, m: map[[sha256.Size]byte]remembered[V]{}}
}

// Get returns what was remembered of raw, if it is still good at now.
func (r *Remembered[V]) Get(raw string, now time.Time) (V, bool) {
	key := sha256.Sum256([]byte(raw))
	r.mu.RLock()
	e, ok := r.m[key]
	r.mu.RUnlock()
	if !ok || !now.Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.value, true
}

// Put remembers value for raw, a token that expires at tokenExpiry.
func (r *Remembered[V]) Put(raw string, value V, tokenExpiry, now time.Time) {
	expires := now.Add(r.ttl)
	if tokenExpiry.Before(expires) {
		expires = tokenExpiry
	}
	key := sha256.Sum256([]byte(raw))
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.m) >= r.max {
		// Something is minting tokens faster than they lapse.
		for k, e := range r.m {
			if !now.Before(e.expires) {
				delete(r.m, k)
			}
		}
		if len(r.m) >= r.max {
			clear(r.m)
		}
	}
	r.m[key] = remembered[V]{value: value, expires: expires}
}
