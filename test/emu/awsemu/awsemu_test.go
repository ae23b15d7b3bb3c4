package awsemu_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"

	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/emu/awsemu/awsemutest"
)

const account = "111122223333"

var broker = awsemu.User{Name: "broker", AccessKeyID: "AKIAPODIDBROKER00001", SecretAccessKey: "broker-secret"}

// clock is a settable clock shared with the emulator.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }
func trust(statements ...string) string {
	return `{"Version":"2012-10-17","Statement":[` + strings.Join(statements, ",") + `]}`
}

func allow(principal, actions string, condition ...string) string {
	s := `{"Effect":"Allow","Principal":{"AWS":"` + principal + `"},"Action":` + actions
	if len(condition) > 0 {
		s += `,"Condition":` + condition[0]
	}
	return s + `}`
}

type fixture struct {
	emu   *awsemutest.Emulator
	clock *clock
	iam   *iam.Client
	sts   *sts.Client // signs as broker
}

func setup(t *testing.T) *fixture {
	c := &clock{now: time.Now().UTC().Truncate(time.Second)}
	emu := awsemutest.Start(t, awsemu.Options{AccountID: account, Users: []awsemu.User{broker}, Now: c.Now})
	return &fixture{
		emu: emu, clock: c,
		iam: iam.NewFromConfig(emu.AdminConfig()),
		sts: sts.NewFromConfig(emu.Config(broker.AccessKeyID, broker.SecretAccessKey, "")),
	}
}

func (f *fixture) role(t *testing.T, name, policy string, maxSession int32) string {
	t.Helper()
	out, err := f.iam.CreateRole(t.Context(), &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(policy), MaxSessionDuration: aws.Int32(maxSession)})
	if err != nil {
		t.Fatal(err)
	}
	return *out.Role.Arn
}

func code(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	if err == nil {
		return ""
	}
	return "not an API error: " + err.Error()
}

func TestIAMRoles(t *testing.T) {
	f := setup(t)
	ctx := t.Context()
	policy := trust(allow("arn:aws:iam::"+account+":user/broker", `["sts:AssumeRole","sts:TagSession"]`))
	arn := f.role(t, "app", policy, 7200)
	if arn != "arn:aws:iam::"+account+":role/app" {
		t.Fatalf("arn = %s", arn)
	}
	got, err := f.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("app")})
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := url.QueryUnescape(*got.Role.AssumeRolePolicyDocument)
	if doc != policy || *got.Role.MaxSessionDuration != 7200 || !strings.HasPrefix(*got.Role.RoleId, "AROA") {
		t.Fatalf("GetRole = %+v (doc %s)", got.Role, doc)
	}
	if _, err := f.iam.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("app"), AssumeRolePolicyDocument: aws.String(policy)}); code(err) != "EntityAlreadyExists" {
		t.Fatalf("duplicate CreateRole: %v", err)
	}
	if _, err := f.iam.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("bad"), AssumeRolePolicyDocument: aws.String("{nope")}); code(err) != "MalformedPolicyDocument" {
		t.Fatalf("bad policy: %v", err)
	}
	newPolicy := trust(allow("*", `"sts:AssumeRole"`))
	if _, err := f.iam.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String("app"), PolicyDocument: aws.String(newPolicy)}); err != nil {
		t.Fatal(err)
	}
	got, _ = f.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("app")})
	if doc, _ := url.QueryUnescape(*got.Role.AssumeRolePolicyDocument); doc != newPolicy {
		t.Fatalf("policy after update = %s", doc)
	}
	list, err := f.iam.ListRoles(ctx, &iam.ListRolesInput{})
	if err != nil || len(list.Roles) != 1 {
		t.Fatalf("ListRoles = %v, %v", list, err)
	}
	if _, err := f.iam.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String("app")}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("app")}); code(err) != "NoSuchEntity" {
		t.Fatalf("GetRole after delete: %v", err)
	}
}

func tags(kv ...string) []ststypes.Tag {
	var out []ststypes.Tag
	for i := 0; i < len(kv); i += 2 {
		out = append(out, ststypes.Tag{Key: aws.String(kv[i]), Value: aws.String(kv[i+1])})
	}
	return out
}

