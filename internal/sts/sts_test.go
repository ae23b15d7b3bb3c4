package sts_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/internal/sts"
	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/emu/awsemu/awsemutest"
)

var (
	identity = association.Identity{Partition: "aws", Region: "us-east-1", AccountID: "111122223333", ClusterName: "sandbox"}
	server   = awsemu.User{Name: "podid-server", AccessKeyID: "AKIAPODIDSERVER00001", SecretAccessKey: "server-secret"}
	pod      = sts.Pod{Namespace: "demo", ServiceAccount: "app", Name: "app-7d9f-x2", UID: "0b7c7e4e-3c1a-4f57-9a2e-1f0d5f6b8e21"}
)

const serverARN = "arn:aws:iam::111122223333:user/podid-server"

func setup(t *testing.T) (*awsemutest.Emulator, *sts.Assumer, func(name, trust string) string) {
	emu := awsemutest.Start(t, awsemu.Options{AccountID: identity.AccountID, Users: []awsemu.User{server}})
	admin := iam.NewFromConfig(emu.AdminConfig())
	createRole := func(name, policy string) string {
		out, err := admin.CreateRole(t.Context(), &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(policy)})
		if err != nil {
			t.Fatal(err)
		}
		return *out.Role.Arn
	}
	client := awssts.NewFromConfig(emu.Config(server.AccessKeyID, server.SecretAccessKey, ""))
	return emu, &sts.Assumer{Client: client, Identity: identity}, createRole
}

func TestAssumeWithSessionTags(t *testing.T) {
	emu, assumer, createRole := setup(t)
	role := createRole("app", awsemu.PodidTrust(serverARN))
	a := &association.Association{Namespace: "demo", ServiceAccount: "app", RoleARN: role, Policy: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`}
	res, err := assumer.Assume(t.Context(), a, pod)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := emu.Session(res.Credentials.AccessKeyID)
	if !ok {
		t.Fatal("the emulator has no such session")
	}
	want := map[string]string{
		podidentity.TagClusterARN: "arn:aws:eks:us-east-1:111122223333:cluster/sandbox", podidentity.TagClusterName: "sandbox",
		podidentity.TagNamespace: "demo", podidentity.TagServiceAccount: "app", podidentity.TagPodName: pod.Name, podidentity.TagPodUID: pod.UID,
	}
	for k, v := range want {
		if s.Tags[k] != v {
			t.Errorf("tag %s = %q, want %q", k, s.Tags[k], v)
		}
	}
	if len(s.Tags) != 6 || len(s.Transitive) != 6 || s.Policy != a.Policy || s.Caller != serverARN {
		t.Fatalf("session = %+v", s)
	}
	if !strings.HasPrefix(res.SessionName, "eks-sandbox-app-7d9f-x2-") || len(res.SessionName) != len("eks-sandbox-app-7d9f-x2-")+36 {
		t.Fatalf("session name = %q", res.SessionName)
	}
	if res.AssumedRoleID != s.AssumedRoleID || res.AssumedRoleARN != s.ARN || res.RoleARN != role {
		t.Fatalf("result = %+v", res)
	}
}

func TestAssumeTargetRoleWithExternalID(t *testing.T) {
	emu, assumer, createRole := setup(t)
	role := createRole("hop", awsemu.PodidTrust(serverARN))
	for _, disableTags := range []bool{false, true} {
		a := &association.Association{Namespace: "demo", ServiceAccount: "app", RoleARN: role, ExternalID: "6c0f3a52-0d0e-8c4b-9a53-1b2f3c4d5e6f", DisableSessionTags: disableTags}
		external := sts.ExternalID(identity, a)
		name := "target-tags"
		if disableTags {
			name = "target-no-tags"
			if external != "us-east-1/111122223333/sandbox/demo/app" {
				t.Fatalf("external id without tags = %q", external)
			}
		}
		target := createRole(name, awsemu.TrustPolicy(role, `["sts:AssumeRole","sts:TagSession"]`, `{"StringEquals":{"sts:ExternalId":"`+external+`"}}`))
		a.TargetRoleARN = target
		a.Policy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}`
		res, err := assumer.Assume(t.Context(), a, pod)
		if err != nil {
			t.Fatalf("disableSessionTags=%v: %v", disableTags, err)
		}
		s, _ := emu.Session(res.Credentials.AccessKeyID)
		if s.RoleARN != target || s.ExternalID != external || s.Policy != a.Policy || res.RoleARN != target {
			t.Fatalf("target session = %+v", s)
		}
		wantTags := 6
		if disableTags {
			wantTags = 0
		}
		if len(s.Tags) != wantTags {
			t.Fatalf("disableSessionTags=%v: target session tags = %v", disableTags, s.Tags)
		}
		if !strings.HasPrefix(s.Caller, "arn:aws:sts::111122223333:assumed-role/hop/") {
			t.Fatalf("target assumed by %s, want the first role's session", s.Caller)
		}
	}
}

