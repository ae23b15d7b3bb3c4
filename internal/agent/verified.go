package agent

import (
	"crypto/sha256"
	"sync"
	"time"
)

// verifiedTokens remembers which tokens passed signature verification, by
// SHA-256, so that a pod's repeated requests with the same token cost a hash
// instead of a signature check. An entry lives until the token expires or
// maxAge passes, whichever is first.
type verifiedTokens struct {
	maxAge time.Duration
	max    int
	mu     sync.RWMutex
	m      map[[32]byte]verifiedToken
}

type verifiedToken struct {
	pod     Pod
	expires time.Time
}

func newVerifiedTokens(maxAge time.Duration, max int) *verifiedTokens {
	return &verifiedTokens{maxAge: maxAge, max: max, m: map[[32]byte]verifiedToken{}}
}

func (v *verifiedTokens) get(raw string, now time.Time) (Pod, bool) {
	key := sha256.Sum256([]byte(raw))
	v.mu.RLock()
	e, ok := v.m[key]
	v.mu.RUnlock()
	if !ok || !now.Before(e.expires) {
		return Pod{}, false
	}
	return e.pod, true
}

func (v *verifiedTokens) put(raw string, pod Pod, tokenExpiry, now time.Time) {
	expires := now.Add(v.maxAge)
	if tokenExpiry.Before(expires) {
		expires = tokenExpiry
	}
	key := sha256.Sum256([]byte(raw))
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.m) >= v.max {
		for k, e := range v.m {
			if !now.Before(e.expires) {
				delete(v.m, k)
			}
		}
		if len(v.m) >= v.max {
			clear(v.m)
		}
	}
	v.m[key] = verifiedToken{pod: pod, expires: expires}
}
