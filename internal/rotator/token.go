package rotator

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/credsource"
	"github.com/podid/podid/internal/regcred"
)

// Backoff spaces out attempts after failures: Base, doubling up to Max,
// each delay scaled by a random factor in [1-Jitter, 1+Jitter] so that many
// rotators failing together do not retry together.
type Backoff struct {
	Base, Max time.Duration
	Jitter    float64
}

// DefaultBackoff: 10 s, 20 s, 40 s, … up to 10 minutes, ±20%. Over a
// minute of outage that is at most four attempts, where JFrog's operator
// makes sixty.
var DefaultBackoff = Backoff{Base: 10 * time.Second, Max: 10 * time.Minute, Jitter: 0.2}

// delay is the wait after the n-th consecutive failure (n ≥ 1).
func (b Backoff) delay(n int) time.Duration {
	d := b.Base
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	if b.Jitter > 0 {
		d = time.Duration(float64(d) * (1 - b.Jitter + 2*b.Jitter*rand.Float64()))
	}
	return d
}

// tokenState is one rotator's current token and the history that decides
// when to make the next. Reconciles of one rotator never run concurrently,
// but the metrics collector reads it, hence the lock.
type tokenState struct {
	mu        sync.Mutex
	name      string // the rotator's, for metrics
	key       string
	creds     *regcred.Credentials
	mechanism credsource.AuthType
	obtained  time.Time
	renewAt   time.Time
	failures  int
	retryAt   time.Time
	// lastErr and reason describe the last failure ("" after a success).
	lastErr error
	reason  string
	// notes are what the user should know of the current token.
	notes []note
}

// note is something the user should know of how the token was made or is
// renewed: an Event's reason and the message, for status and the log too.
type note struct{ reason, message string }

// Reasons of the notes.
const (
	ReasonTokenLifetimeDefaulted = "TokenLifetimeDefaulted"
	ReasonRefreshTimeShortened   = "RefreshTimeShortened"
)

// tokenNotes are the notes of a token just made, renewed after renewIn.
func tokenNotes(spec *v1alpha1.SecretRotatorSpec, creds *regcred.Credentials, lifetime, renewIn time.Duration) []note {
	var out []note
	for _, n := range creds.Notes {
		out = append(out, note{ReasonTokenLifetimeDefaulted, n})
	}
	if spec.RefreshTime != nil && spec.RefreshTime.Duration > renewIn {
		out = append(out, note{ReasonRefreshTimeShortened, fmt.Sprintf(
			"refreshTime %s is longer than three quarters of the token's life (%s): renewing every %s instead, so that no secret ever holds an expired token; lower refreshTime, or raise the role's MaxSessionDuration",
			spec.RefreshTime.Duration, lifetime.Round(time.Second), renewIn.Round(time.Second))})
	}
	return out
}

// states holds every rotator's tokenState by UID.
type states struct {
	mu sync.Mutex
	m  map[string]*tokenState
}

func (s *states) get(uid string) *tokenState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*tokenState{}
	}
	st, ok := s.m[uid]
	if !ok {
		st = &tokenState{}
		s.m[uid] = st
	}
	return st
}

func (s *states) forget(uid string) {
	s.mu.Lock()
	delete(s.m, uid)
	s.mu.Unlock()
}

// each calls f for every rotator's state.
func (s *states) each(f func(uid string, st *tokenState)) {
	s.mu.Lock()
	all := make(map[string]*tokenState, len(s.m))
	for k, v := range s.m {
		all[k] = v
	}
	s.mu.Unlock()
	for uid, st := range all {
		f(uid, st)
	}
}

// tokenResult is what a pass may use.
type tokenResult struct {
	creds     *regcred.Credentials // nil: no usable token
	mechanism credsource.AuthType
	obtained  time.Time
	// rotated is true when this pass made a new token; attempted when it
	// tried to (successfully or not).
	rotated, attempted bool
	// failure is the last failure, and reason its condition reason, when
	// the last attempt failed.
	failure error
	reason  string
	// next is when the token needs the controller again (renewal or retry).
	next time.Time
	// notes are the current token's.
	notes []note
}

