package migrate

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/podid/podid/internal/iampolicy"
)

const (
	issuer   = Issuer("oidc.example.com/id/c1")
	roleARN  = "arn:aws:iam::111122223333:role/irsa/app"
	provider = "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/c1"
)

// oidc is an IRSA statement of provider p whose sub condition is sub (a
// JSON value) under op.
func oidc(p, op, sub string) string {
	return `{"Effect":"Allow","Principal":{"Federated":"` + p + `"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"` + op + `":{"oidc.example.com/id/c1:sub":` + sub + `,"oidc.example.com/id/c1:aud":"sts.amazonaws.com"}}}`
}

func TestOIDCStatementsFor(t *testing.T) {
	doc := `{"Version":"2012-10-17","Statement":[` + strings.Join([]string{
		oidc(provider, "StringEquals", `"system:serviceaccount:shop:billing"`),                                          // only billing: removed
		oidc(provider, "StringEquals", `["system:serviceaccount:shop:billing","system:serviceaccount:shop:web"]`),       // shared: kept
		oidc(provider, "StringLike", `"system:serviceaccount:shop:*"`),                                                  // wildcard: kept
		oidc(provider, "StringEquals", `"system:serviceaccount:other:billing"`),                                         // another namespace: not ours
		oidc("arn:aws:iam::111122223333:oidc-provider/another", "StringEquals", `"system:serviceaccount:shop:billing"`), // another cluster: not ours
		`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/admin"},"Action":"sts:AssumeRole"}`,
	}, ",") + `]}`
	d, err := iampolicy.ParseDocument(doc)
	if err != nil {
		t.Fatal(err)
	}
	only, shared := oidcStatementsFor(d, issuer, roleARN, "shop", "billing")
	if len(only) != 1 || only[0] != 0 || shared != 2 {
		t.Errorf("only %v, shared %d; want [0], 2", only, shared)
	}
}

// Only a statement that admits exactly this ServiceAccount through this
// cluster's provider, and nothing else, is this ServiceAccount's OIDC
// statement: what rollback may put back, whatever a record says.
func TestIsOIDCStatementFor(t *testing.T) {
	for _, c := range []struct {
		name, stmt string
		want       bool
	}{
		{"exact", oidc(provider, "StringEquals", `"system:serviceaccount:shop:app"`), true},
		{"StringLike without a wildcard", oidc(provider, "StringLike", `"system:serviceaccount:shop:app"`), true},
		{"a wildcard", oidc(provider, "StringLike", `"system:serviceaccount:shop:*"`), false},
		{"a list", oidc(provider, "StringEquals", `["system:serviceaccount:shop:app","system:serviceaccount:shop:x"]`), false},
		{"a negation", oidc(provider, "StringNotEquals", `"system:serviceaccount:shop:other"`), false},
		{"another ServiceAccount", oidc(provider, "StringEquals", `"system:serviceaccount:shop:other"`), false},
		{"another provider", oidc("arn:aws:iam::444455556666:oidc-provider/oidc.example.com/id/c1", "StringEquals", `"system:serviceaccount:shop:app"`), false},
		{"no sub condition", `{"Effect":"Allow","Principal":{"Federated":"` + provider + `"},"Action":"sts:AssumeRoleWithWebIdentity"}`, false},
		{"another principal too", `{"Effect":"Allow","Principal":{"Federated":"` + provider + `","AWS":"arn:aws:iam::444455556666:root"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"oidc.example.com/id/c1:sub":"system:serviceaccount:shop:app"}}}`, false},
		{"another action too", `{"Effect":"Allow","Principal":{"Federated":"` + provider + `"},"Action":["sts:AssumeRoleWithWebIdentity","sts:AssumeRole"],"Condition":{"StringEquals":{"oidc.example.com/id/c1:sub":"system:serviceaccount:shop:app"}}}`, false},
		{"NotAction", `{"Effect":"Allow","Principal":{"Federated":"` + provider + `"},"NotAction":"iam:*","Condition":{"StringEquals":{"oidc.example.com/id/c1:sub":"system:serviceaccount:shop:app"}}}`, false},
		{"Deny", `{"Effect":"Deny","Principal":{"Federated":"` + provider + `"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"oidc.example.com/id/c1:sub":"system:serviceaccount:shop:app"}}}`, false},
		{"another account's root", `{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"sts:AssumeRole"}`, false},
		{"not JSON", `{`, false},
	} {
		if got := issuer.isOIDCStatementFor(json.RawMessage(c.stmt), roleARN, "shop", "app"); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// A role is migrated only when its trust admits the ServiceAccount
// through IRSA, with a condition on the subject.
func TestAdmits(t *testing.T) {
	doc := func(stmts ...string) string { return `{"Statement":[` + strings.Join(stmts, ",") + `]}` }
	for _, c := range []struct {
		name, doc, why string
	}{
		{"exact", doc(oidc(provider, "StringEquals", `"system:serviceaccount:shop:app"`)), ""},
		{"pattern", doc(oidc(provider, "StringLike", `"system:serviceaccount:shop:*"`)), ""},
		{"another ServiceAccount", doc(oidc(provider, "StringEquals", `"system:serviceaccount:shop:other"`)), "does not admit system:serviceaccount:shop:app"},
		{"another cluster's provider", doc(oidc("arn:aws:iam::111122223333:oidc-provider/other", "StringEquals", `"system:serviceaccount:shop:app"`)), "does not admit"},
		{"no subject condition", doc(`{"Effect":"Allow","Principal":{"Federated":"` + provider + `"},"Action":"sts:AssumeRoleWithWebIdentity"}`), "admits every ServiceAccount of the cluster"},
		{"an admin role", doc(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole"}`), "does not admit"},
		{"a condition on another token key", doc(`{"Effect":"Allow","Principal":{"Federated":"` + provider + `"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"oidc.example.com/id/c1:sub":"system:serviceaccount:shop:app","oidc.example.com/id/c1:email":"x"}}}`), "is not met"},
		{"denied", doc(oidc(provider, "StringEquals", `"system:serviceaccount:shop:app"`), `{"Effect":"Deny","Principal":"*","Action":"*"}`), "denies"},
	} {
		sid, why := issuer.admits(c.doc, roleARN, "shop", "app")
		if c.why == "" && (why != "" || sid == "") || c.why != "" && !strings.Contains(why, c.why) {
			t.Errorf("%s: sid %q, why %q; want why containing %q", c.name, sid, why, c.why)
		}
	}
}

func TestIssuerFromURL(t *testing.T) {
	for in, want := range map[string]string{"https://OIDC.example.com/id/c1/": "oidc.example.com/id/c1", "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE": "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE", "https://kubernetes.default.svc": "kubernetes.default.svc", "http://x": "", "x": "", "https://": ""} {
		got, err := IssuerFromURL(in)
		if string(got) != want || (want == "") != (err != nil) {
			t.Errorf("IssuerFromURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestParseDocument(t *testing.T) {
	// A single statement object, as IAM accepts.
	d, err := iampolicy.ParseDocument(`{"Version":"2012-10-17","Statement":{"Sid":"One","Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}}`)
	if err != nil || len(d.Statement) != 1 || !d.HasSid("One") || d.HasSid("Two") {
		t.Fatalf("single statement: %+v %v", d, err)
	}
	if _, err := iampolicy.ParseDocument("{"); err == nil {
		t.Error("a broken document parsed")
	}
}
