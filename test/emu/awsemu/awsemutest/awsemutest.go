// Package awsemutest starts an awsemu emulator for a test and hands out
// aws-sdk-go-v2 configurations that reach it.
package awsemutest

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/podid/podid/test/emu/awsemu"
)

// Admin is the user every emulator started here holds.
var Admin = awsemu.User{Name: "admin", AccessKeyID: "AKIAPODIDEMUADMIN001", SecretAccessKey: "emulator-admin-secret"}

// Emulator is a running emulator.
type Emulator struct {
	*awsemu.Emulator
	// Endpoint is its base URL, for BaseEndpoint.
	Endpoint string
}

// Start runs an emulator on loopback until the test ends. opts.Users gets
// Admin added.
func Start(t testing.TB, opts awsemu.Options) *Emulator {
	t.Helper()
	opts.Users = append(opts.Users, Admin)
	e := awsemu.New(opts)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("emulator: %v", err)
		}
	})
	return &Emulator{Emulator: e, Endpoint: "http://" + l.Addr().String()}
}

// Config returns an SDK configuration signing with the given static
// credentials and sending every service to the emulator.
func (e *Emulator) Config(accessKeyID, secret, sessionToken string) aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(accessKeyID, secret, sessionToken),
		BaseEndpoint: aws.String(e.Endpoint),
		HTTPClient:   http.DefaultClient,
		// Tests want to see the first error, not the SDK's retries of it.
		RetryMaxAttempts: 1,
	}
}

// AdminConfig is Config for Admin.
func (e *Emulator) AdminConfig() aws.Config {
	return e.Config(Admin.AccessKeyID, Admin.SecretAccessKey, "")
}

// CredentialsEndpoint stands in for a node agent: it answers the container
// credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI) with a fresh
// session of roleARN, assumed with cfg, for requests whose Authorization is
// token ("" accepts any). Tests of Pod Identity consumers use it where the
// real agent and server are not the subject.
func CredentialsEndpoint(cfg aws.Config, roleARN, token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" && r.Header.Get("Authorization") != token {
			http.Error(w, `{"code":"AccessDenied","message":"wrong token"}`, http.StatusForbidden)
			return
		}
		out, err := sts.NewFromConfig(cfg).AssumeRole(r.Context(), &sts.AssumeRoleInput{RoleArn: aws.String(roleARN), RoleSessionName: aws.String("eks-pod-identity")})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		c := out.Credentials
		json.NewEncoder(w).Encode(map[string]string{"AccessKeyId": *c.AccessKeyId, "SecretAccessKey": *c.SecretAccessKey, "Token": *c.SessionToken, "Expiration": c.Expiration.UTC().Format(time.RFC3339)})
	})
}
