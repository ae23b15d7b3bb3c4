package serveridentity_test

import (
	"testing"

	"github.com/podid/podid/internal/serveridentity"
)

func TestPrincipalFor(t *testing.T) {
	for caller, want := range map[string]struct {
		principal   string
		pathUnknown bool
	}{
		"arn:aws:iam::111122223333:user/podid-server":                    {"arn:aws:iam::111122223333:user/podid-server", false},
		"arn:aws:iam::111122223333:user/ops/podid-server":                {"arn:aws:iam::111122223333:user/ops/podid-server", false},
		"arn:aws:sts::111122223333:assumed-role/podid-server/i-0abc":     {"arn:aws:iam::111122223333:role/podid-server", true},
		"arn:aws-cn:sts::111122223333:assumed-role/podid/botocore-12345": {"arn:aws-cn:iam::111122223333:role/podid", true},
		"arn:aws:iam::111122223333:root":                                 {"arn:aws:iam::111122223333:root", false},
		"arn:aws:sts::111122223333:federated-user/bob":                   {"", false},
	} {
		principal, pathUnknown, err := serveridentity.PrincipalFor(caller)
		if principal != want.principal || pathUnknown != want.pathUnknown || (want.principal == "") != (err != nil) {
			t.Errorf("PrincipalFor(%q) = %q, %v, %v", caller, principal, pathUnknown, err)
		}
	}
}
