package iampolicy

import (
	"strings"
	"testing"
)

const server = "arn:aws:iam::111122223333:role/podid-server"

// podidRequest is podid server's AssumeRole or TagSession for a pod of ns, as
// doctor evaluates it.
func podidRequest(action string, ctx map[string][]string) Request {
	return Request{Principal: server, Action: action, Context: ctx, Complete: func(k string) bool {
		return strings.HasPrefix(k, "aws:requesttag/") || k == "sts:externalid" || k == "aws:principalarn" || k == "aws:tagkeys"
	}}
}

const provider = "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/c1"

// irsaRequest is ns/sa's IRSA token presented to STS.
func irsaRequest(ns, sa string) Request {
	return Request{Principal: provider, Federated: true, Action: "sts:AssumeRoleWithWebIdentity", Context: map[string][]string{
		"oidc.example.com/id/c1:sub": {"system:serviceaccount:" + ns + ":" + sa}, "oidc.example.com/id/c1:aud": {"sts.amazonaws.com"}}}
}

// A federated principal is named only under Principal.Federated, and its
// conditions are evaluated on the token's keys.
func TestFederatedTrust(t *testing.T) {
	for _, c := range []struct {
		name, policy string
		allowed      bool
		refusal      string
	}{
		{"exact subject", `{"Statement":[{"Effect":"Allow","Principal":{"Federated":"` + provider + `"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"oidc.example.com/id/c1:sub":"system:serviceaccount:shop:app","oidc.example.com/id/c1:aud":"sts.amazonaws.com"}}}]}`, true, ""},
		{"pattern", `{"Statement":[{"Effect":"Allow","Principal":{"Federated":["x","` + provider + `"]},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringLike":{"OIDC.example.com/id/c1:sub":"system:serviceaccount:shop:*"}}}]}`, true, ""},
		{"another ServiceAccount", `{"Statement":[{"Effect":"Allow","Principal":{"Federated":"` + provider + `"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"oidc.example.com/id/c1:sub":"system:serviceaccount:shop:other"}}}]}`, false, "is not met"},
		{"another provider", `{"Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/elsewhere"},"Action":"sts:AssumeRoleWithWebIdentity"}]}`, false, "no statement allows"},
		{"the provider's ARN as an AWS principal", `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"` + provider + `"},"Action":"sts:AssumeRoleWithWebIdentity"}]}`, false, "no statement allows"},
		{"wrong action", `{"Statement":[{"Effect":"Allow","Principal":{"Federated":"` + provider + `"},"Action":"sts:AssumeRole"}]}`, false, "no statement allows"},
		{"another audience", `{"Statement":[{"Effect":"Allow","Principal":{"Federated":"` + provider + `"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"oidc.example.com/id/c1:aud":"other"}}}]}`, false, "is not met"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := ParseTrust(c.policy)
			if err != nil {
				t.Fatal(err)
			}
			v := p.Evaluate(irsaRequest("shop", "app"))
			if v.Allowed != c.allowed || !strings.Contains(v.Refusal, c.refusal) {
				t.Errorf("verdict %+v; want allowed=%v refusal containing %q", v, c.allowed, c.refusal)
			}
		})
	}
}

func requestContext(ns string) map[string][]string {
	return map[string][]string{
		"aws:principalarn":                          {server},
		"aws:requesttag/eks-cluster-name":           {"prod"},
		"aws:requesttag/kubernetes-namespace":       {ns},
		"aws:requesttag/kubernetes-service-account": {"app"},
	}
}

