package sigv4

import (
	"context"
	"sync"
)

// StaticKeys is a KeyStore over a fixed set of keys, replaceable at run time
// (for example when the file they come from changes).
type StaticKeys struct {
	mu   sync.RWMutex
	keys map[string]Key
}

// NewStaticKeys returns a store holding keys.
func NewStaticKeys(keys ...Key) *StaticKeys {
	s := &StaticKeys{}
	s.Replace(keys...)
	return s
}

// Replace swaps the whole set.
func (s *StaticKeys) Replace(keys ...Key) {
	m := make(map[string]Key, len(keys))
	for _, k := range keys {
		m[k.AccessKeyID] = k
	}
	s.mu.Lock()
	s.keys = m
	s.mu.Unlock()
}

// Key implements KeyStore.
func (s *StaticKeys) Key(_ context.Context, accessKeyID string) (Key, error) {
	s.mu.RLock()
	k, ok := s.keys[accessKeyID]
	s.mu.RUnlock()
	if !ok {
		return Key{}, ErrUnknownKey
	}
	return k, nil
}
