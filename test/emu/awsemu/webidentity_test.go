package awsemu_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/podid/podid/test/emu/awsemu"
)

type staticToken string

func (s staticToken) GetIdentityToken() ([]byte, error) { return []byte(s), nil }

func TestAssumeRoleWithWebIdentity(t *testing.T) {
	f := setup(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const issuer = "https://kubernetes.default.svc"
	f.emu.AddOIDCProvider(awsemu.OIDCProvider{Issuer: issuer, Keys: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}}})
	provider := "arn:aws:iam::" + account + ":oidc-provider/kubernetes.default.svc"
	roleARN := f.role(t, "irsa", trust(`{"Effect":"Allow","Principal":{"Federated":"`+provider+`"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"kubernetes.default.svc:sub":"system:serviceaccount:apps:rotator","kubernetes.default.svc:aud":"sts.amazonaws.com"}}}`), 3600)

	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	token := func(sub string, exp time.Time) string {
		s, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: issuer, Subject: sub, Audience: jwt.Audience{"sts.amazonaws.com"}, Expiry: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(f.clock.Now())}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	client := sts.NewFromConfig(aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(f.emu.Endpoint), RetryMaxAttempts: 1})
	assume := func(tok string) (aws.Credentials, error) {
		return stscreds.NewWebIdentityRoleProvider(client, roleARN, staticToken(tok), func(o *stscreds.WebIdentityRoleOptions) { o.RoleSessionName = "rotator" }).Retrieve(t.Context())
	}

	creds, err := assume(token("system:serviceaccount:apps:rotator", f.clock.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	s, ok := f.emu.Session(creds.AccessKeyID)
	if !ok || s.RoleARN != roleARN || s.Caller != provider {
		t.Fatalf("session = %+v", s)
	}
	for name, c := range map[string]struct{ tok, code string }{
		"another ServiceAccount": {token("system:serviceaccount:apps:other", f.clock.Now().Add(time.Hour)), "AccessDenied"},
		"expired":                {token("system:serviceaccount:apps:rotator", f.clock.Now().Add(-time.Minute)), "ExpiredTokenException"},
		"not a JWT":              {"not-a-token", "InvalidIdentityToken"},
	} {
		_, err := assume(c.tok)
		var apiErr smithy.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode() != c.code {
			t.Errorf("%s: err = %v, want %s", name, err, c.code)
		}
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forger, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: other}, nil)
	forged, _ := jwt.Signed(forger).Claims(jwt.Claims{Issuer: issuer, Subject: "system:serviceaccount:apps:rotator", Audience: jwt.Audience{"sts.amazonaws.com"}, Expiry: jwt.NewNumericDate(f.clock.Now().Add(time.Hour))}).Serialize()
	if _, err := assume(forged); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("forged token: %v", err)
	}
}
