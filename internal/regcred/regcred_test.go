package regcred_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/podid/podid/internal/regcred"
	"github.com/podid/podid/internal/regcred/ecr"
	"github.com/podid/podid/internal/regcred/jfrog"
	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/emu/awsemu/awsemutest"
	"github.com/podid/podid/test/emu/registryemu"
)

const account = "111122223333"

// session creates a role (with a path) trusting the admin and returns
// credentials of a session of it.
func session(t *testing.T, emu *awsemutest.Emulator, path, name string, maxSession int32) (aws.CredentialsProvider, string) {
	t.Helper()
	admin := emu.AdminConfig()
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + account + `:user/admin"},"Action":"sts:AssumeRole"}]}`
	role, err := iam.NewFromConfig(admin).CreateRole(t.Context(), &iam.CreateRoleInput{RoleName: aws.String(name), Path: aws.String(path), AssumeRolePolicyDocument: aws.String(trust), MaxSessionDuration: aws.Int32(maxSession)})
	if err != nil {
		t.Fatal(err)
	}
	out, err := sts.NewFromConfig(admin).AssumeRole(t.Context(), &sts.AssumeRoleInput{RoleArn: role.Role.Arn, RoleSessionName: aws.String("rotator")})
	if err != nil {
		t.Fatal(err)
	}
	c := out.Credentials
	return credentials.NewStaticCredentialsProvider(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken), *role.Role.Arn
}

