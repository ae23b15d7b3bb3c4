package awsemu

import (
	"encoding/json"
	"encoding/xml"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// IAM's permission policies on roles, as far as podid's role management
// and migration need them: managed policies (customer ones created here,
// AWS ones taken as existing), attachments, inline policies, permission
// boundaries and role tags, with IAM's deletion rules. The emulator stores
// permission policies but never evaluates them (see the package doc).

// managedPolicy is a customer managed policy.
type managedPolicy struct {
	arn, name, path, document string
}

var (
	policyNamePattern = regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)
	// policyARNPattern: a customer policy of an account, or an AWS managed
	// one (account "aws").
	policyARNPattern = regexp.MustCompile(`^arn:(aws|aws-cn|aws-us-gov):iam::(aws|[0-9]{12}):policy/([\x21-\x7e]*/)?[\w+=,.@-]{1,128}$`)
)

// validPolicyDocument checks a permission policy document the way IAM's
// syntax check does, roughly: JSON with a Statement.
func validPolicyDocument(doc string) *apiError {
	var d struct {
		Version   string          `json:"Version"`
		Statement json.RawMessage `json:"Statement"`
	}
	if err := json.Unmarshal([]byte(doc), &d); err != nil || len(d.Statement) == 0 {
		return errorf("MalformedPolicyDocument", "Syntax errors in policy.")
	}
	return nil
}

func (e *Emulator) createPolicy(caller principal, f formValues) (any, *apiError) {
	name, path, doc := f.Get("PolicyName"), f.Get("Path"), f.Get("PolicyDocument")
	if !policyNamePattern.MatchString(name) {
		return nil, errorf("ValidationError", "PolicyName %q must be 1-128 characters of letters, digits and +=,.@_-", name)
	}
	if path == "" {
		path = "/"
	}
	if !rolePathPattern.MatchString(path) {
		return nil, errorf("ValidationError", "Path %q must begin and end with '/'", path)
	}
	if aerr := validPolicyDocument(doc); aerr != nil {
		return nil, aerr
	}
	p := &managedPolicy{arn: "arn:" + e.opts.Partition + ":iam::" + caller.account + ":policy" + path + name, name: name, path: path, document: doc}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.iamWrites++
	if _, ok := e.policies[p.arn]; ok {
		return nil, errorf("EntityAlreadyExists", "A policy called %s already exists. Duplicate names are not allowed.", name)
	}
	e.policies[p.arn] = p
	type xmlPolicy struct {
		PolicyName string `xml:"PolicyName"`
		Arn        string `xml:"Arn"`
		Path       string `xml:"Path"`
	}
	return struct {
		Policy xmlPolicy `xml:"Policy"`
	}{xmlPolicy{name, p.arn, path}}, nil
}

// policyExists reports whether arn names a policy: one created here, or
// any AWS managed policy of the partition. Callers hold e.mu.
func (e *Emulator) policyExists(arn string) bool {
	if _, ok := e.policies[arn]; ok {
		return true
	}
	m := policyARNPattern.FindStringSubmatch(arn)
	return m != nil && m[1] == e.opts.Partition && m[2] == "aws"
}

func (e *Emulator) deletePolicy(caller principal, f formValues) (any, *apiError) {
	arn := f.Get("PolicyArn")
	e.mu.Lock()
	defer e.mu.Unlock()
	e.iamWrites++
	if _, ok := e.policies[arn]; !ok {
		return nil, errorf("NoSuchEntity", "Policy %s was not found.", arn)
	}
	for _, r := range e.roles {
		if slices.Contains(r.attached, arn) {
			return nil, errorf("DeleteConflict", "Cannot delete a policy attached to entities.")
		}
	}
	delete(e.policies, arn)
	return struct{ XMLName xml.Name }{}, nil
}

func (e *Emulator) attachRolePolicy(caller principal, f formValues) (any, *apiError) {
	arn := f.Get("PolicyArn")
	return e.onRole(caller, f, true, func(r *role) (any, *apiError) {
		if !policyARNPattern.MatchString(arn) {
			return nil, errorf("InvalidInput", "ARN %s is not valid.", arn)
		}
		if !e.policyExists(arn) {
			return nil, errorf("NoSuchEntity", "Policy %s does not exist or is not attachable.", arn)
		}
		if !slices.Contains(r.attached, arn) {
			r.attached = append(r.attached, arn)
		}
		return struct{ XMLName xml.Name }{}, nil
	})
}

func (e *Emulator) detachRolePolicy(caller principal, f formValues) (any, *apiError) {
	arn := f.Get("PolicyArn")
	return e.onRole(caller, f, true, func(r *role) (any, *apiError) {
		i := slices.Index(r.attached, arn)
		if i < 0 {
			return nil, errorf("NoSuchEntity", "Policy %s was not found.", arn)
		}
		r.attached = slices.Delete(r.attached, i, i+1)
		return struct{ XMLName xml.Name }{}, nil
	})
}

func (e *Emulator) listAttachedRolePolicies(caller principal, f formValues) (any, *apiError) {
	return e.onRole(caller, f, false, func(r *role) (any, *apiError) {
		type attached struct {
			PolicyName string `xml:"PolicyName"`
			PolicyArn  string `xml:"PolicyArn"`
		}
		out := make([]attached, 0, len(r.attached))
		for _, arn := range r.attached {
			out = append(out, attached{arn[strings.LastIndex(arn, "/")+1:], arn})
		}
		return struct {
			AttachedPolicies []attached `xml:"AttachedPolicies>member"`
			IsTruncated      bool       `xml:"IsTruncated"`
		}{AttachedPolicies: out}, nil
	})
}

