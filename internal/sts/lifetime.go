package sts

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go"
	"golang.org/x/sync/singleflight"

	"github.com/podid/podid/internal/iamrole"
)

// EKS's session lifetimes: six hours, and 59 minutes for the target role
// of a chain (STS caps a chained session at one hour). Longer sessions are
// fewer STS calls: a pod costs about four a day instead of 24.
const (
	DefaultDuration = 6 * time.Hour
	ChainedDuration = 59 * time.Minute
	// chainSourceDuration is the first session of a chain, used only to
	// call AssumeRole on the target role at once: STS's shortest, within
	// every role's MaxSessionDuration.
	chainSourceDuration = 15 * time.Minute
	// iamDefaultMaxSession is IAM's MaxSessionDuration unless the role's
	// owner raised it, and the least any role allows.
	iamDefaultMaxSession = time.Hour
)

// RoleReader reads a role, for its MaxSessionDuration; *iam.Client
// implements it.
type RoleReader interface {
	GetRole(context.Context, *iam.GetRoleInput, ...func(*iam.Options)) (*iam.GetRoleOutput, error)
}

// RoleLimits knows each role's MaxSessionDuration, so that podid asks STS
// for no longer a session than the role allows and no call fails for it.
// It reads them with iam:GetRole (when podid server's identity may), keeps
// each for TTL, and otherwise learns a role's limit from the one refusal
// STS gives, retried at once within IAM's default.
type RoleLimits struct {
	// IAM reads roles; nil: limits are only learned from STS's refusals.
	IAM RoleReader
	// TTL is how long a limit is kept; default one hour.
	TTL time.Duration
	Now func() time.Time

	group singleflight.Group
	mu    sync.Mutex
	known map[string]roleLimit
}

type roleLimit struct {
	max     time.Duration // 0: unknown (GetRole refused)
	expires time.Time
}

func (l *RoleLimits) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

func (l *RoleLimits) ttl() time.Duration {
	if l.TTL > 0 {
		return l.TTL
	}
	return time.Hour
}

// Max is the role's MaxSessionDuration, or 0 when it is not known (no
// iam:GetRole, another account's role): the caller then asks for what it
// wants and learns from STS's answer. Concurrent asks for one role make
// one GetRole.
func (l *RoleLimits) Max(ctx context.Context, roleARN string) time.Duration {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	known, ok := l.known[roleARN]
	l.mu.Unlock()
	if ok && l.now().Before(known.expires) {
		return known.max
	}
	if l.IAM == nil {
		return 0
	}
	v, _, _ := l.group.Do(roleARN, func() (any, error) {
		return l.read(ctx, roleARN), nil
	})
	return v.(time.Duration)
}

// read asks IAM; a refusal is remembered as unknown for TTL, so a server
// without iam:GetRole does not ask again for every exchange.
func (l *RoleLimits) read(ctx context.Context, roleARN string) time.Duration {
	var max time.Duration
	name, err := iamrole.RoleName(roleARN)
	if err != nil {
		l.remember(roleARN, 0)
		return 0
	}
	out, err := l.IAM.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
	switch {
	case err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		return 0
	case err == nil && aws.ToString(out.Role.Arn) == roleARN && out.Role.MaxSessionDuration != nil:
		max = time.Duration(*out.Role.MaxSessionDuration) * time.Second
	}
	l.remember(roleARN, max)
	return max
}

// Learn records what STS said of the role: its limit is below what was
// asked, so at most IAM's default until the role is read again.
func (l *RoleLimits) Learn(roleARN string, max time.Duration) {
	if l != nil {
		l.remember(roleARN, max)
	}
}

func (l *RoleLimits) remember(roleARN string, max time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.known == nil {
		l.known = map[string]roleLimit{}
	}
	l.known[roleARN] = roleLimit{max: max, expires: l.now().Add(l.ttl())}
}

// exceedsChainLimit reports whether STS refused a duration over one hour
// because podid's own identity is a role session (role chaining).
func exceedsChainLimit(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == "ValidationError" && strings.Contains(api.ErrorMessage(), "role chaining")
}

// exceedsMaxSession reports whether STS refused a duration longer than the
// role's MaxSessionDuration.
func exceedsMaxSession(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == "ValidationError" && strings.Contains(api.ErrorMessage(), "MaxSessionDuration")
}
