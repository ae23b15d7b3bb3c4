package iampolicy

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Request is one sts call whose admission by a role's trust policy is
// evaluated: who calls, the action, and the request's context keys.
type Request struct {
	// Principal is the caller: an IAM ARN (a user's or a role's), or with
	// Federated an identity provider's ARN (IRSA's OIDC provider).
	Principal string
	// Federated says Principal is a web identity provider, which trust
	// policies name under Principal.Federated rather than Principal.AWS.
	Federated bool
	// Service says Principal is an AWS service (pods.eks.amazonaws.com),
	// which trust policies name under Principal.Service.
	Service bool
	Action  string
	// Context holds condition keys the request carries, lower-cased
	// (aws:requesttag/kubernetes-namespace, sts:externalid, aws:principalarn,
	// <issuer>:sub).
	Context map[string][]string
	// Complete, when set, names the keys whose absence from Context is
	// known (a condition on them then fails, or holds with IfExists); any
	// other absent key cannot be evaluated and is assumed to hold.
	Complete func(key string) bool
}

// Verdict is what a trust policy makes of a request.
type Verdict struct {
	Allowed bool
	// Sid names the statement that allowed or denied it (#N when it has
	// none); Statement is its index.
	Sid       string
	Statement int
	// Refusal says, when not allowed, the nearest reason: the condition
	// that failed in a statement naming the principal, or that none names it.
	Refusal string
	// Unevaluated lists condition keys that could not be evaluated; the
	// verdict then assumes they hold.
	Unevaluated []string
}

// Trust is a role's trust policy, read for evaluation.
type Trust struct {
	Statement statements `json:"Statement"`
}

// Statement is one statement of a trust policy.
type Statement struct {
	Sid          string                    `json:"Sid"`
	Effect       string                    `json:"Effect"`
	Principal    json.RawMessage           `json:"Principal"`
	NotPrincipal json.RawMessage           `json:"NotPrincipal"`
	Action       stringList                `json:"Action"`
	NotAction    stringList                `json:"NotAction"`
	Condition    map[string]map[string]any `json:"Condition"`
}

// statements is one statement or a list of them, as IAM accepts both.
type statements = OneOrMany[Statement]

// stringList is a string or a list of strings.
type stringList = OneOrMany[string]

// ParseTrust decodes a trust policy document (already URL-decoded).
func ParseTrust(doc string) (*Trust, error) {
	var p Trust
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		return nil, fmt.Errorf("the trust policy is not a policy document: %w", err)
	}
	return &p, nil
}

// Evaluate applies the policy to r as IAM does for a role's trust: an
// explicit Deny wins, else some Allow must match.
func (p *Trust) Evaluate(r Request) Verdict {
	var v Verdict
	var nearest string
	for i, s := range p.Statement {
		sid := s.Sid
		if sid == "" {
			sid = fmt.Sprintf("#%d", i+1)
		}
		if !s.coversAction(r.Action) || !s.namesPrincipal(r) {
			continue
		}
		ok, failed, unevaluated := s.conditionsHold(r)
		v.Unevaluated = append(v.Unevaluated, unevaluated...)
		switch {
		case strings.EqualFold(s.Effect, "Deny") && ok:
			return Verdict{Sid: sid, Statement: i, Refusal: fmt.Sprintf("statement %s denies %s", sid, r.Action)}
		case strings.EqualFold(s.Effect, "Allow") && ok && !v.Allowed:
			v.Allowed, v.Sid, v.Statement = true, sid, i
		case strings.EqualFold(s.Effect, "Allow") && !ok && nearest == "":
			nearest = fmt.Sprintf("statement %s names the principal but its condition %s", sid, failed)
		}
	}
	if !v.Allowed {
		v.Refusal = nearest
		if v.Refusal == "" {
			v.Refusal = fmt.Sprintf("no statement allows %s %s", r.Principal, r.Action)
		}
	}
	slices.Sort(v.Unevaluated)
	v.Unevaluated = slices.Compact(v.Unevaluated)
	return v
}

func (s Statement) coversAction(action string) bool {
	if len(s.NotAction) > 0 {
		return !matchAny(s.NotAction, strings.ToLower(action), true, true)
	}
	return matchAny(s.Action, strings.ToLower(action), true, true)
}