func (e *Emulator) putRolePolicy(caller principal, f formValues) (any, *apiError) {
	name, doc := f.Get("PolicyName"), f.Get("PolicyDocument")
	if !policyNamePattern.MatchString(name) {
		return nil, errorf("ValidationError", "PolicyName %q must be 1-128 characters of letters, digits and +=,.@_-", name)
	}
	if aerr := validPolicyDocument(doc); aerr != nil {
		return nil, aerr
	}
	return e.onRole(caller, f, true, func(r *role) (any, *apiError) {
		if r.inline == nil {
			r.inline = map[string]string{}
		}
		r.inline[name] = doc
		return struct{ XMLName xml.Name }{}, nil
	})
}

func (e *Emulator) getRolePolicy(caller principal, f formValues) (any, *apiError) {
	return e.onRole(caller, f, false, func(r *role) (any, *apiError) {
		name := f.Get("PolicyName")
		doc, ok := r.inline[name]
		if !ok {
			return nil, errorf("NoSuchEntity", "The role policy with name %s cannot be found.", name)
		}
		return struct {
			RoleName       string `xml:"RoleName"`
			PolicyName     string `xml:"PolicyName"`
			PolicyDocument string `xml:"PolicyDocument"`
		}{r.name, name, strings.ReplaceAll(url.QueryEscape(doc), "+", "%20")}, nil
	})
}

func (e *Emulator) deleteRolePolicy(caller principal, f formValues) (any, *apiError) {
	return e.onRole(caller, f, true, func(r *role) (any, *apiError) {
		name := f.Get("PolicyName")
		if _, ok := r.inline[name]; !ok {
			return nil, errorf("NoSuchEntity", "The role policy with name %s cannot be found.", name)
		}
		delete(r.inline, name)
		return struct{ XMLName xml.Name }{}, nil
	})
}

func (e *Emulator) listRolePolicies(caller principal, f formValues) (any, *apiError) {
	return e.onRole(caller, f, false, func(r *role) (any, *apiError) {
		names := make([]string, 0, len(r.inline))
		for n := range r.inline {
			names = append(names, n)
		}
		sort.Strings(names)
		return struct {
			PolicyNames []string `xml:"PolicyNames>member"`
			IsTruncated bool     `xml:"IsTruncated"`
		}{PolicyNames: names}, nil
	})
}

func (e *Emulator) tagRole(caller principal, f formValues) (any, *apiError) {
	keys, values := f.members("Tags", "Key"), f.members("Tags", "Value")
	return e.onRole(caller, f, true, func(r *role) (any, *apiError) {
		for i, k := range keys {
			v := ""
			if i < len(values) {
				v = values[i]
			}
			r.tags = setTag(r.tags, k, v)
		}
		if len(r.tags) > 50 {
			return nil, errorf("LimitExceeded", "A role can have at most 50 tags.")
		}
		return struct{ XMLName xml.Name }{}, nil
	})
}

func (e *Emulator) untagRole(caller principal, f formValues) (any, *apiError) {
	keys := f.members("TagKeys", "")
	return e.onRole(caller, f, true, func(r *role) (any, *apiError) {
		r.tags = slices.DeleteFunc(r.tags, func(t xmlTag) bool { return slices.Contains(keys, t.Key) })
		return struct{ XMLName xml.Name }{}, nil
	})
}

func (e *Emulator) listRoleTags(caller principal, f formValues) (any, *apiError) {
	return e.onRole(caller, f, false, func(r *role) (any, *apiError) {
		return struct {
			Tags        []xmlTag `xml:"Tags>member"`
			IsTruncated bool     `xml:"IsTruncated"`
		}{Tags: slices.Clone(r.tags)}, nil
	})
}

func (e *Emulator) putRolePermissionsBoundary(caller principal, f formValues) (any, *apiError) {
	arn := f.Get("PermissionsBoundary")
	return e.onRole(caller, f, true, func(r *role) (any, *apiError) {
		if !e.policyExists(arn) {
			return nil, errorf("NoSuchEntity", "Scope ARN: %s does not exist or is not attachable.", arn)
		}
		r.boundary = arn
		return struct{ XMLName xml.Name }{}, nil
	})
}

// setTag sets key's value, keeping the tags' order (IAM's tag keys are
// case-insensitive).
func setTag(tags []xmlTag, key, value string) []xmlTag {
	for i := range tags {
		if strings.EqualFold(tags[i].Key, key) {
			tags[i].Value = value
			return tags
		}
	}
	return append(tags, xmlTag{key, value})
}

// IAMWrites counts the mutating IAM calls so far that got past parameter
// validation, refused or not: a plan that must change nothing asserts it
// stays put.
func (e *Emulator) IAMWrites() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.iamWrites
}

// IAMCalls counts every signed IAM call so far, reads included.
func (e *Emulator) IAMCalls() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.iamCalls
}

// onRole runs fn on the caller's role named by RoleName, holding the
// lock; write counts the call as an IAM write.
func (e *Emulator) onRole(caller principal, f formValues, write bool, fn func(*role) (any, *apiError)) (any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if write {
		e.iamWrites++
	}
	r, aerr := e.roleNamed(caller, f.Get("RoleName"))
	if aerr != nil {
		return nil, aerr
	}
	return fn(r)
}