// token returns the rotator's token, making a new one when there is none,
// the spec's identity or registry changed, or renewal is due — unless a
// failure's backoff has not yet passed.
func (r *Reconciler) token(ctx context.Context, rot *v1alpha1.SecretRotator) tokenResult {
	st := r.tokens.get(string(rot.UID))
	now := r.now()
	st.mu.Lock()
	if key := tokenKey(&rot.Spec); key != st.key {
		// A new identity or registry: start afresh.
		st.key, st.creds, st.mechanism, st.obtained, st.renewAt, st.notes = key, nil, "", time.Time{}, time.Time{}, nil
		st.failures, st.retryAt, st.lastErr, st.reason = 0, time.Time{}, nil, ""
	}
	st.name = rot.Name
	if st.creds != nil && !now.Before(st.creds.ExpiresAt) {
		st.creds = nil // expired: never hand it out
	}
	attempt := (st.creds == nil || !now.Before(st.renewAt)) && !now.Before(st.retryAt)
	st.mu.Unlock()

	// Reconciles of one rotator never overlap, so the exchange needs no
	// lock; the metrics scrape is not held up by a slow registry.
	rotated := false
	if attempt {
		creds, mechanism, reason, err := r.exchange(ctx, rot)
		st.mu.Lock()
		if err != nil {
			st.failures++
			st.retryAt = now.Add(r.backoff().delay(st.failures))
			st.lastErr, st.reason = err, reason
			if mechanism != "" {
				st.mechanism = mechanism // the identity worked; the registry did not
			}
			r.metrics.failures.WithLabelValues(rot.Name, reason).Inc()
		} else {
			st.creds, st.mechanism, st.obtained = creds, mechanism, now
			renewIn := refreshAfter(&rot.Spec, creds.ExpiresAt.Sub(now))
			st.renewAt = now.Add(renewIn)
			st.notes = tokenNotes(&rot.Spec, creds, creds.ExpiresAt.Sub(now), renewIn)
			st.failures, st.retryAt, st.lastErr, st.reason = 0, time.Time{}, nil, ""
			rotated = true
			r.metrics.rotations.WithLabelValues(rot.Name, provider(&rot.Spec)).Inc()
		}
		st.mu.Unlock()
	}

	st.mu.Lock()
	defer st.mu.Unlock()
	res := tokenResult{creds: st.creds, mechanism: st.mechanism, obtained: st.obtained, rotated: rotated, attempted: attempt, failure: st.lastErr, reason: st.reason, notes: st.notes}
	switch {
	case st.lastErr != nil:
		res.next = st.retryAt
		if st.creds != nil && st.creds.ExpiresAt.Before(res.next) {
			res.next = st.creds.ExpiresAt // to say it expired
		}
	default:
		res.next = st.renewAt
	}
	return res
}

// refreshAfter is how long a token is used before the next is made:
// refreshTime, or three quarters of its lifetime, never longer than that.
func refreshAfter(spec *v1alpha1.SecretRotatorSpec, lifetime time.Duration) time.Duration {
	auto := lifetime * 3 / 4
	if spec.RefreshTime != nil && spec.RefreshTime.Duration > 0 && spec.RefreshTime.Duration < auto {
		return max(spec.RefreshTime.Duration, minRefresh)
	}
	return max(auto, 0)
}

// exchange resolves the identity and makes one registry token.
func (r *Reconciler) exchange(ctx context.Context, rot *v1alpha1.SecretRotator) (*regcred.Credentials, credsource.AuthType, string, error) {
	src, err := r.Resolver(rot).Resolve(ctx, sourceSpec(&rot.Spec))
	if err != nil {
		return nil, "", v1alpha1.ReasonNoAWSIdentity, err
	}
	x, err := r.Exchangers(ctx, rot)
	if err != nil {
		return nil, src.Mechanism, v1alpha1.ReasonInvalidSpec, err
	}
	creds, err := x.Exchange(ctx, src.Provider)
	if err != nil {
		reason := v1alpha1.ReasonTokenExchangeFailed
		if isCredentialError(err) {
			reason = v1alpha1.ReasonNoAWSIdentity
		}
		return nil, src.Mechanism, reason, err
	}
	if len(creds.Auths) == 0 {
		return nil, src.Mechanism, v1alpha1.ReasonTokenExchangeFailed, errors.New("the registry exchange returned no login")
	}
	return creds, src.Mechanism, "", nil
}

func isCredentialError(err error) bool {
	var ce *regcred.CredentialsError
	return errors.As(err, &ce)
}
