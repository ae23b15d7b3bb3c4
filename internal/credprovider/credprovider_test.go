package credprovider_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/podid/podid/internal/credprovider"
	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/emu/awsemu/awsemutest"
	"github.com/podid/podid/test/emu/registryemu"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

const account = "111122223333"

type fixture struct {
	emu    *awsemutest.Emulator
	cfg    credprovider.Config
	art    *registryemu.Artifactory
	artURL string
}

// setup: the emulator on a clock the plugin shares, and a stand-in for the
// node agent that knows one pod (token pod-a-token, role puller) and
// answers any other token as podid's agent does for a pod without an
// association.
func setup(t testing.TB) *fixture {
	now := time.Now().UTC().Truncate(time.Second)
	clock := func() time.Time { return now }
	emu := awsemutest.Start(t, awsemu.Options{AccountID: account, Now: clock})
	role, err := iam.NewFromConfig(emu.AdminConfig()).CreateRole(t.Context(), &iam.CreateRoleInput{RoleName: aws.String("puller"),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + account + `:user/admin"},"Action":"sts:AssumeRole"}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	known := awsemutest.CredentialsEndpoint(emu.AdminConfig(), *role.Role.Arn, "pod-a-token")
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "untrusted-role-token" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"code":"AccessDenied","message":"User: arn:aws:iam::111122223333:user/podid is not authorized to perform: sts:TagSession on resource: arn:aws:iam::111122223333:role/app"}`))
			return
		}
		if r.Header.Get("Authorization") != "pod-a-token" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			// As podid agent (and EKS's) answers: EKS Auth's error name.
			w.Write([]byte(`{"code":"ResourceNotFound","message":"No Pod Identity association found for namespace apps and service account nobody."}`))
			return
		}
		known.ServeHTTP(w, r)
	}))
	t.Cleanup(agent.Close)
	art := registryemu.NewArtifactory(emu.Endpoint, "admin")
	art.MapRole(*role.Role.Arn, "puller")
	artSrv := httptest.NewTLSServer(art)
	t.Cleanup(artSrv.Close)
	base := emu.AdminConfig()
	base.Credentials = nil
	base.HTTPClient = artSrv.Client()
	artHost := strings.TrimPrefix(artSrv.URL, "https://")
	return &fixture{emu: emu, art: art, artURL: artHost,
		cfg: credprovider.Config{AgentURL: agent.URL + "/v1/credentials", JFrogHosts: []string{artHost}, AWS: base, Timeout: 10 * time.Second, Now: clock}}
}

func run(t *testing.T, cfg credprovider.Config, request string) (map[string]any, error) {
	var out bytes.Buffer
	if err := credprovider.Run(t.Context(), cfg, strings.NewReader(request), &out); err != nil {
		return nil, err
	}
	var resp map[string]any
	if err := json.Unmarshal(out.Bytes(), &resp); err != nil {
		t.Fatalf("the response is not JSON: %v: %s", err, out.String())
	}
	return resp, nil
}

// The ECR answer, golden except for the password, which must open the
// registry the image names.
func TestECRAnswer(t *testing.T) {
	f := setup(t)
	req, err := os.ReadFile("testdata/ecr.request.json")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := run(t, f.cfg, string(req))
	if err != nil {
		t.Fatal(err)
	}
	auth := resp["auth"].(map[string]any)["111122223333.dkr.ecr.eu-west-1.amazonaws.com"].(map[string]any)
	password := auth["password"].(string)
	if tok, ok := f.emu.ECRAuthorization(password); !ok || !strings.HasSuffix(tok.RoleARN, ":role/puller") || tok.Region != "eu-west-1" {
		t.Fatalf("the password is not an ECR token of the pod's role: %+v %v", tok, ok)
	}
	auth["password"] = "<ECR password>"
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	enc.Encode(resp)
	got := bytes.TrimSpace(buf.Bytes())
	golden := "testdata/ecr.response.golden"
	if *update {
		os.WriteFile(golden, append(got, '\n'), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./internal/credprovider -update writes it)", err)
	}
	if string(want) != string(got)+"\n" {
		t.Errorf("response differs from %s:\n%s", golden, got)
	}
	if n := f.emu.ECRTokenCalls(); n != 1 {
		t.Errorf("%d GetAuthorizationToken calls, want 1", n)
	}
}

