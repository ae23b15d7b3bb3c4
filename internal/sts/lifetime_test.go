package sts_test

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/sts"
	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/emu/awsemu/awsemutest"
)

// createRoleMax makes a role trusting podid server with the given
// MaxSessionDuration.
func createRoleMax(t *testing.T, emu *awsemutest.Emulator, name string, max time.Duration) string {
	t.Helper()
	out, err := iam.NewFromConfig(emu.AdminConfig()).CreateRole(t.Context(), &iam.CreateRoleInput{RoleName: aws.String(name),
		AssumeRolePolicyDocument: aws.String(awsemu.PodidTrust(serverARN)), MaxSessionDuration: aws.Int32(int32(max / time.Second))})
	if err != nil {
		t.Fatal(err)
	}
	return *out.Role.Arn
}

// refusals counts the AssumeRole calls STS refused.
func refusals(emu *awsemutest.Emulator) int {
	n := 0
	for _, c := range emu.AssumeRoleCalls() {
		if c.Code != "" {
			n++
		}
	}
	return n
}

// EKS's lifetimes: six hours, bounded by each role's MaxSessionDuration
// read with iam:GetRole (so STS refuses nothing), and 59 minutes for a
// target role.
func TestEKSLifetimes(t *testing.T) {
	emu, assumer, _ := setup(t)
	assumer.Limits = &sts.RoleLimits{IAM: iam.NewFromConfig(emu.Config(server.AccessKeyID, server.SecretAccessKey, ""))}
	target := createRoleMax(t, emu, "target", 12*time.Hour)
	source := createRoleMax(t, emu, "source", time.Hour)
	if _, err := iam.NewFromConfig(emu.AdminConfig()).UpdateAssumeRolePolicy(t.Context(), &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String("target"),
		PolicyDocument: aws.String(awsemu.TrustPolicy(source, awsemu.PodidActions, ""))}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		a        *association.Association
		lifetime time.Duration
	}{
		{"a role that allows 12 hours gets EKS's 6", &association.Association{Namespace: "demo", ServiceAccount: "app", RoleARN: createRoleMax(t, emu, "twelve-hours", 12*time.Hour)}, 6 * time.Hour},
		{"a role that allows 3 hours gets 3", &association.Association{Namespace: "demo", ServiceAccount: "app", RoleARN: createRoleMax(t, emu, "three-hours", 3*time.Hour)}, 3 * time.Hour},
		{"a role of IAM's default gets 1", &association.Association{Namespace: "demo", ServiceAccount: "app", RoleARN: createRoleMax(t, emu, "one-hour", time.Hour)}, time.Hour},
		{"a target role gets 59 minutes", &association.Association{Namespace: "demo", ServiceAccount: "app", RoleARN: source, TargetRoleARN: target, ExternalID: "podid-external-id"}, 59 * time.Minute},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := time.Now()
			res, err := assumer.Assume(t.Context(), c.a, pod)
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Credentials.Expiration.Sub(before); got < c.lifetime-time.Minute || got > c.lifetime+time.Minute {
				t.Errorf("credentials last %s, want %s", got.Round(time.Second), c.lifetime)
			}
		})
	}
	if n := refusals(emu); n != 0 {
		t.Errorf("STS refused %d calls; the roles' limits were readable", n)
	}
	// Read once per role, not per exchange.
	iamCalls := emu.IAMCalls()
	if _, err := assumer.Assume(t.Context(), &association.Association{Namespace: "demo", ServiceAccount: "app", RoleARN: "arn:aws:iam::111122223333:role/three-hours"}, pod); err != nil {
		t.Fatal(err)
	}
	if emu.IAMCalls() != iamCalls {
		t.Errorf("a role's limit was read again within its TTL")
	}
}

