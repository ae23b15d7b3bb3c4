package integration

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/podid/podid/test/emu/awsemu"
)

// EKS's lifetimes through the exchange: a role that allows six hours
// gets a six-hour session, one of IAM's default an hour, and STS refuses
// none of the calls (podid server reads each role's MaxSessionDuration).
func TestSessionLifetimes(t *testing.T) {
	admin := iam.NewFromConfig(awsConfig(emuAdmin))
	for _, c := range []struct {
		name     string
		max      time.Duration
		lifetime time.Duration
	}{
		{"lifetime-six-hours", 12 * time.Hour, 6 * time.Hour},
		{"lifetime-one-hour", time.Hour, time.Hour},
	} {
		out, err := admin.CreateRole(t.Context(), &iam.CreateRoleInput{RoleName: aws.String(c.name), AssumeRolePolicyDocument: aws.String(awsemu.PodidTrust(serverARN)),
			MaxSessionDuration: aws.Int32(int32(c.max / time.Second))})
		if err != nil {
			t.Fatal(err)
		}
		w := newWorkload(t, *out.Role.Arn, nil)
		refused := assumeRefusals(*out.Role.Arn)
		before := time.Now()
		got, err := exchange(t, agentClient("node-a"), w.token(t, w.pod))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if exp := got.Credentials.Expiration.Sub(before); exp < c.lifetime-time.Minute || exp > c.lifetime+time.Minute {
			t.Errorf("%s: credentials last %s, want %s", c.name, exp.Round(time.Second), c.lifetime)
		}
		if n := assumeRefusals(*out.Role.Arn) - refused; n != 0 {
			t.Errorf("%s: STS refused %d AssumeRole calls", c.name, n)
		}
	}
}

func assumeRefusals(roleARN string) int {
	n := 0
	for _, c := range emu.AssumeRoleCalls() {
		if c.RoleARN == roleARN && c.Code != "" {
			n++
		}
	}
	return n
}
