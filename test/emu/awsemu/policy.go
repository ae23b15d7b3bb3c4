package awsemu

import (
	"encoding/json"
	"strings"

	"github.com/podid/podid/internal/iampolicy"
)

// policyDocument is an IAM policy as far as trust evaluation needs it.
type policyDocument struct {
	Version   string        `json:"Version"`
	Statement statementList `json:"Statement"`
}

type statement struct {
	Sid       string                           `json:"Sid"`
	Effect    string                           `json:"Effect"`
	Principal *principalSet                    `json:"Principal"`
	Action    stringList                       `json:"Action"`
	Resource  stringList                       `json:"Resource"`
	Condition map[string]map[string]stringList `json:"Condition"`
	// Present only to reject them: the emulator does not evaluate these.
	NotPrincipal json.RawMessage `json:"NotPrincipal"`
	NotAction    json.RawMessage `json:"NotAction"`
}

// statementList accepts a statement or a list of them.
type statementList = iampolicy.OneOrMany[statement]

// stringList accepts a string or a list of strings.
type stringList = iampolicy.OneOrMany[string]

// principalSet is "*" or {"AWS": …, "Service": …, "Federated": …}.
type principalSet struct {
	Any       bool
	AWS       stringList `json:"AWS"`
	Service   stringList `json:"Service"`
	Federated stringList `json:"Federated"`
}

func (p *principalSet) UnmarshalJSON(b []byte) error {
	if string(b) == `"*"` {
		p.Any = true
		return nil
	}
	type plain principalSet
	return json.Unmarshal(b, (*plain)(p))
}

// parseTrustPolicy checks that doc is a trust policy the emulator can evaluate.
func parseTrustPolicy(doc string) (*policyDocument, *apiError) {
	var p policyDocument
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		return nil, errorf("MalformedPolicyDocument", "the policy is not valid JSON: %v", err)
	}
	if len(p.Statement) == 0 {
		return nil, errorf("MalformedPolicyDocument", "the policy has no Statement")
	}
	for i, s := range p.Statement {
		if s.Effect != "Allow" && s.Effect != "Deny" {
			return nil, errorf("MalformedPolicyDocument", "statement %d: Effect must be Allow or Deny", i)
		}
		if s.NotPrincipal != nil || s.NotAction != nil {
			return nil, errorf("MalformedPolicyDocument", "statement %d: NotPrincipal and NotAction are not supported by the emulator", i)
		}
		if s.Principal == nil {
			return nil, errorf("MalformedPolicyDocument", "statement %d: a trust policy statement needs a Principal", i)
		}
		if len(s.Action) == 0 {
			return nil, errorf("MalformedPolicyDocument", "statement %d: Action is missing", i)
		}
	}
	return &p, nil
}

// request is what a trust policy is evaluated against.
type request struct {
	caller      principal
	action      string
	sessionName string
	externalID  string // "" when not sent
	tags        map[string]string
	// sourceARN is aws:SourceArn, set when a service calls on a resource's
	// behalf (Roles Anywhere: the trust anchor).
	sourceARN string
	// principalTags are aws:PrincipalTag/<key> (Roles Anywhere: the
	// certificate's x509Subject/…, x509Issuer/…, x509SAN/… attributes).
	principalTags map[string]string
}

// allows evaluates the policy for one action: an explicit Deny wins, then
// any Allow, else an implicit deny.
func (p *policyDocument) allows(req request) bool {
	allowed := false
	for _, s := range p.Statement {
		if !s.matchesAction(req.action) || !s.Principal.matches(req.caller) || !s.conditionsHold(req) {
			continue
		}
		if s.Effect == "Deny" {
			return false
		}
		allowed = true
	}
	return allowed
}

func (s *statement) matchesAction(action string) bool {
	for _, a := range s.Action {
		if globMatch(strings.ToLower(a), strings.ToLower(action)) {
			return true
		}
	}
	return false
}

// matches reports whether the caller is named by the principal element. An
// account ("111122223333" or its root ARN) names every principal of that
// account: real IAM would then also require the caller's identity policy to
// allow the call, which the emulator does not model.
func (ps *principalSet) matches(c principal) bool {
	if ps.Any {
		return true
	}
	for _, want := range ps.AWS {
		if want == "*" || want == c.account || want == c.arn {
			return true
		}
		if strings.HasSuffix(want, ":root") && strings.Contains(want, ":iam::"+c.account+":") {
			return true
		}
		if roleARN := c.roleARN(); roleARN != "" && want == roleARN {
			return true
		}
	}
	// A web identity caller is its identity provider; a service (Roles
	// Anywhere) is its service principal.
	for _, want := range ps.Federated {
		if c.federated != "" && want == c.federated {
			return true
		}
	}
	for _, want := range ps.Service {
		if c.service != "" && want == c.service {
			return true
		}
	}
	return false
}

// conditionsHold evaluates every condition block; all must hold.
func (s *statement) conditionsHold(req request) bool {
	for op, block := range s.Condition {
		for key, values := range block {
			if !evaluate(op, key, values, req) {
				return false
			}
		}
	}
	return true
}

func contextValue(key string, req request) (string, bool) {
	switch k := strings.ToLower(key); {
	case k == "sts:externalid":
		return req.externalID, req.externalID != ""
	case k == "sts:rolesessionname":
		return req.sessionName, true
	case k == "aws:principalarn":
		if arn := req.caller.roleARN(); arn != "" {
			return arn, true
		}
		return req.caller.arn, true
	case k == "aws:principalaccount":
		return req.caller.account, true
	case strings.HasPrefix(k, "aws:requesttag/"):
		v, ok := req.tags[key[len("aws:RequestTag/"):]]
		return v, ok
	case k == "aws:sourcearn":
		return req.sourceARN, req.sourceARN != ""
	case strings.HasPrefix(k, "aws:principaltag/"):
		v, ok := req.principalTags[key[len("aws:PrincipalTag/"):]]
		return v, ok
	}
	// "<issuer host/path>:sub" and ":aud" of a web identity token.
	v, ok := req.caller.claims[key]
	return v, ok
}

func evaluate(op, key string, values []string, req request) bool {
	ifExists := strings.HasSuffix(op, "IfExists")
	op = strings.TrimSuffix(op, "IfExists")
	got, present := contextValue(key, req)
	if !present {
		// A missing key satisfies only the ...IfExists and negated operators.
		return ifExists || strings.Contains(op, "Not")
	}
	match := func(f func(string) bool) bool {
		for _, v := range values {
			if f(v) {
				return true
			}
		}
		return false
	}
	switch op {
	case "StringEquals", "ArnEquals":
		return match(func(v string) bool { return got == v })
	case "StringNotEquals", "ArnNotEquals":
		return !match(func(v string) bool { return got == v })
	case "StringEqualsIgnoreCase":
		return match(func(v string) bool { return strings.EqualFold(got, v) })
	case "StringLike", "ArnLike":
		return match(func(v string) bool { return globMatch(v, got) })
	case "StringNotLike", "ArnNotLike":
		return !match(func(v string) bool { return globMatch(v, got) })
	}
	return false // unsupported operators never match: fail closed
}

// globMatch is IAM's wildcard match: '*' any run, '?' one character.
func globMatch(pattern, s string) bool {
	if pattern == "" {
		return s == ""
	}
	switch pattern[0] {
	case '*':
		for i := 0; i <= len(s); i++ {
			if globMatch(pattern[1:], s[i:]) {
				return true
			}
		}
		return false
	case '?':
		return s != "" && globMatch(pattern[1:], s[1:])
	}
	return s != "" && s[0] == pattern[0] && globMatch(pattern[1:], s[1:])
}