// Without iam:GetRole (or for another account's role), a role that allows
// less than six hours refuses the first request once; the exchange still
// succeeds, within IAM's default, and the role's limit is remembered, so
// the next exchange is not refused again.
func TestLifetimeLearnedFromSTS(t *testing.T) {
	emu, assumer, _ := setup(t)
	assumer.Limits = &sts.RoleLimits{IAM: iam.NewFromConfig(emu.Config(server.AccessKeyID, server.SecretAccessKey, ""))}
	emu.InjectFault("GetRole", "AccessDenied", 1)
	a := &association.Association{Namespace: "demo", ServiceAccount: "app", RoleARN: createRoleMax(t, emu, "unreadable", 2*time.Hour)}
	for i := range 3 {
		before := time.Now()
		res, err := assumer.Assume(t.Context(), a, pod)
		if err != nil {
			t.Fatalf("exchange %d: %v", i, err)
		}
		if got := res.Credentials.Expiration.Sub(before); got < 59*time.Minute || got > 61*time.Minute {
			t.Errorf("exchange %d: credentials last %s, want IAM's default hour", i, got.Round(time.Second))
		}
	}
	if n := refusals(emu); n != 1 {
		t.Errorf("STS refused %d calls, want the first one only", n)
	}
}

// podid server acting as a role session (Roles Anywhere, IRSA, an instance
// profile) chains every AssumeRole, which STS caps at one hour: the first
// exchange is refused once and asked again within the hour, and podid
// knows it from then on, for every role.
func TestRoleChainingLimitLearnedFromSTS(t *testing.T) {
	emu, _, _ := setup(t)
	admin := iam.NewFromConfig(emu.AdminConfig())
	own, err := admin.CreateRole(t.Context(), &iam.CreateRoleInput{RoleName: aws.String("podid-server"), AssumeRolePolicyDocument: aws.String(awsemu.PodidTrust(serverARN)), MaxSessionDuration: aws.Int32(43200)})
	if err != nil {
		t.Fatal(err)
	}
	session, err := awssts.NewFromConfig(emu.Config(server.AccessKeyID, server.SecretAccessKey, "")).AssumeRole(t.Context(), &awssts.AssumeRoleInput{RoleArn: own.Role.Arn, RoleSessionName: aws.String("podid")})
	if err != nil {
		t.Fatal(err)
	}
	c := session.Credentials
	assumer := &sts.Assumer{Client: awssts.NewFromConfig(emu.Config(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken)), Identity: identity}
	trust := awsemu.PodidTrust(*own.Role.Arn)
	for i, name := range []string{"first", "second", "third"} {
		out, err := admin.CreateRole(t.Context(), &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(trust), MaxSessionDuration: aws.Int32(43200)})
		if err != nil {
			t.Fatal(err)
		}
		before := time.Now()
		res, err := assumer.Assume(t.Context(), &association.Association{Namespace: "demo", ServiceAccount: "app", RoleARN: *out.Role.Arn}, pod)
		if err != nil {
			t.Fatalf("exchange %d: %v", i, err)
		}
		if got := res.Credentials.Expiration.Sub(before); got < 59*time.Minute || got > 61*time.Minute {
			t.Errorf("exchange %d: credentials last %s, want the hour role chaining allows", i, got.Round(time.Second))
		}
	}
	if n := refusals(emu); n != 1 {
		t.Errorf("STS refused %d calls, want the first one only", n)
	}
}

// STS's throttling is absorbed: retried with backoff, counted, and the
// exchange succeeds.
func TestThrottlingIsRetriedAndCounted(t *testing.T) {
	emu, assumer, createRole := setup(t)
	throttled := sts.ThrottledCounter()
	cfg := emu.Config(server.AccessKeyID, server.SecretAccessKey, "")
	cfg.RetryMaxAttempts = 0
	cfg.Retryer = sts.NewRetryer(throttled, 50*time.Millisecond)
	assumer.Client = awssts.NewFromConfig(cfg)
	role := createRole("throttled", awsemu.PodidTrust(serverARN))
	emu.InjectFault("AssumeRole", "Throttling", 2)
	if _, err := assumer.Assume(t.Context(), &association.Association{Namespace: "demo", ServiceAccount: "app", RoleARN: role}, pod); err != nil {
		t.Fatalf("throttled twice, then: %v", err)
	}
	if got := testutil.ToFloat64(throttled); got != 2 {
		t.Errorf("podid_sts_throttled_total = %v, want 2", got)
	}
}