func TestJFrogAnswer(t *testing.T) {
	f := setup(t)
	resp, err := run(t, f.cfg, `{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"`+f.artURL+`/docker-local/app:1","serviceAccountToken":"pod-a-token"}`)
	if err != nil {
		t.Fatal(err)
	}
	auth := resp["auth"].(map[string]any)[f.artURL].(map[string]any)
	if tok, ok := f.art.Token(auth["password"].(string)); !ok || auth["username"] != "puller" || tok.Username != "puller" {
		t.Fatalf("auth %v is not a token of the pod's role's JFrog user", auth)
	}
	// Artifactory's token lives as long as the role's MaxSessionDuration
	// (1 h): the kubelet may keep it for half of that.
	if resp["cacheDuration"] != "30m0s" || resp["cacheKeyType"] != "Registry" {
		t.Errorf("cacheDuration %v, cacheKeyType %v", resp["cacheDuration"], resp["cacheKeyType"])
	}
}

// Short errors, on stderr through the kubelet into the pod's events, and
// never another identity.
func TestRefusals(t *testing.T) {
	f := setup(t)
	req := func(image, token string) string {
		return `{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"` + image + `","serviceAccountToken":"` + token + `"}`
	}
	ecrImage := "111122223333.dkr.ecr.eu-west-1.amazonaws.com/app:1"
	for name, c := range map[string]struct{ request, want string }{
		"no association":    {req(ecrImage, "other-pod-token"), "no PodIdentityAssociation for this pod's ServiceAccount, so its images cannot be pulled with its role: No Pod Identity association found for namespace apps and service account nobody."},
		"role not trusting": {req(ecrImage, "untrusted-role-token"), "podid could not assume the role of this pod's association (check the role's trust policy): User: arn:aws:iam::111122223333:user/podid is not authorized to perform: sts:TagSession"},
		"no token":          {req(ecrImage, ""), "the kubelet sent no ServiceAccount token: set tokenAttributes"},
		"unknown registry":  {req("docker.io/library/busybox:1", "pod-a-token"), "registry index.docker.io is neither an ECR registry nor one of the Artifactory hosts"},
		"wrong kind":        {`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1beta1","kind":"CredentialProviderRequest","image":"x"}`, "this plugin speaks credentialprovider.kubelet.k8s.io/v1"},
		"no image":          {req("", "pod-a-token"), "the request names no image"},
		"not JSON":          {"{", "the request is not JSON"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := run(t, f.cfg, c.request)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
	if n := f.emu.ECRTokenCalls(); n != 0 {
		t.Errorf("a refused request reached ECR %d times", n)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	seed, _ := os.ReadFile("testdata/ecr.request.json")
	f.Add(seed)
	f.Add([]byte(`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := credprovider.DecodeRequest(bytes.NewReader(data))
		if err != nil {
			return
		}
		if req.Kind != "CredentialProviderRequest" || req.APIVersion != "credentialprovider.kubelet.k8s.io/v1" || req.Image == "" {
			t.Fatalf("accepted %+v", req)
		}
	})
}

// BenchmarkAnswer is one answer in process, without starting the binary:
// the pod's credentials from the stand-in agent, then ECR.
func BenchmarkAnswer(b *testing.B) {
	f := setup(b)
	req, err := credprovider.DecodeRequest(strings.NewReader(`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"111122223333.dkr.ecr.eu-west-1.amazonaws.com/app:1","serviceAccountToken":"pod-a-token"}`))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := credprovider.Answer(b.Context(), f.cfg, req); err != nil {
			b.Fatal(err)
		}
	}
}