func TestJFrogPasswordlessExchange(t *testing.T) {
	emu := awsemutest.Start(t, awsemu.Options{AccountID: account})
	art := registryemu.NewArtifactory(emu.Endpoint, "admin-token")
	srv := httptest.NewTLSServer(art)
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")

	provider, roleARN := session(t, emu, "/team/registry/", "puller", 7200)
	art.MapRole(roleARN, "ci-puller")
	digest, err := registryemu.Push(t.Context(), host+"/docker-local/app:1", "admin", "admin-token", false, srv.Client().Transport)
	if err != nil {
		t.Fatal(err)
	}

	for _, region := range []string{"", "eu-west-1"} {
		t.Run("region="+region, func(t *testing.T) {
			x := &jfrog.Exchanger{URL: "https://" + host + "/", Subdomains: []string{"docker.example.com"}, Region: region, HTTPClient: srv.Client(), AWS: emu.AdminConfig()}
			before := time.Now()
			c, err := x.Exchange(t.Context(), provider)
			if err != nil {
				t.Fatal(err)
			}
			// The token lives as long as the role's MaxSessionDuration, found
			// through a role ARN with a path.
			if d := c.ExpiresAt.Sub(before); d < 7199*time.Second || d > 7201*time.Second {
				t.Errorf("token lifetime %s, want the role's 2h", d)
			}
			if len(c.Auths) != 2 || c.Auths[0].Host != host || c.Auths[1].Host != "docker.example.com" || c.Auths[0].Username != "ci-puller" {
				t.Fatalf("auths = %+v", c.Auths)
			}
			if !strings.Contains(c.Identity, ":assumed-role/puller/rotator") {
				t.Errorf("identity = %q", c.Identity)
			}
			got, err := registryemu.ManifestDigest(t.Context(), host+"/docker-local/app:1", c.Auths[0].Username, c.Auths[0].Password, false, srv.Client().Transport)
			if err != nil || got != digest {
				t.Fatalf("pull with the token: %s, %v (want %s)", got, err, digest)
			}
		})
	}

	t.Run("unmapped role", func(t *testing.T) {
		other, _ := session(t, emu, "/", "stranger", 3600)
		_, err := (&jfrog.Exchanger{URL: host, HTTPClient: srv.Client(), AWS: emu.AdminConfig()}).Exchange(t.Context(), other)
		var herr *jfrog.HTTPError
		if !errors.As(err, &herr) || herr.Status != 403 || !strings.Contains(herr.Message, "no JFrog user is mapped") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		c, _ := provider.Retrieve(t.Context())
		forged := credentials.NewStaticCredentialsProvider(c.AccessKeyID, "not-"+c.SecretAccessKey, c.SessionToken)
		_, err := (&jfrog.Exchanger{URL: host, HTTPClient: srv.Client(), AWS: emu.AdminConfig()}).Exchange(t.Context(), forged)
		var herr *jfrog.HTTPError
		if !errors.As(err, &herr) || herr.Status != 401 || !strings.Contains(herr.Message, "SignatureDoesNotMatch") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestECRExchange(t *testing.T) {
	emu := awsemutest.Start(t, awsemu.Options{AccountID: account})
	provider, _ := session(t, emu, "/", "ecr-puller", 3600)
	reg := registryemu.NewECRRegistry(emu.Emulator, account, nil)
	reg.AdminPassword = "push"
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	digest, err := registryemu.Push(t.Context(), host+"/app:1", "admin", "push", true, nil)
	if err != nil {
		t.Fatal(err)
	}

	x := &ecr.Exchanger{AWS: emu.AdminConfig(), Region: "eu-central-1", Identify: true}
	c, err := x.Exchange(t.Context(), provider)
	if err != nil {
		t.Fatal(err)
	}
	want := account + ".dkr.ecr.eu-central-1.amazonaws.com"
	if len(c.Auths) != 1 || c.Auths[0].Host != want || c.Auths[0].Username != "AWS" {
		t.Fatalf("auths = %+v, want one for %s", c.Auths, want)
	}
	if !strings.Contains(c.Identity, ":assumed-role/ecr-puller/") {
		t.Errorf("identity %q", c.Identity)
	}
	if d := time.Until(c.ExpiresAt); d < 11*time.Hour || d > 12*time.Hour {
		t.Errorf("expires in %s, want 12h", d)
	}
	got, err := registryemu.ManifestDigest(t.Context(), host+"/app:1", "AWS", c.Auths[0].Password, true, nil)
	if err != nil || got != digest {
		t.Fatalf("pull with the ECR password: %s, %v", got, err)
	}

	// The docker config is keyed by the registry host, as kubelets read it.
	var cfg struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	if err := json.Unmarshal(c.DockerConfigJSON(), &cfg); err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(cfg.Auths[want].Auth)
	if string(raw) != "AWS:"+c.Auths[0].Password {
		t.Fatalf("docker config auth for %s does not decode to the login", want)
	}
}

func TestRoleName(t *testing.T) {
	for in, want := range map[string]string{
		"arn:aws:sts::111122223333:assumed-role/puller/session": "puller",
		"arn:aws-cn:sts::111122223333:assumed-role/puller/s":    "puller",
		"arn:aws-us-gov:iam::111122223333:role/a/b/c/puller":    "puller",
		"arn:aws-iso-b:iam::111122223333:role/puller":           "puller",
		"arn:aws:iam::111122223333:user/alice":                  "",
		"arn:aws:sts::111122223333:federated-user/bob":          "",
		"not an arn": "",
		"arn:aws:sts::111122223333:assumed-role/": "",
	} {
		got, ok := jfrog.RoleName(in)
		if got != want || ok != (want != "") {
			t.Errorf("RoleName(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

var _ regcred.Exchanger = (*jfrog.Exchanger)(nil)
var _ regcred.Exchanger = (*ecr.Exchanger)(nil)

// The signed request goes to the Artifactory host and nowhere else: a
// redirect (here to an address inside the cluster) is not followed, and
// what a host that is not Artifactory answers is not echoed.
func TestJFrogExchangeGoesNowhereElse(t *testing.T) {
	emu := awsemutest.Start(t, awsemu.Options{AccountID: account})
	provider, _ := session(t, emu, "/", "reach", 3600)
	inside := 0
	internal := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { inside++ }))
	t.Cleanup(internal.Close)
	redirecting := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, internal.URL+"/admin", http.StatusFound)
	}))
	t.Cleanup(redirecting.Close)
	chatty := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte("<html>internal dashboard: db-password=hunter2</html>"))
	}))
	t.Cleanup(chatty.Close)

	for name, c := range map[string]struct {
		srv  *httptest.Server
		want string
	}{
		"redirect": {redirecting, "(HTTP 302): a redirect, which podid does not follow"},
		"html":     {chatty, "(HTTP 500): no JFrog error message (52 bytes of text/html)"},
	} {
		t.Run(name, func(t *testing.T) {
			x := &jfrog.Exchanger{URL: strings.TrimPrefix(c.srv.URL, "https://"), HTTPClient: c.srv.Client(), AWS: emu.AdminConfig()}
			_, err := x.Exchange(t.Context(), provider)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("err = %v, want %q and nothing of the body", err, c.want)
			}
		})
	}
	if inside != 0 {
		t.Errorf("the redirect was followed %d times", inside)
	}
}