func TestTrustEvaluation(t *testing.T) {
	for _, c := range []struct {
		name, policy, action string
		ctx                  map[string][]string
		allowed              bool
		refusal, unevaluated string
	}{
		{"podid's statement", `{"Statement":[{"Sid":"P","Effect":"Allow","Principal":{"AWS":"` + server + `"},"Action":["sts:AssumeRole","sts:TagSession"],
			"Condition":{"StringEquals":{"aws:RequestTag/kubernetes-namespace":"shop","aws:RequestTag/eks-cluster-name":"prod"}}}]}`, "sts:TagSession", requestContext("shop"), true, "", ""},
		{"one statement, not a list; action as a string", `{"Statement":{"Effect":"Allow","Principal":{"AWS":"` + server + `"},"Action":"sts:AssumeRole"}}`, "sts:AssumeRole", requestContext("shop"), true, "", ""},
		{"no TagSession", `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"` + server + `"},"Action":"sts:AssumeRole"}]}`, "sts:TagSession", requestContext("shop"), false, "no statement allows " + server + " sts:TagSession", ""},
		{"wildcard action, case-insensitive", `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"` + server + `"},"Action":"STS:*"}]}`, "sts:TagSession", requestContext("shop"), true, "", ""},
		{"account root", `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole"}]}`, "sts:AssumeRole", requestContext("shop"), true, "", ""},
		{"account ID", `{"Statement":[{"Effect":"Allow","Principal":{"AWS":["999999999999","111122223333"]},"Action":"sts:AssumeRole"}]}`, "sts:AssumeRole", requestContext("shop"), true, "", ""},
		{"another principal", `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/other"},"Action":"sts:AssumeRole"}]}`, "sts:AssumeRole", requestContext("shop"), false, "no statement allows", ""},
		{"OIDC only", `{"Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/x"},"Action":"sts:AssumeRoleWithWebIdentity"}]}`, "sts:AssumeRole", requestContext("shop"), false, "no statement allows", ""},
		{"condition on another namespace", `{"Statement":[{"Sid":"Shop","Effect":"Allow","Principal":{"AWS":"` + server + `"},"Action":"sts:AssumeRole",
			"Condition":{"StringEquals":{"aws:RequestTag/kubernetes-namespace":["shop","cart"]}}}]}`, "sts:AssumeRole", requestContext("web"), false,
			`statement Shop names the principal but its condition StringEquals aws:RequestTag/kubernetes-namespace ["shop" "cart"] is not met by this request's "web"`, ""},
		{"StringLike", `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"` + server + `"},"Action":"sts:AssumeRole","Condition":{"StringLike":{"aws:RequestTag/kubernetes-namespace":"team-*"}}}]}`,
			"sts:AssumeRole", requestContext("team-a/b"), true, "", ""},
		{"tags disabled: a tag condition fails", `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"` + server + `"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"aws:RequestTag/kubernetes-namespace":"shop"}}}]}`,
			"sts:AssumeRole", map[string][]string{"aws:principalarn": {server}}, false, "is not met by this request's (absent)", ""},
		{"IfExists holds when absent", `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"` + server + `"},"Action":"sts:AssumeRole","Condition":{"StringEqualsIfExists":{"aws:RequestTag/kubernetes-namespace":"shop"}}}]}`,
			"sts:AssumeRole", map[string][]string{}, true, "", ""},
		{"explicit deny wins", `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"` + server + `"},"Action":"sts:*"},{"Sid":"NoWeb","Effect":"Deny","Principal":"*","Action":"sts:AssumeRole","Condition":{"StringEquals":{"aws:RequestTag/kubernetes-namespace":"web"}}}]}`,
			"sts:AssumeRole", requestContext("web"), false, "statement NoWeb denies sts:AssumeRole", ""},
		{"unknown key is assumed to hold and reported", `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"` + server + `"},"Action":"sts:AssumeRole","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}`,
			"sts:AssumeRole", requestContext("shop"), true, "", "aws:SourceIp"},
		{"external ID", `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"` + server + `"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"abc"}}}]}`,
			"sts:AssumeRole", map[string][]string{"sts:externalid": {"abd"}}, false, `StringEquals sts:ExternalId ["abc"] is not met by this request's "abd"`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := ParseTrust(c.policy)
			if err != nil {
				t.Fatal(err)
			}
			v := p.Evaluate(podidRequest(c.action, c.ctx))
			if v.Allowed != c.allowed || !strings.Contains(v.Refusal, c.refusal) || strings.Join(v.Unevaluated, ",") != c.unevaluated {
				t.Errorf("verdict %+v; want allowed=%v refusal containing %q, unevaluated %q", v, c.allowed, c.refusal, c.unevaluated)
			}
		})
	}
}

func TestTrustRefusesNonPolicies(t *testing.T) {
	for _, doc := range []string{"", "[]", `{"Statement":"x"}`, `{"Statement":[{"Action":5}]}`} {
		if _, err := ParseTrust(doc); err == nil {
			t.Errorf("ParseTrust(%q) succeeded", doc)
		}
	}
}

// FuzzTrust: a trust policy is IAM's to validate, but doctor and migrate
// read whatever GetRole returns and must never panic on it.
func FuzzTrust(f *testing.F) {
	f.Add(`{"Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:*","Condition":{"StringLike":{"aws:RequestTag/a":["*"]}}}]}`)
	f.Add(`{"Statement":{"Effect":"Deny","NotAction":"x","NotPrincipal":{"AWS":"y"}}}`)
	f.Fuzz(func(t *testing.T, doc string) {
		p, err := ParseTrust(doc)
		if err != nil {
			return
		}
		p.Evaluate(podidRequest("sts:AssumeRole", requestContext("shop")))
		p.Evaluate(irsaRequest("shop", "app"))
	})
}

func TestGlobMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, s string
		want       bool
	}{{"*", "", true}, {"a*c", "abbbc", true}, {"a?c", "abc", true}, {"a?c", "ac", false}, {"team-*", "team-a/b", true}, {"x*", "y", false}, {"**a", "ba", true}} {
		if got := globMatch(c.pattern, c.s); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v", c.pattern, c.s, got)
		}
	}
}
