// Package sts turns an association and a verified pod into role credentials
// the way EKS Pod Identity does: sts:AssumeRole on the association's role as
// podid's own AWS identity, with the six transitive EKS session tags and the
// session policy, then, with a target role, a second AssumeRole with those
// credentials and the external ID. It classifies STS's failures so the API
// layer can answer with EKS Auth errors.
//
// It does not verify tokens or look associations up; internal/auth does.
package sts

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/aws-sdk-go-v2/service/sts/types"

	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/podidentity"
)

// API is the one STS call podid makes; *sts.Client implements it.
type API interface {
	AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, optFns ...func(*sts.Options)) (*sts.AssumeRoleOutput, error)
}

var _ API = (*sts.Client)(nil)

// Pod is the pod the credentials are for.
type Pod struct {
	Namespace, ServiceAccount, Name, UID string
}

// Credentials are temporary AWS credentials.
type Credentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
	Expiration                                 time.Time
}

// Result is what an assumption produced.
type Result struct {
	Credentials Credentials
	// AssumedRoleARN and AssumedRoleID describe the final session (the
	// target role's when there is one).
	AssumedRoleARN, AssumedRoleID string
	SessionName                   string
	// RoleARN is the role the credentials are for.
	RoleARN string
}

// Assumer assumes association roles.
type Assumer struct {
	// Client calls STS as podid's own identity.
	Client API
	// Identity is this cluster's.
	Identity association.Identity
	// Duration of the credentials; zero means EKS's DefaultDuration. Each
	// role's MaxSessionDuration bounds it (Limits), and a target role's
	// session lasts at most ChainedDuration, as on EKS.
	Duration time.Duration
	// Limits knows roles' MaxSessionDuration; nil: a refusal for the
	// duration is retried within IAM's default every time.
	Limits *RoleLimits
	// Chained says podid's own identity is a role session (IAM Roles
	// Anywhere, IRSA, an instance profile): every AssumeRole is then role
	// chaining, which STS caps at one hour. Unset, podid learns it from
	// the first refusal and asks again within the hour.
	Chained bool
	chained atomic.Bool
}

func (as *Assumer) duration() time.Duration {
	if as.Duration > 0 {
		return as.Duration
	}
	return DefaultDuration
}

// Assume returns credentials for a's role (and target role) for pod.
func (as *Assumer) Assume(ctx context.Context, a *association.Association, pod Pod) (*Result, error) {
	sessionName := SessionName(as.Identity.ClusterName, pod.Name)
	in := &sts.AssumeRoleInput{
		RoleArn:         aws.String(a.RoleARN),
		RoleSessionName: aws.String(sessionName),
	}
	duration := as.duration()
	if as.Chained || as.chained.Load() {
		duration = min(duration, iamDefaultMaxSession)
	}
	if a.TargetRoleARN != "" {
		// Used at once, only to assume the target role.
		duration = chainSourceDuration
	} else if duration > iamDefaultMaxSession {
		// Every role allows IAM's default: only longer asks read the role.
		if max := as.Limits.Max(ctx, a.RoleARN); max > 0 {
			duration = min(duration, max)
		}
	}
	if !a.DisableSessionTags {
		in.Tags, in.TransitiveTagKeys = sessionTags(as.Identity, pod)
	}
	if a.TargetRoleARN == "" && a.Policy != "" {
		in.Policy = aws.String(a.Policy)
	}
	out, err := as.assumeWithin(ctx, in, duration)
	if err != nil {
		return nil, classify(err, a.RoleARN)
	}
	res := result(out, sessionName, a.RoleARN)
	if a.TargetRoleARN == "" {
		return res, nil
	}

	// Chain into the target role with the first session's credentials. Its
	// transitive tags carry over by themselves; role chaining caps the
	// session at one hour, and EKS asks for 59 minutes.
	target := &sts.AssumeRoleInput{
		RoleArn:         aws.String(a.TargetRoleARN),
		RoleSessionName: aws.String(sessionName),
		DurationSeconds: aws.Int32(int32(min(as.duration(), ChainedDuration) / time.Second)),
		ExternalId:      aws.String(ExternalID(as.Identity, a)),
	}
	if a.Policy != "" {
		target.Policy = aws.String(a.Policy)
	}
	first := res.Credentials
	out, err = as.Client.AssumeRole(ctx, target, func(o *sts.Options) {
		o.Credentials = credentials.NewStaticCredentialsProvider(first.AccessKeyID, first.SecretAccessKey, first.SessionToken)
	})
	if err != nil {
		return nil, classify(err, a.TargetRoleARN)
	}
	return result(out, sessionName, a.TargetRoleARN), nil
}