func TestAssumeRole(t *testing.T) {
	f := setup(t)
	brokerARN := "arn:aws:iam::" + account + ":user/broker"
	open := f.role(t, "open", trust(allow(brokerARN, `["sts:AssumeRole","sts:TagSession"]`)), 3600)
	noTags := f.role(t, "no-tags", trust(allow(brokerARN, `"sts:AssumeRole"`)), 3600)
	denied := f.role(t, "denied", trust(allow(brokerARN, `"sts:*"`), `{"Effect":"Deny","Principal":"*","Action":"sts:AssumeRole"}`), 3600)
	other := f.role(t, "other", trust(allow("arn:aws:iam::"+account+":user/someone-else", `"sts:AssumeRole"`)), 3600)
	external := f.role(t, "external", trust(allow("arn:aws:iam::"+account+":root", `"sts:AssumeRole"`, `{"StringEquals":{"sts:ExternalId":"region/acct/cluster"}}`)), 3600)
	tagged := f.role(t, "tag-condition", trust(allow(brokerARN, `["sts:AssumeRole","sts:TagSession"]`, `{"StringLike":{"aws:RequestTag/kubernetes-namespace":"team-*"}}`)), 3600)

	cases := []struct {
		name string
		in   sts.AssumeRoleInput
		code string
	}{
		{"granted with tags", sts.AssumeRoleInput{RoleArn: &open, Tags: tags("kubernetes-namespace", "demo"), TransitiveTagKeys: []string{"kubernetes-namespace"}}, ""},
		{"principal not trusted", sts.AssumeRoleInput{RoleArn: &other}, "AccessDenied"},
		{"no such role", sts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::" + account + ":role/missing")}, "AccessDenied"},
		{"tags without sts:TagSession", sts.AssumeRoleInput{RoleArn: &noTags, Tags: tags("k", "v")}, "AccessDenied"},
		{"no tags, no TagSession needed", sts.AssumeRoleInput{RoleArn: &noTags}, ""},
		{"explicit deny wins", sts.AssumeRoleInput{RoleArn: &denied}, "AccessDenied"},
		{"external id required", sts.AssumeRoleInput{RoleArn: &external}, "AccessDenied"},
		{"wrong external id", sts.AssumeRoleInput{RoleArn: &external, ExternalId: aws.String("region/acct/other")}, "AccessDenied"},
		{"right external id", sts.AssumeRoleInput{RoleArn: &external, ExternalId: aws.String("region/acct/cluster")}, ""},
		{"request tag condition holds", sts.AssumeRoleInput{RoleArn: &tagged, Tags: tags("kubernetes-namespace", "team-a")}, ""},
		{"request tag condition fails", sts.AssumeRoleInput{RoleArn: &tagged, Tags: tags("kubernetes-namespace", "default")}, "AccessDenied"},
		{"duration over the role's maximum", sts.AssumeRoleInput{RoleArn: &open, DurationSeconds: aws.Int32(7200)}, "ValidationError"},
		{"bad session name", sts.AssumeRoleInput{RoleArn: &open, RoleSessionName: aws.String("has space")}, "ValidationError"},
		{"malformed session policy", sts.AssumeRoleInput{RoleArn: &open, Policy: aws.String("{not json}")}, "MalformedPolicyDocument"},
		{"aws: tag prefix", sts.AssumeRoleInput{RoleArn: &open, Tags: tags("aws:x", "v")}, "ValidationError"},
		{"transitive key not a tag", sts.AssumeRoleInput{RoleArn: &open, Tags: tags("a", "1"), TransitiveTagKeys: []string{"b"}}, "InvalidParameterValue"},
		{"packed policy too large", sts.AssumeRoleInput{RoleArn: &open, Policy: aws.String(unrepetitivePolicy(2000)), Tags: tags("kubernetes-namespace", "demo")}, "PackedPolicyTooLarge"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := c.in
			if in.RoleSessionName == nil {
				in.RoleSessionName = aws.String("test-session")
			}
			out, err := f.sts.AssumeRole(t.Context(), &in)
			if got := code(err); got != c.code {
				t.Fatalf("code = %q, want %q (%v)", got, c.code, err)
			}
			if err != nil {
				return
			}
			s, ok := f.emu.Session(*out.Credentials.AccessKeyId)
			if !ok {
				t.Fatal("the emulator did not record the session")
			}
			if s.RoleARN != *in.RoleArn || s.SessionName != *in.RoleSessionName || s.Caller != brokerARN || len(s.Tags) != len(in.Tags) {
				t.Fatalf("session = %+v", s)
			}
			if *out.AssumedRoleUser.AssumedRoleId != s.AssumedRoleID || !strings.HasSuffix(*out.AssumedRoleUser.Arn, "/"+*in.RoleSessionName) {
				t.Fatalf("assumed role user = %+v", out.AssumedRoleUser)
			}
			if d := out.Credentials.Expiration.Sub(f.clock.Now()); d != time.Hour {
				t.Fatalf("credentials last %s, want the default hour", d)
			}
		})
	}
}

// unrepetitivePolicy is a valid policy of about n characters of random
// text, which deflate cannot shrink much.
func unrepetitivePolicy(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	prefix := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/`
	var b strings.Builder
	b.WriteString(prefix)
	seed := uint32(1)
	for b.Len() < n-10 {
		seed = seed*1664525 + 1013904223
		b.WriteByte(alphabet[(seed>>24)%uint32(len(alphabet))])
	}
	b.WriteString(`"}]}`)
	return b.String()
}