func TestClassifiesFailures(t *testing.T) {
	emu, assumer, createRole := setup(t)
	untrusted := createRole("untrusted", awsemu.TrustPolicy("arn:aws:iam::111122223333:user/someone-else", `"sts:AssumeRole"`, ""))
	noTags := createRole("no-tag-session", awsemu.TrustPolicy(serverARN, `"sts:AssumeRole"`, ""))
	ok := createRole("ok", awsemu.PodidTrust(serverARN))
	cases := []struct {
		name   string
		a      association.Association
		before func()
		kind   sts.Kind
		msg    string
	}{
		{"trust policy does not name podid", association.Association{RoleARN: untrusted}, nil, sts.AccessDenied, "trust policy must allow"},
		{"trust policy lacks TagSession", association.Association{RoleARN: noTags}, nil, sts.AccessDenied, "sts:TagSession"},
		{"lacks TagSession but tags disabled", association.Association{RoleARN: noTags, DisableSessionTags: true}, nil, "", ""},
		{"throttled", association.Association{RoleARN: ok}, func() { emu.InjectFault("AssumeRole", "Throttling", 1) }, sts.Throttled, "throttling"},
		{"sts down", association.Association{RoleARN: ok}, func() { emu.InjectFault("AssumeRole", "ServiceUnavailable", 1) }, sts.Unavailable, "retry later"},
		{"packed policy too large", association.Association{RoleARN: ok, Policy: bigPolicy()}, nil, sts.Invalid, "disableSessionTags"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.before != nil {
				c.before()
			}
			a := c.a
			a.Namespace, a.ServiceAccount = "demo", "app"
			_, err := assumer.Assume(t.Context(), &a, pod)
			if c.kind == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var e *sts.Error
			if !errors.As(err, &e) || e.Kind != c.kind || !strings.Contains(e.Message, c.msg) {
				t.Fatalf("got %v, want kind %s with %q", err, c.kind, c.msg)
			}
		})
	}
	t.Run("no reachable sts", func(t *testing.T) {
		cfg := aws.Config{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1"), RetryMaxAttempts: 1, Credentials: aws.AnonymousCredentials{}}
		cfg.Credentials = emu.Config(server.AccessKeyID, server.SecretAccessKey, "").Credentials
		broken := &sts.Assumer{Client: awssts.NewFromConfig(cfg), Identity: identity}
		_, err := broken.Assume(t.Context(), &association.Association{RoleARN: ok}, pod)
		var e *sts.Error
		if !errors.As(err, &e) || e.Kind != sts.Unavailable {
			t.Fatalf("got %v, want Unavailable", err)
		}
	})
}

func bigPolicy() string {
	var b strings.Builder
	b.WriteString(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/`)
	seed := uint32(7)
	for b.Len() < 2030 {
		seed = seed*1664525 + 1013904223
		b.WriteByte("abcdefghijklmnopqrstuvwxyz0123456789"[(seed>>24)%36])
	}
	b.WriteString(`"}]}`)
	return b.String()
}

func TestSessionNameFitsSTS(t *testing.T) {
	long := strings.Repeat("p", 63)
	for _, c := range []struct{ cluster, pod string }{
		{"sandbox", "app"}, {"a-very-long-cluster-name-of-forty-chars!", long}, {strings.Repeat("c", 100), long},
	} {
		name := sts.SessionName(c.cluster, c.pod)
		if len(name) > 64 || !strings.HasPrefix(name, "eks-") {
			t.Errorf("SessionName(%d chars, %d chars) = %q (%d)", len(c.cluster), len(c.pod), name, len(name))
		}
		if again := sts.SessionName(c.cluster, c.pod); again == name {
			t.Errorf("two sessions got the same name %q", name)
		}
	}
}