// assumeWithin asks for a session of duration. A role that allows less
// than asked and could not be read (no iam:GetRole for podid server, a
// role of another account) refuses it once: the role is then known to
// allow IAM's default, which every role does, and asked again for that.
func (as *Assumer) assumeWithin(ctx context.Context, in *sts.AssumeRoleInput, duration time.Duration) (*sts.AssumeRoleOutput, error) {
	in.DurationSeconds = aws.Int32(int32(duration / time.Second))
	out, err := as.Client.AssumeRole(ctx, in)
	chained := err != nil && exceedsChainLimit(err)
	if err != nil && duration > iamDefaultMaxSession && (chained || exceedsMaxSession(err)) {
		if chained {
			as.chained.Store(true)
		} else {
			as.Limits.Learn(aws.ToString(in.RoleArn), iamDefaultMaxSession)
		}
		in.DurationSeconds = aws.Int32(int32(iamDefaultMaxSession / time.Second))
		out, err = as.Client.AssumeRole(ctx, in)
	}
	return out, err
}

// ExternalID is what the target role's trust policy sees as sts:ExternalId:
// the association's generated external ID, or, when session tags are
// disabled, "region/account/cluster/namespace/serviceaccount" as EKS sends.
func ExternalID(id association.Identity, a *association.Association) string {
	if a.DisableSessionTags {
		return strings.Join([]string{id.Region, id.AccountID, id.ClusterName, a.Namespace, a.ServiceAccount}, "/")
	}
	return a.ExternalID
}

func result(out *sts.AssumeRoleOutput, sessionName, roleARN string) *Result {
	c := out.Credentials
	r := &Result{
		Credentials: Credentials{
			AccessKeyID:     aws.ToString(c.AccessKeyId),
			SecretAccessKey: aws.ToString(c.SecretAccessKey),
			SessionToken:    aws.ToString(c.SessionToken),
			Expiration:      aws.ToTime(c.Expiration),
		},
		SessionName: sessionName,
		RoleARN:     roleARN,
	}
	if u := out.AssumedRoleUser; u != nil {
		r.AssumedRoleARN, r.AssumedRoleID = aws.ToString(u.Arn), aws.ToString(u.AssumedRoleId)
	}
	return r
}

// SessionTags are the session tags podid sends for pod, as key-value pairs
// in the order sent.
func SessionTags(id association.Identity, pod Pod) [][2]string {
	return [][2]string{
		{podidentity.TagClusterARN, id.ClusterARN()},
		{podidentity.TagClusterName, id.ClusterName},
		{podidentity.TagNamespace, pod.Namespace},
		{podidentity.TagServiceAccount, pod.ServiceAccount},
		{podidentity.TagPodName, pod.Name},
		{podidentity.TagPodUID, pod.UID},
	}
}

func sessionTags(id association.Identity, pod Pod) ([]types.Tag, []string) {
	kv := SessionTags(id, pod)
	tags := make([]types.Tag, len(kv))
	keys := make([]string, len(kv))
	for i, p := range kv {
		tags[i] = types.Tag{Key: aws.String(p[0]), Value: aws.String(p[1])}
		keys[i] = p[0]
	}
	return tags, keys
}

// SessionName is "eks-<cluster>-<pod>-<random>", as EKS names sessions,
// fitted into STS's 64 characters: the random part is a UUID when there is
// room and 8 hexadecimal digits otherwise, the cluster name is cut to 20
// characters, and the pod name to what is left.
func SessionName(cluster, pod string) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	uuid := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
	return fitSessionName(cluster, pod, uuid)
}

func fitSessionName(cluster, pod, uuid string) string {
	const max = 64
	name := "eks-" + cluster + "-" + pod + "-" + uuid
	if len(name) <= max {
		return name
	}
	suffix := strings.ReplaceAll(uuid, "-", "")[:8]
	if len(cluster) > 20 {
		cluster = cluster[:20]
	}
	room := max - len("eks-") - len(cluster) - 2 - len(suffix)
	if len(pod) > room {
		pod = pod[:room]
	}
	return "eks-" + cluster + "-" + pod + "-" + suffix
}

// ErrNoCredentials is wrapped when podid's own AWS identity has none.
var ErrNoCredentials = errors.New("podid server has no AWS credentials")