func TestRoleChainingCarriesTransitiveTags(t *testing.T) {
	f := setup(t)
	ctx := t.Context()
	first := f.role(t, "first", trust(allow("arn:aws:iam::"+account+":user/broker", `["sts:AssumeRole","sts:TagSession"]`)), 43200)
	secondTrust := trust(allow(first, `"sts:AssumeRole"`, `{"StringEquals":{"sts:ExternalId":"ext-1"}}`))
	second := f.role(t, "second", secondTrust, 3600)

	out, err := f.sts.AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: &first, RoleSessionName: aws.String("hop1"), DurationSeconds: aws.Int32(7200),
		Tags: tags("kubernetes-namespace", "demo", "note", "not-transitive"), TransitiveTagKeys: []string{"kubernetes-namespace"},
	})
	if err != nil {
		t.Fatal(err)
	}
	chained := sts.NewFromConfig(f.emu.Config(*out.Credentials.AccessKeyId, *out.Credentials.SecretAccessKey, *out.Credentials.SessionToken))

	who, err := chained.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if *who.Arn != "arn:aws:sts::"+account+":assumed-role/first/hop1" || *who.Account != account || *who.UserId != *out.AssumedRoleUser.AssumedRoleId {
		t.Fatalf("GetCallerIdentity = %s %s %s", *who.Arn, *who.Account, *who.UserId)
	}

	// The transitive tag makes the second hop a tagged session, so the
	// second role must allow sts:TagSession too.
	_, err = chained.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: &second, RoleSessionName: aws.String("hop2"), ExternalId: aws.String("ext-1")})
	if code(err) != "AccessDenied" || !strings.Contains(err.Error(), "sts:TagSession") {
		t.Fatalf("chaining into a role without TagSession: %v", err)
	}
	secondTrust = trust(allow(first, `["sts:AssumeRole","sts:TagSession"]`, `{"StringEquals":{"sts:ExternalId":"ext-1"}}`))
	if _, err := f.iam.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String("second"), PolicyDocument: &secondTrust}); err != nil {
		t.Fatal(err)
	}
	if _, err := chained.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: &second, RoleSessionName: aws.String("hop2"), ExternalId: aws.String("ext-1"), DurationSeconds: aws.Int32(7200)}); code(err) != "ValidationError" {
		t.Fatalf("chained session over an hour: %v", err)
	}
	if _, err := chained.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: &second, RoleSessionName: aws.String("hop2"), ExternalId: aws.String("ext-1"), Tags: tags("kubernetes-namespace", "other")}); code(err) != "InvalidParameterValue" {
		t.Fatalf("overriding a transitive tag: %v", err)
	}
	out2, err := chained.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: &second, RoleSessionName: aws.String("hop2"), ExternalId: aws.String("ext-1")})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := f.emu.Session(*out2.Credentials.AccessKeyId)
	if len(s.Tags) != 1 || s.Tags["kubernetes-namespace"] != "demo" || s.ExternalID != "ext-1" || s.Caller != "arn:aws:sts::"+account+":assumed-role/first/hop1" {
		t.Fatalf("second session = %+v", s)
	}

	// Credentials stop working when they expire.
	f.clock.Add(2*time.Hour + time.Second)
	f.clock.Add(0)
	if _, err := chained.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); code(err) != "ExpiredToken" {
		t.Fatalf("expired credentials: %v", err)
	}
}

func TestRefusesBadSignaturesAndUnknownKeys(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	wrong := sts.NewFromConfig(f.emu.Config(broker.AccessKeyID, "wrong-secret", ""))
	if _, err := wrong.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); code(err) != "SignatureDoesNotMatch" {
		t.Fatalf("wrong secret: %v", err)
	}
	unknown := sts.NewFromConfig(f.emu.Config("AKIANOBODY", "x", ""))
	if _, err := unknown.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); code(err) != "InvalidClientTokenId" {
		t.Fatalf("unknown key: %v", err)
	}
	who, err := f.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil || *who.Arn != "arn:aws:iam::"+account+":user/broker" || !strings.HasPrefix(*who.UserId, "AIDA") {
		t.Fatalf("GetCallerIdentity as a user = %+v, %v", who, err)
	}
}

func TestInjectedFaults(t *testing.T) {
	f := setup(t)
	f.emu.InjectFault("GetCallerIdentity", "Throttling", 1)
	if _, err := f.sts.GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{}); code(err) != "Throttling" {
		t.Fatalf("injected throttling: %v", err)
	}
	if _, err := f.sts.GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatalf("after the fault: %v", err)
	}
}
