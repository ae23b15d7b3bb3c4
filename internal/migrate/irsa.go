package migrate

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/podid/podid/internal/iampolicy"
)

// Under IRSA the annotation eks.amazonaws.com/role-arn grants nothing by
// itself: the role's trust must admit system:serviceaccount:NS:SA through
// the cluster's OIDC provider. Anyone who may edit a ServiceAccount may
// write the annotation, so a migration, which acts with the admin's AWS
// and Kubernetes rights, takes a role only when its trust already admits
// the ServiceAccount through IRSA (or already trusts podid for it).

// irsaAudience is the audience IRSA tokens carry and IRSA trust policies
// condition on.
const irsaAudience = "sts.amazonaws.com"

// Issuer is the cluster's ServiceAccount token issuer as IAM knows it: an
// OIDC identity provider named after the issuer URL without its scheme,
// whose condition keys are "<issuer>:sub" and "<issuer>:aud".
type Issuer string

// IssuerFromURL turns an issuer URL (the API server's
// --service-account-issuer, as /.well-known/openid-configuration gives it)
// into the form IAM uses.
func IssuerFromURL(u string) (Issuer, error) {
	host, ok := strings.CutPrefix(u, "https://")
	host = strings.TrimRight(host, "/")
	if !ok || host == "" || strings.ContainsAny(host, " \t\n?#") {
		return "", fmt.Errorf("the ServiceAccount issuer %q is not an https URL, so no IAM OIDC provider can stand for it: pass the IAM provider's URL with --oidc-issuer", u)
	}
	// IAM names the provider after the URL as it is: its path (EKS's
	// /id/<HEX>) keeps its case; host names do not have one.
	h, path, _ := strings.Cut(host, "/")
	if path != "" {
		path = "/" + path
	}
	return Issuer(strings.ToLower(h) + path), nil
}

// provider is the ARN of the IAM OIDC provider for the issuer in the
// role's account and partition.
func (i Issuer) provider(roleARN string) string {
	parts := strings.SplitN(roleARN, ":", 6)
	if len(parts) < 5 {
		return ""
	}
	return "arn:" + parts[1] + ":iam::" + parts[4] + ":oidc-provider/" + string(i)
}

func subject(ns, sa string) string { return "system:serviceaccount:" + ns + ":" + sa }

// admits reports whether the trust document lets ns/sa's IRSA token assume
// the role: an Allow for this issuer's provider and
// sts:AssumeRoleWithWebIdentity whose conditions hold for the token's sub
// and aud, one of them on sub (a statement that does not condition on the
// subject admits every ServiceAccount of the cluster and proves nothing
// about this one). It returns the statement that admits it, or why none
// does.
func (i Issuer) admits(doc, roleARN, ns, sa string) (sid, why string) {
	trust, err := iampolicy.ParseTrust(doc)
	if err != nil {
		return "", err.Error()
	}
	provider := i.provider(roleARN)
	// Condition keys are case-insensitive: the evaluator looks them up
	// lower-cased.
	prefix := strings.ToLower(string(i)) + ":"
	sub := prefix + "sub"
	v := trust.Evaluate(iampolicy.Request{
		Principal: provider, Federated: true, Action: "sts:AssumeRoleWithWebIdentity",
		Context: map[string][]string{sub: {subject(ns, sa)}, prefix + "aud": {irsaAudience}},
		// The issuer's own keys are all the token has: a condition on
		// another of them fails rather than being assumed to hold.
		Complete: func(k string) bool { return strings.HasPrefix(k, prefix) },
	})
	switch {
	case !v.Allowed:
		return "", fmt.Sprintf("does not admit %s through %s: %s", subject(ns, sa), provider, v.Refusal)
	case !trust.Statement[v.Statement].ConditionsOn(sub):
		return "", fmt.Sprintf("admits every ServiceAccount of the cluster through %s in statement %s (no condition on %s), which says nothing of %s", provider, v.Sid, sub, subject(ns, sa))
	}
	return v.Sid, ""
}

// isOIDCStatementFor reports whether raw is an IRSA statement that admits
// exactly ns/sa through this issuer and nothing else: Allow, the provider
// as the only principal, sts:AssumeRoleWithWebIdentity as the only action,
// and the sub condition equal to the one subject (other conditions only
// narrow it). These, and only these, are what --remove-oidc-trust removes
// and what rollback puts back, whatever the record on the ServiceAccount
// says.
func (i Issuer) isOIDCStatementFor(raw json.RawMessage, roleARN, ns, sa string) bool {
	var s iampolicy.Statement
	if json.Unmarshal(raw, &s) != nil || s.Effect != "Allow" || len(s.NotPrincipal) > 0 || len(s.NotAction) > 0 {
		return false
	}
	var principal map[string]iampolicy.OneOrMany[string]
	if json.Unmarshal(s.Principal, &principal) != nil || len(principal) != 1 || !slices.Equal(principal["Federated"], []string{i.provider(roleARN)}) {
		return false
	}
	if len(s.Action) != 1 || !strings.EqualFold(s.Action[0], "sts:AssumeRoleWithWebIdentity") {
		return false
	}
	subs := 0
	for op, keys := range s.Condition {
		for k, v := range keys {
			if !strings.EqualFold(k, string(i)+":sub") {
				continue
			}
			// StringLike with no wildcard is StringEquals; a wildcard, a
			// list or a negation admits others (or everyone).
			values := iampolicy.Values(v)
			if (op != "StringEquals" && op != "StringLike") || len(values) != 1 || values[0] != subject(ns, sa) {
				return false
			}
			subs++
		}
	}
	return subs > 0
}

// admitsSubject reports whether raw is an IRSA statement of this issuer
// whose sub condition names ns/sa among others, or by a pattern: kept by
// --remove-oidc-trust, since removing it would lock the others out.
func (i Issuer) admitsSubject(raw json.RawMessage, roleARN, ns, sa string) bool {
	var s iampolicy.Statement
	if json.Unmarshal(raw, &s) != nil {
		return false
	}
	var principal map[string]iampolicy.OneOrMany[string]
	if json.Unmarshal(s.Principal, &principal) != nil || !slices.Contains(principal["Federated"], i.provider(roleARN)) {
		return false
	}
	for _, keys := range s.Condition {
		for k, v := range keys {
			if strings.EqualFold(k, string(i)+":sub") && slices.ContainsFunc(iampolicy.Values(v), func(s string) bool {
				return s == subject(ns, sa) || strings.ContainsAny(s, "*?")
			}) {
				return true
			}
		}
	}
	return false
}
