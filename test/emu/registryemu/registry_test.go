package registryemu_test

import (
	"encoding/base64"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/emu/awsemu/awsemutest"
	"github.com/podid/podid/test/emu/registryemu"
)

// An ECR login opens the repositories allow grants; for another it is
// denied with 403 and ECR's message naming the caller and the repository,
// which a client shows; no valid login is a 401 challenge.
func TestECRRegistryDenies(t *testing.T) {
	const account = "111122223333"
	emu := awsemutest.Start(t, awsemu.Options{AccountID: account})
	reg := registryemu.NewECRRegistry(emu.Emulator, account, func(_ awsemu.ECRToken, repo string) bool { return strings.HasPrefix(repo, "apps/") })
	reg.AdminPassword = "push"
	srv := httptest.NewServer(reg)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, repo := range []string{"apps/web", "private/web"} {
		if _, err := registryemu.Push(t.Context(), host+"/"+repo+":1", "admin", "push", true, nil); err != nil {
			t.Fatal(err)
		}
	}
	cfg := emu.AdminConfig()
	cfg.Region = "us-east-1"
	out, err := ecr.NewFromConfig(cfg).GetAuthorizationToken(t.Context(), &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		t.Fatal(err)
	}
	login, _ := base64.StdEncoding.DecodeString(*out.AuthorizationData[0].AuthorizationToken)
	password := strings.TrimPrefix(string(login), "AWS:")
	get := func(repo, password string) error {
		ref, err := name.ParseReference(host+"/"+repo+":1", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		_, err = remote.Get(ref, remote.WithAuth(&authn.Basic{Username: "AWS", Password: password}), remote.WithContext(t.Context()))
		return err
	}
	if err := get("apps/web", password); err != nil {
		t.Errorf("an allowed repository: %v", err)
	}
	err = get("private/web", password)
	if err == nil || !strings.Contains(err.Error(), "DENIED") || !strings.Contains(err.Error(), "user/admin is not authorized to perform: ecr:BatchGetImage on resource: arn:aws:ecr:us-east-1:111122223333:repository/private/web") {
		t.Errorf("a denied repository: %v", err)
	}
	if err := get("apps/web", "not-a-password"); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("no valid login: %v", err)
	}
	if reg.Admitted() == 0 || reg.Denied() != 1 || reg.Refused() == 0 {
		t.Errorf("admitted %d, denied %d, refused %d", reg.Admitted(), reg.Denied(), reg.Refused())
	}
}
