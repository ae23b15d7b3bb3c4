package exchangers

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/podid/podid/internal/regcred/ecr"
	"github.com/podid/podid/internal/regcred/jfrog"
)

// The credential provider's choice by host: an ECR host names its account
// and region, an Artifactory host must be configured, anything else is
// refused with what to check.
func TestForHost(t *testing.T) {
	base := Spec{AWS: aws.Config{Region: "us-east-1"}}
	for _, tc := range []struct {
		host, want string
	}{
		{"111122223333.dkr.ecr.us-east-1.amazonaws.com", "ecr 111122223333 us-east-1"},
		{"111122223333.dkr-ecr.eu-west-1.amazonaws.com", "ecr 111122223333 eu-west-1"},
		{"111122223333.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "ecr 111122223333 us-gov-west-1"},
		{"111122223333.dkr.ecr.cn-north-1.amazonaws.com.cn", "ecr 111122223333 cn-north-1"},
		{"artifactory.example.com", "jfrog artifactory.example.com"},
		{"11112222333.dkr.ecr.us-east-1.amazonaws.com", "error"},
		{"111122223333.dkr.ecr.us-east-1.amazonaws.com.evil", "error"},
		{"public.ecr.aws", "error"},
		{"docker.io", "error"},
	} {
		x, err := ForHost(tc.host, []string{"artifactory.example.com"}, base)
		got := "error"
		switch x := x.(type) {
		case *ecr.Exchanger:
			if x.AWS.Region != x.Region {
				t.Errorf("%s: the SDK's region %s is not the registry's %s", tc.host, x.AWS.Region, x.Region)
			}
			got = "ecr " + strings.Join(x.RegistryIDs, ",") + " " + x.Region
		case *jfrog.Exchanger:
			got = "jfrog " + x.URL
		}
		if got != tc.want {
			t.Errorf("ForHost(%q) = %q (%v), want %q", tc.host, got, err, tc.want)
		}
		if got == "error" && (err == nil || !strings.Contains(err.Error(), "matchImages")) {
			t.Errorf("ForHost(%q): error %v does not say what to check", tc.host, err)
		}
	}
	if base.AWS.Region != "us-east-1" {
		t.Errorf("ForHost changed the caller's configuration: region %s", base.AWS.Region)
	}
}

// The SecretRotator's choice by name: every registered kind builds its own
// exchanger, and an unknown one names those that exist.
func TestNamed(t *testing.T) {
	for _, name := range Names() {
		x, err := Named(name, Spec{})
		if err != nil {
			t.Fatal(err)
		}
		if x.Provider() != name {
			t.Errorf("Named(%q) built a %s exchanger", name, x.Provider())
		}
	}
	if _, err := Named("quay", Spec{}); err == nil || !strings.Contains(err.Error(), "ecr") {
		t.Errorf("Named(quay) = %v, want an error naming the kinds", err)
	}
}
