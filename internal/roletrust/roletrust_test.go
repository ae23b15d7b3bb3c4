package roletrust

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/podid/podid/internal/iampolicy"
	"github.com/podid/podid/internal/iamrole"
	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/emu/awsemu/awsemutest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

const (
	account = "111122223333"
	server  = "arn:aws:iam::111122223333:role/podid/podid-server"
)

// guideTrust is the trust policy JFrog's EKS Pod Identity guide has its
// readers write (trust-pod-identity.json), as printed.
const guideTrust = `{ "Version": "2012-10-17", "Statement": [ { "Sid": "AllowEksAuthToAssumeRoleForPodIdentity", "Effect": "Allow", "Principal": { "Service": "pods.eks.amazonaws.com" }, "Action": [ "sts:AssumeRole", "sts:TagSession" ] } ] }`

var shop = iamrole.Association{Cluster: "onprem", Namespace: "shop", ServiceAccount: "billing"}

func target(roleARN string) Target {
	return Target{RoleARN: roleARN, Association: shop, ClusterARN: "arn:aws:eks:us-east-1:111122223333:cluster/onprem", Principal: server}
}

func eksStatement(condition string) string {
	s := `{"Effect":"Allow","Principal":{"Service":"pods.eks.amazonaws.com"},"Action":["sts:AssumeRole","sts:TagSession"]`
	if condition != "" {
		s += `,"Condition":` + condition
	}
	return s + "}"
}

func policy(statements ...string) string {
	return `{"Version":"2012-10-17","Statement":[` + strings.Join(statements, ",") + `]}`
}

func podidStatement(principal string) string {
	b, _ := json.Marshal(iamrole.TrustStatement(principal, shop))
	return string(b)
}

// Each role's trust as a guide or an administrator left it, and what
// planning podid's statement for shop/billing makes of it. The plans are
// in testdata/plans.golden.
func TestPlanTrust(t *testing.T) {
	emu := awsemutest.Start(t, awsemu.Options{AccountID: account})
	c := iam.NewFromConfig(emu.AdminConfig())
	var golden strings.Builder
	for _, tc := range []struct {
		name, path, trust string
		allowUnverified   bool
		refused           string // a Refusal containing this
	}{
		{name: "jfrog-guide", trust: guideTrust},
		{name: "with-path", path: "/team/eks/", trust: guideTrust},
		{name: "namespace-kept", trust: policy(eksStatement(`{"StringEquals":{"aws:RequestTag/kubernetes-namespace":"shop"}}`))},
		{name: "another-namespace", trust: policy(eksStatement(`{"StringEquals":{"aws:RequestTag/kubernetes-namespace":"payments"}}`)), refused: `StringEquals aws:RequestTag/kubernetes-namespace ["payments"]`},
		{name: "another-namespace-vouched", trust: policy(eksStatement(`{"StringEquals":{"aws:RequestTag/kubernetes-namespace":"payments"}}`)), allowUnverified: true},
		{name: "an-eks-cluster", trust: policy(eksStatement(`{"ArnEquals":{"aws:RequestTag/eks-cluster-arn":"arn:aws:eks:us-east-1:111122223333:cluster/prod"}}`)), refused: "eks-cluster-arn"},
		{name: "source-account", trust: policy(eksStatement(`{"StringEquals":{"aws:SourceAccount":"111122223333"}}`))},
		{name: "eks-denied", trust: policy(eksStatement(""), `{"Effect":"Deny","Principal":{"Service":"pods.eks.amazonaws.com"},"Action":"sts:TagSession"}`), refused: "denies sts:TagSession"},
		{name: "no-tag-session", trust: policy(`{"Effect":"Allow","Principal":{"Service":"pods.eks.amazonaws.com"},"Action":"sts:AssumeRole"}`), refused: "sts:TagSession"},
		{name: "irsa-only", trust: policy(`{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/C1"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"oidc.example.com/id/C1:sub":"system:serviceaccount:shop:billing"}}}`), refused: "does not admit EKS Pod Identity"},
		{name: "already-trusted", trust: policy(eksStatement(""), podidStatement(server))},
		{name: "old-principal", trust: policy(eksStatement(""), podidStatement("arn:aws:iam::111122223333:role/old-podid"))},
		{name: "sid-taken", trust: policy(eksStatement(""), `{"Sid":"`+iamrole.StatementID(shop)+`","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"sts:AssumeRole"}`), refused: "not podid's statement"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &iam.CreateRoleInput{RoleName: aws.String(tc.name), AssumeRolePolicyDocument: aws.String(tc.trust)}
			if tc.path != "" {
				in.Path = aws.String(tc.path)
			}
			role, err := c.CreateRole(t.Context(), in)
			if err != nil {
				t.Fatal(err)
			}
			arn := aws.ToString(role.Role.Arn)
			p, err := PlanTrust(t.Context(), c, target(arn), tc.allowUnverified)
			fmt.Fprintf(&golden, "== %s\n", tc.name)
			if tc.refused != "" {
				if !IsRefusal(err) || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("got %v; want a refusal containing %q", err, tc.refused)
				}
				fmt.Fprintf(&golden, "refused: %s\n", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range p.Lines {
				fmt.Fprintln(&golden, l)
			}
			writes := emu.IAMWrites()
			if err := Write(t.Context(), c, p); err != nil {
				t.Fatal(err)
			}
			if !p.Changes() && emu.IAMWrites() != writes {
				t.Errorf("a plan with nothing to do wrote to IAM")
			}
			if got := trustOf(t, c, tc.name); iampolicy.Canonical(json.RawMessage(got)) != iampolicy.Canonical(json.RawMessage(p.After)) {
				t.Errorf("trust after Write:\n%s\nplanned:\n%s", got, p.After)
			}
			// Planned again: podid's statement is there, once.
			again, err := PlanTrust(t.Context(), c, target(arn), tc.allowUnverified)
			if err != nil || again.Changes() {
				t.Errorf("planned again: changes=%v, %v", again != nil && again.Changes(), err)
			}
		})
	}
	checkGolden(t, "plans.golden", golden.String())
}

