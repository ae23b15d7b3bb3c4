package awsemu_test

import (
	"encoding/base64"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/podid/podid/internal/sigv4"
)

func TestECRGetAuthorizationToken(t *testing.T) {
	f := setup(t)
	roleARN := f.role(t, "puller", trust(allow("arn:aws:iam::"+account+":user/broker", `"sts:AssumeRole"`)), 3600)
	creds, err := f.sts.AssumeRole(t.Context(), &sts.AssumeRoleInput{RoleArn: aws.String(roleARN), RoleSessionName: aws.String("puller")})
	if err != nil {
		t.Fatal(err)
	}
	cfg := f.emu.Config(*creds.Credentials.AccessKeyId, *creds.Credentials.SecretAccessKey, *creds.Credentials.SessionToken)
	cfg.Region = "eu-west-1"
	client := ecr.NewFromConfig(cfg)

	out, err := client.GetAuthorizationToken(t.Context(), &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.AuthorizationData) != 1 {
		t.Fatalf("authorizationData = %+v", out.AuthorizationData)
	}
	d := out.AuthorizationData[0]
	if got, want := *d.ProxyEndpoint, "https://"+account+".dkr.ecr.eu-west-1.amazonaws.com"; got != want {
		t.Errorf("proxyEndpoint = %s, want %s", got, want)
	}
	if got, want := *d.ExpiresAt, f.clock.Now().Add(12*time.Hour); !got.Equal(want) {
		t.Errorf("expiresAt = %s, want %s", got, want)
	}
	raw, err := base64.StdEncoding.DecodeString(*d.AuthorizationToken)
	if err != nil {
		t.Fatal(err)
	}
	user, password, _ := strings.Cut(string(raw), ":")
	if user != "AWS" {
		t.Errorf("user = %q, want AWS", user)
	}
	tok, ok := f.emu.ECRAuthorization(password)
	if !ok || tok.RoleARN != roleARN || tok.Registry != account || tok.Region != "eu-west-1" {
		t.Fatalf("ECRAuthorization = %+v, %v", tok, ok)
	}
	if _, ok := f.emu.ECRAuthorization(password + "x"); ok {
		t.Error("a password it did not issue was accepted")
	}

	multi, err := client.GetAuthorizationToken(t.Context(), &ecr.GetAuthorizationTokenInput{RegistryIds: []string{"444455556666", account}})
	if err != nil {
		t.Fatal(err)
	}
	if len(multi.AuthorizationData) != 2 || !strings.HasPrefix(*multi.AuthorizationData[0].ProxyEndpoint, "https://444455556666.dkr.ecr.") {
		t.Fatalf("registryIds: %+v", multi.AuthorizationData)
	}
	if n := f.emu.ECRTokenCalls(); n != 2 {
		t.Errorf("ECRTokenCalls = %d, want 2", n)
	}

	_, err = client.GetAuthorizationToken(t.Context(), &ecr.GetAuthorizationTokenInput{RegistryIds: []string{"nope"}})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "InvalidParameterException" {
		t.Fatalf("bad registry id: %v", err)
	}

	f.clock.Add(12 * time.Hour)
	if _, ok := f.emu.ECRAuthorization(password); ok {
		t.Error("an expired password was accepted")
	}
}

// The passwordless Artifactory exchange replays a SigV4A-signed
// GetCallerIdentity, Host header and all, to STS.
func TestGetCallerIdentitySignedWithSigV4A(t *testing.T) {
	f := setup(t)
	call := func(creds sigv4.Credentials) (*http.Response, string) {
		r, err := http.NewRequest("GET", f.emu.Endpoint+"/?Action=GetCallerIdentity&Version=2011-06-15", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Host = "sts.amazonaws.com"
		if err := sigv4.SignV4A(r, creds, "sts", []string{"*"}, f.clock.Now(), ""); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	resp, body := call(sigv4.Credentials{AccessKeyID: broker.AccessKeyID, SecretAccessKey: broker.SecretAccessKey})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var out struct {
		Arn string `xml:"GetCallerIdentityResult>Arn"`
	}
	if err := xml.Unmarshal([]byte(body), &out); err != nil || out.Arn != "arn:aws:iam::"+account+":user/broker" {
		t.Fatalf("identity %q (%v) in %s", out.Arn, err, body)
	}
	resp, body = call(sigv4.Credentials{AccessKeyID: broker.AccessKeyID, SecretAccessKey: "not-the-secret"})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "SignatureDoesNotMatch") {
		t.Fatalf("wrong secret: status %d: %s", resp.StatusCode, body)
	}
}
