package iamrole_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/podid/podid/internal/iamrole"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// The trust policy of a role made for shop/billing in cluster prod.
func TestTrustPolicy(t *testing.T) {
	a := iamrole.Association{Cluster: "prod", Namespace: "shop", ServiceAccount: "billing"}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, []byte(iamrole.TrustPolicy("arn:aws:iam::111122223333:role/podid/podid-server", a)), "", "  "); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	golden := "testdata/trust.golden.json"
	if *update {
		os.WriteFile(golden, pretty.Bytes(), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./internal/iamrole -update writes it)", err)
	}
	if pretty.String() != string(want) {
		t.Errorf("trust policy differs from %s:\n%s", golden, pretty.String())
	}
	if iamrole.StatementID(a) == iamrole.StatementID(iamrole.Association{Cluster: "prod", Namespace: "shop", ServiceAccount: "billing2"}) {
		t.Error("two associations share a statement ID")
	}
}

func TestWellKnownARN(t *testing.T) {
	arn, err := iamrole.WellKnownARN("aws-cn", "ebsCSIController")
	if err != nil || arn != "arn:aws-cn:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy" {
		t.Errorf("ebsCSIController = %q, %v", arn, err)
	}
	if _, err := iamrole.WellKnownARN("aws", "autoScaler"); err == nil || !strings.Contains(err.Error(), "ebsCSIController, efsCSIController, imageBuilder") {
		t.Errorf("autoScaler: %v", err)
	}
}

func TestRoleName(t *testing.T) {
	for arn, want := range map[string]string{
		"arn:aws:iam::111122223333:role/app":          "app",
		"arn:aws:iam::111122223333:role/team/sub/app": "app",
		"arn:aws:iam::111122223333:user/app":          "",
	} {
		got, err := iamrole.RoleName(arn)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("RoleName(%q) = %q, %v", arn, got, err)
		}
	}
}
