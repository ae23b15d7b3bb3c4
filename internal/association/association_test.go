package association

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func TestIDFor(t *testing.T) {
	seen := map[string]bool{}
	for i := range 10000 {
		id := IDFor(types.UID(fmt.Sprintf("3f1c9a2e-0000-4000-8000-%012d", i)))
		if !IsID(id) {
			t.Fatalf("IDFor gave %q, not a-+17 lowercase alphanumerics", id)
		}
		if seen[id] {
			t.Fatalf("IDFor gave %q twice", id)
		}
		seen[id] = true
	}
	if IDFor("same") != IDFor("same") {
		t.Error("IDFor is not stable")
	}
}

func TestExternalIDFor(t *testing.T) {
	got := ExternalIDFor("3f1c9a2e-0000-4000-8000-000000000001")
	if len(got) != 36 || strings.Count(got, "-") != 4 || got[14] != '8' {
		t.Errorf("ExternalIDFor = %q, want a version-8 UUID", got)
	}
	if got == ExternalIDFor("3f1c9a2e-0000-4000-8000-000000000002") {
		t.Error("two UIDs share an external ID")
	}
}

func TestIdentity(t *testing.T) {
	good := Identity{Partition: "aws", Region: "eu-west-1", AccountID: "111122223333", ClusterName: "prod-1"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := good.AssociationARN("a-0123456789abcdefg"), "arn:aws:eks:eu-west-1:111122223333:podidentityassociation/prod-1/a-0123456789abcdefg"; got != want {
		t.Errorf("AssociationARN = %s, want %s", got, want)
	}
	if got, want := good.ClusterARN(), "arn:aws:eks:eu-west-1:111122223333:cluster/prod-1"; got != want {
		t.Errorf("ClusterARN = %s, want %s", got, want)
	}
	for _, tc := range []struct {
		change func(*Identity)
		flag   string
	}{
		{func(i *Identity) { i.ClusterName = "" }, "--cluster-name"},
		{func(i *Identity) { i.ClusterName = "-x" }, "--cluster-name"},
		{func(i *Identity) { i.ClusterName = strings.Repeat("c", 101) }, "--cluster-name"},
		{func(i *Identity) { i.Region = "" }, "--region"},
		{func(i *Identity) { i.Region = "Europe" }, "--region"},
		{func(i *Identity) { i.AccountID = "1234" }, "--account-id"},
		{func(i *Identity) { i.Partition = "azure" }, "--partition"},
	} {
		id := good
		tc.change(&id)
		if err := id.Validate(); err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", id, err, tc.flag)
		}
	}
}

var policyCases = []struct {
	policy string
	want   string // a part of the error, or "" for valid
}{
	{"", ""},
	{`{}`, ""},
	{` {"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]} `, ""},
	{`[]`, "not a JSON array"},
	{`"policy"`, "not a JSON string"},
	{`null`, "not null"},
	{`{"a":1} {"b":2}`, "text after its JSON object"},
	{`{"a":1}x`, "text after its JSON object"},
	{`{"a":}`, "not valid JSON"},
	{`{`, "not valid JSON"},
	{"{\"Id\":\"" + strings.Repeat("x", 2048) + "\"}", "at most 2048"},
}

func TestValidatePolicy(t *testing.T) {
	for _, tc := range policyCases {
		err := ValidatePolicy(tc.policy)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ValidatePolicy(%.40q) = %v, want valid", tc.policy, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ValidatePolicy(%.40q) = %v, want an error saying %q", tc.policy, err, tc.want)
		}
	}
}

// Policies come from users and, later, from EKS API clients: whatever the
// input, ValidatePolicy must not panic, and what it accepts must be a JSON
// object within the limit.
func FuzzValidatePolicy(f *testing.F) {
	for _, tc := range policyCases {
		f.Add(tc.policy)
	}
	f.Fuzz(func(t *testing.T, policy string) {
		if ValidatePolicy(policy) != nil || policy == "" {
			return
		}
		s := strings.TrimSpace(policy)
		if len(policy) > MaxPolicyLength || !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
			t.Fatalf("accepted %q, which is not a JSON object within the limit", policy)
		}
	})
}
