package migrate

import (
	"strings"
	"testing"
)

func TestOIDCStatementsFor(t *testing.T) {
	stmt := func(sub string) string {
		return `{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/o"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"o:sub":` + sub + `}}}`
	}
	doc := `{"Version":"2012-10-17","Statement":[` + strings.Join([]string{
		stmt(`"system:serviceaccount:shop:billing"`),                                    // only billing: removed
		stmt(`["system:serviceaccount:shop:billing","system:serviceaccount:shop:web"]`), // shared: kept
		stmt(`"system:serviceaccount:shop:*"`),                                          // wildcard: kept
		stmt(`"system:serviceaccount:other:billing"`),                                   // another namespace: not ours
		`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/admin"},"Action":"sts:AssumeRole"}`,
	}, ",") + `]}`
	d, err := parseDocument(doc)
	if err != nil {
		t.Fatal(err)
	}
	only, shared := d.oidcStatementsFor("shop", "billing")
	if len(only) != 1 || only[0] != 0 || shared != 2 {
		t.Errorf("only %v, shared %d; want [0], 2", only, shared)
	}
}

func TestParseDocument(t *testing.T) {
	// A single statement object, as IAM accepts.
	d, err := parseDocument(`{"Version":"2012-10-17","Statement":{"Sid":"One","Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}}`)
	if err != nil || len(d.Statement) != 1 || !d.hasSid("One") || d.hasSid("Two") {
		t.Fatalf("single statement: %+v %v", d, err)
	}
	if _, err := parseDocument("{"); err == nil {
		t.Error("a broken document parsed")
	}
}