// namesPrincipal: "*", {"AWS": "*"}, the principal's ARN, or its account
// (an account ID or its root ARN: the account then delegates to its own
// IAM policies, which are not read here); a federated principal only by
// its provider's ARN under "Federated".
func (s Statement) namesPrincipal(r Request) bool {
	principal := r.Principal
	if len(s.NotPrincipal) > 0 {
		return false // rare in trust policies; not evaluated
	}
	var star string
	if json.Unmarshal(s.Principal, &star) == nil {
		return star == "*"
	}
	var m map[string]stringList
	if err := json.Unmarshal(s.Principal, &m); err != nil {
		return false
	}
	switch {
	case r.Federated:
		return slices.Contains(m["Federated"], principal)
	case r.Service:
		return slices.Contains(m["Service"], principal)
	}
	account := AccountOf(principal)
	for _, p := range m["AWS"] {
		switch {
		case p == "*", p == principal, account != "" && (p == account || strings.HasSuffix(p, ":"+account+":root")):
			return true
		}
	}
	return false
}

// conditionsHold evaluates the statement's conditions against ctx. It
// returns which one failed, and the keys it could not evaluate (assumed
// to hold).
func (s Statement) conditionsHold(r Request) (ok bool, failed string, unevaluated []string) {
	ops := make([]string, 0, len(s.Condition))
	for op := range s.Condition {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	for _, op := range ops {
		keys := make([]string, 0, len(s.Condition[op]))
		for k := range s.Condition[op] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, key := range keys {
			want := Values(s.Condition[op][key])
			have, known := r.Context[strings.ToLower(key)]
			base := op // without ForAnyValue:/ForAllValues: (one-valued keys here)
			if i := strings.LastIndex(base, ":"); i >= 0 {
				base = base[i+1:]
			}
			base, ifExists := strings.CutSuffix(base, "IfExists")
			if !known && (r.Complete == nil || !r.Complete(strings.ToLower(key))) {
				unevaluated = append(unevaluated, key)
				continue
			}
			if len(have) == 0 && ifExists {
				continue
			}
			holds, evaluable := compare(base, have, want)
			if !evaluable {
				unevaluated = append(unevaluated, op+" "+key)
				continue
			}
			if !holds {
				shown := "(absent)"
				if len(have) > 0 {
					shown = fmt.Sprintf("%q", strings.Join(have, ","))
				}
				return false, fmt.Sprintf("%s %s %q is not met by this request's %s", op, key, want, shown), unevaluated
			}
		}
	}
	return true, "", unevaluated
}

// ConditionsOn reports whether the statement has a condition on key
// (case-insensitive), under any operator.
func (s Statement) ConditionsOn(key string) bool {
	for _, keys := range s.Condition {
		for k := range keys {
			if strings.EqualFold(k, key) {
				return true
			}
		}
	}
	return false
}

func compare(op string, have, want []string) (holds, evaluable bool) {
	anyMatch := func(like bool) bool {
		for _, h := range have {
			if matchAny(want, h, like, false) {
				return true
			}
		}
		return false
	}
	switch op {
	case "StringEquals", "ArnEquals":
		return anyMatch(false), true
	case "StringEqualsIgnoreCase":
		for _, h := range have {
			for _, w := range want {
				if strings.EqualFold(h, w) {
					return true, true
				}
			}
		}
		return false, true
	case "StringLike", "ArnLike":
		return anyMatch(true), true
	case "StringNotEquals", "ArnNotEquals":
		return !anyMatch(false), true
	case "StringNotLike", "ArnNotLike":
		return !anyMatch(true), true
	case "Null":
		wantNull := len(want) == 1 && strings.EqualFold(want[0], "true")
		return (len(have) == 0) == wantNull, true
	}
	return false, false
}

// matchAny: value equals one of patterns, with IAM's * and ? when like;
// fold lower-cases the patterns (actions are case-insensitive).
func matchAny(patterns []string, value string, like, fold bool) bool {
	for _, p := range patterns {
		if fold {
			p = strings.ToLower(p)
		}
		if p == value || like && globMatch(p, value) {
			return true
		}
	}
	return false
}

// globMatch is IAM's wildcard match, where * crosses "/" too.
func globMatch(pattern, s string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if globMatch(pattern[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || pattern[0] != s[0] {
				return false
			}
		}
		pattern, s = pattern[1:], s[1:]
	}
	return s == ""
}

// Values are a condition's values: one or a list, as IAM accepts both.
func Values(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case bool:
		return []string{fmt.Sprint(t)}
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	return []string{fmt.Sprint(v)}
}

// AccountOf is the account ID of an IAM or STS ARN.
func AccountOf(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 {
		return ""
	}
	return parts[4]
}