// Untrust after Trust gives the role its trust back, whatever the other
// statements were, and touches nothing that is not podid's.
func TestUntrustUndoesTrustExactly(t *testing.T) {
	emu := awsemutest.Start(t, awsemu.Options{AccountID: account})
	c := iam.NewFromConfig(emu.AdminConfig())
	ctx := t.Context()
	other := iamrole.Association{Cluster: "onprem", Namespace: "shop", ServiceAccount: "other"}
	otherStatement, _ := json.Marshal(iamrole.TrustStatement(server, other))
	before := policy(`{"Sid":"Ci","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/ci"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"x"}}}`,
		eksStatement(""), string(otherStatement))
	role, err := c.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("shared"), Path: aws.String("/apps/"), AssumeRolePolicyDocument: aws.String(before)})
	if err != nil {
		t.Fatal(err)
	}
	tg := target(aws.ToString(role.Role.Arn))
	p, err := PlanTrust(ctx, c, tg, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(ctx, c, p); err != nil {
		t.Fatal(err)
	}
	u, err := PlanUntrust(ctx, c, tg)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(ctx, c, u); err != nil {
		t.Fatal(err)
	}
	if got := trustOf(t, c, "shared"); iampolicy.Canonical(json.RawMessage(got)) != iampolicy.Canonical(json.RawMessage(before)) {
		t.Errorf("after trust and untrust:\n%s\nwant the trust before:\n%s", got, before)
	}
	// Nothing more to remove: another association's statement is not this one's.
	u, err = PlanUntrust(ctx, c, tg)
	if err != nil || u.Changes() {
		t.Errorf("untrust again: changes=%v, %v", u != nil && u.Changes(), err)
	}
	// A role named without its path is not the role.
	if _, err := PlanTrust(ctx, c, target("arn:aws:iam::111122223333:role/shared"), false); !IsRefusal(err) || !strings.Contains(err.Error(), "/apps/shared") {
		t.Errorf("role without its path: %v", err)
	}
	// Nor is another account's role of the same name.
	if _, err := PlanTrust(ctx, c, target("arn:aws:iam::444455556666:role/apps/shared"), false); !IsRefusal(err) || !strings.Contains(err.Error(), "run this with credentials of account 444455556666") {
		t.Errorf("another account's role: %v", err)
	}
}

// A change made to the role between the plan and the write is not written
// over.
func TestWriteRefusesATrustChangedSinceThePlan(t *testing.T) {
	emu := awsemutest.Start(t, awsemu.Options{AccountID: account})
	c := iam.NewFromConfig(emu.AdminConfig())
	ctx := t.Context()
	role, err := c.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("r"), AssumeRolePolicyDocument: aws.String(guideTrust)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := PlanTrust(ctx, c, target(aws.ToString(role.Role.Arn)), false)
	if err != nil {
		t.Fatal(err)
	}
	meanwhile := policy(eksStatement(""), `{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/ci"},"Action":"sts:AssumeRole"}`)
	if _, err := c.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String("r"), PolicyDocument: aws.String(meanwhile)}); err != nil {
		t.Fatal(err)
	}
	if err := Write(ctx, c, p); err == nil || !strings.Contains(err.Error(), "changed since it was read") {
		t.Fatalf("write over a changed trust: %v", err)
	}
	if got := trustOf(t, c, "r"); iampolicy.Canonical(json.RawMessage(got)) != iampolicy.Canonical(json.RawMessage(meanwhile)) {
		t.Errorf("trust is now %s", got)
	}
}

func trustOf(t *testing.T, c *iam.Client, name string) string {
	t.Helper()
	out, err := c.GetRole(t.Context(), &iam.GetRoleInput{RoleName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := iamrole.TrustDocument(aws.ToString(out.Role.AssumeRolePolicyDocument))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := "testdata/" + name
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs (go test -update rewrites it):\n%s", path, got)
	}
}
