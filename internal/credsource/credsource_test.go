package credsource_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/podid/podid/internal/credsource"
	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/emu/awsemu/awsemutest"
)

const account = "111122223333"

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestResolveRefusesWhatIsMissing(t *testing.T) {
	for name, c := range map[string]struct {
		spec credsource.Spec
		env  map[string]string
		want string
	}{
		"podIdentity without its variables": {credsource.Spec{AuthType: credsource.PodIdentity}, nil, "no PodIdentityAssociation matched"},
		"podIdentity half set":              {credsource.Spec{AuthType: credsource.PodIdentity}, map[string]string{podidentity.EnvCredentialsFullURI: "http://169.254.170.23/v1/credentials"}, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE is not"},
		"podIdentity never uses IRSA":       {credsource.Spec{AuthType: credsource.PodIdentity}, map[string]string{podidentity.EnvRoleARN: "arn:aws:iam::111122223333:role/r", podidentity.EnvWebIdentityTokenFile: "/t"}, "no PodIdentityAssociation matched"},
		"webIdentity without its variables": {credsource.Spec{AuthType: credsource.WebIdentity}, nil, "AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE are not set"},
		"webIdentity half set":              {credsource.Spec{AuthType: credsource.WebIdentity}, map[string]string{podidentity.EnvRoleARN: "arn:aws:iam::111122223333:role/r"}, "only one is set"},
		"auto with nothing":                 {credsource.Spec{}, nil, "authType auto found neither Pod Identity"},
		"unknown authType":                  {credsource.Spec{AuthType: "static"}, nil, `authType "static" is not one of`},
		"hop without a role":                {credsource.Spec{AuthType: credsource.WebIdentity, Chain: []credsource.Hop{{}}}, map[string]string{podidentity.EnvRoleARN: "arn:aws:iam::111122223333:role/r", podidentity.EnvWebIdentityTokenFile: "/t"}, "assumeRoleChain[0] has no roleARN"},
		"serviceAccount without a client":   {credsource.Spec{AuthType: credsource.WebIdentity, ServiceAccount: &credsource.ServiceAccountRef{Namespace: "a", Name: "b"}}, nil, "no Kubernetes client"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := (&credsource.Resolver{Getenv: env(c.env)}).Resolve(t.Context(), c.spec)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to say %q", err, c.want)
			}
		})
	}
}

type fixture struct {
	emu  *awsemutest.Emulator
	base aws.Config
	dir  string
}

func setup(t *testing.T) *fixture {
	emu := awsemutest.Start(t, awsemu.Options{AccountID: account})
	base := emu.AdminConfig()
	base.Credentials = nil
	return &fixture{emu: emu, base: base, dir: t.TempDir()}
}

func (f *fixture) role(t *testing.T, name, trust string) string {
	out, err := iam.NewFromConfig(f.emu.AdminConfig()).CreateRole(t.Context(), &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(trust)})
	if err != nil {
		t.Fatal(err)
	}
	return *out.Role.Arn
}

// agent stands in for the node agent: the container credentials endpoint,
// answering with a session of roleARN for the token in the file only.
func (f *fixture) agent(t *testing.T, roleARN, token string) string {
	srv := httptest.NewServer(awsemutest.CredentialsEndpoint(f.emu.AdminConfig(), roleARN, token))
	t.Cleanup(srv.Close)
	return srv.URL + "/v1/credentials"
}

func (f *fixture) identity(t *testing.T, p aws.CredentialsProvider) string {
	cfg := f.base.Copy()
	cfg.Credentials = p
	out, err := sts.NewFromConfig(cfg).GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	return *out.Arn
}

