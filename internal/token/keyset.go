package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// Fetcher fetches an issuer's current JWKS.
type Fetcher func(ctx context.Context) (*jose.JSONWebKeySet, error)

// KeySet caches an issuer's signing keys. It refetches when a token names a
// key it does not hold (the issuer rotated), but at most once per
// MinInterval, so a flood of tokens with made-up key IDs cannot turn into a
// flood of fetches; and when its keys are older than MaxAge, so a key the
// issuer withdrew stops verifying. Concurrent refetches are one fetch.
type KeySet struct {
	fetch       Fetcher
	minInterval time.Duration
	maxAge      time.Duration
	now         func() time.Time

	group   singleflight.Group
	mu      sync.RWMutex
	keys    []jose.JSONWebKey
	fetched time.Time // last successful fetch
	tried   time.Time // last attempt
	lastErr error     // of the last attempt
}

// KeySetOptions tune a KeySet; zero values mean the defaults.
type KeySetOptions struct {
	MinInterval time.Duration // default 10 s
	MaxAge      time.Duration // default 5 min
	Now         func() time.Time
}

// NewKeySet returns a key set that fetches with fetch on first use.
func NewKeySet(fetch Fetcher, opts KeySetOptions) *KeySet {
	s := &KeySet{fetch: fetch, minInterval: opts.MinInterval, maxAge: opts.MaxAge, now: opts.Now}
	if s.minInterval == 0 {
		s.minInterval = 10 * time.Second
	}
	if s.maxAge == 0 {
		s.maxAge = 5 * time.Minute
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Lookup returns the keys that may have signed a token naming kid (all keys
// when kid is empty).
func (s *KeySet) Lookup(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	keys, fetched, tried := s.snapshot()
	now := s.now()
	found := matching(keys, kid)
	stale := fetched.IsZero() || now.Sub(fetched) > s.maxAge
	unknown := len(found) == 0 && now.Sub(tried) >= s.minInterval
	if stale || unknown {
		if err := s.refresh(ctx); err != nil && len(keys) == 0 {
			return nil, err
		}
		keys, _, _ = s.snapshot()
		found = matching(keys, kid)
	}
	return found, nil
}

func (s *KeySet) snapshot() ([]jose.JSONWebKey, time.Time, time.Time) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.keys, s.fetched, s.tried
}

// refresh fetches once for all concurrent callers, and not again within
// MinInterval of the last attempt; it returns the last attempt's error.
func (s *KeySet) refresh(ctx context.Context) error {
	_, err, _ := s.group.Do("", func() (any, error) {
		s.mu.RLock()
		recent, lastErr := !s.tried.IsZero() && s.now().Sub(s.tried) < s.minInterval, s.lastErr
		s.mu.RUnlock()
		if recent {
			return nil, lastErr
		}
		set, err := s.fetch(context.WithoutCancel(ctx))
		s.mu.Lock()
		defer s.mu.Unlock()
		s.tried, s.lastErr = s.now(), err
		if err != nil {
			return nil, err
		}
		s.keys = publicSigningKeys(set)
		s.fetched = s.tried
		return nil, nil
	})
	return err
}

func publicSigningKeys(set *jose.JSONWebKeySet) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range set.Keys {
		if k.IsPublic() && (k.Use == "" || k.Use == "sig") {
			out = append(out, k)
		}
	}
	return out
}

func matching(keys []jose.JSONWebKey, kid string) []jose.JSONWebKey {
	if kid == "" {
		return keys
	}
	for _, k := range keys {
		if k.KeyID == kid {
			return []jose.JSONWebKey{k}
		}
	}
	return nil
}

// HTTPFetcher fetches a JWKS document from url with client.
func HTTPFetcher(client *http.Client, url string) Fetcher {
	return func(ctx context.Context) (*jose.JSONWebKeySet, error) {
		var set jose.JSONWebKeySet
		if err := getJSON(ctx, client, url, &set); err != nil {
			return nil, fmt.Errorf("fetching signing keys: %w", err)
		}
		if len(set.Keys) == 0 {
			return nil, fmt.Errorf("fetching signing keys: %s holds no keys", url)
		}
		return &set, nil
	}
}

// Discovery is the part of an OIDC discovery document podid reads.
type Discovery struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

// Discover reads base + "/.well-known/openid-configuration".
func Discover(ctx context.Context, client *http.Client, base string) (*Discovery, error) {
	var d Discovery
	if err := getJSON(ctx, client, base+"/.well-known/openid-configuration", &d); err != nil {
		return nil, fmt.Errorf("reading the issuer's discovery document: %w", err)
	}
	if d.Issuer == "" || d.JWKSURI == "" {
		return nil, errors.New("the issuer's discovery document names no issuer or jwks_uri")
	}
	return &d, nil
}

func getJSON(ctx context.Context, client *http.Client, url string, into any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(into); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}