func TestPodIdentityThenAChain(t *testing.T) {
	f := setup(t)
	podRole := f.role(t, "pod-role", awsemu.TrustPolicy("arn:aws:iam::"+account+":user/admin", `"sts:AssumeRole"`, ""))
	target := f.role(t, "target", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"`+podRole+`"},"Action":["sts:AssumeRole","sts:TagSession"],"Condition":{"StringEquals":{"sts:ExternalId":"ext-1"}}}]}`)
	tokenPath := filepath.Join(f.dir, "token")
	os.WriteFile(tokenPath, []byte("pod-token\n"), 0o600)
	uri := f.agent(t, podRole, "pod-token")

	// Auto picks Pod Identity when its variables are there, even beside IRSA's.
	r := &credsource.Resolver{AWS: f.base, Getenv: env(map[string]string{podidentity.EnvCredentialsFullURI: uri, podidentity.EnvAuthorizationTokenFile: tokenPath, podidentity.EnvRoleARN: "arn:aws:iam::111122223333:role/irsa", podidentity.EnvWebIdentityTokenFile: "/nope"})}
	src, err := r.Resolve(t.Context(), credsource.Spec{Chain: []credsource.Hop{{RoleARN: target, ExternalID: "ext-1", SessionName: "rotator", Tags: map[string]string{"team": "registry"}, TransitiveTagKeys: []string{"team"}, Duration: 20 * time.Minute}}})
	if err != nil {
		t.Fatal(err)
	}
	if src.Mechanism != credsource.PodIdentity || len(src.Roles) != 1 || src.Roles[0] != target {
		t.Fatalf("source = %+v", src)
	}
	if got, want := f.identity(t, src.Provider), "arn:aws:sts::"+account+":assumed-role/target/rotator"; got != want {
		t.Fatalf("identity %s, want %s", got, want)
	}
	creds, _ := src.Provider.Retrieve(t.Context())
	s, _ := f.emu.Session(creds.AccessKeyID)
	if s.Tags["team"] != "registry" || s.ExternalID != "ext-1" || s.Duration != 20*time.Minute || len(s.Transitive) != 1 {
		t.Fatalf("the hop's session = %+v", s)
	}

	// A wrong external ID is AWS's refusal, surfaced, not another identity.
	src, _ = r.Resolve(t.Context(), credsource.Spec{AuthType: credsource.PodIdentity, Chain: []credsource.Hop{{RoleARN: target, ExternalID: "wrong"}}})
	if _, err := src.Provider.Retrieve(t.Context()); err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("wrong external ID: %v", err)
	}
}

func TestWebIdentityFromIRSAVariables(t *testing.T) {
	f := setup(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const issuer = "https://oidc.example.com/cluster"
	f.emu.AddOIDCProvider(awsemu.OIDCProvider{Issuer: issuer, Keys: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k", Algorithm: "ES256"}}}})
	irsa := f.role(t, "irsa", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::`+account+`:oidc-provider/oidc.example.com/cluster"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"oidc.example.com/cluster:sub":"system:serviceaccount:ops:rotator"}}}]}`)
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k"))
	tok, _ := jwt.Signed(signer).Claims(jwt.Claims{Issuer: issuer, Subject: "system:serviceaccount:ops:rotator", Audience: jwt.Audience{"sts.amazonaws.com"}, Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}).Serialize()
	path := filepath.Join(f.dir, "irsa-token")
	os.WriteFile(path, []byte(tok), 0o600)

	r := &credsource.Resolver{AWS: f.base, Getenv: env(map[string]string{podidentity.EnvRoleARN: irsa, podidentity.EnvWebIdentityTokenFile: path})}
	src, err := r.Resolve(t.Context(), credsource.Spec{AuthType: credsource.Auto})
	if err != nil {
		t.Fatal(err)
	}
	if src.Mechanism != credsource.WebIdentity {
		t.Fatalf("mechanism = %s", src.Mechanism)
	}
	if got := f.identity(t, src.Provider); !strings.HasPrefix(got, "arn:aws:sts::"+account+":assumed-role/irsa/podid-") {
		t.Fatalf("identity %s", got)
	}
}
