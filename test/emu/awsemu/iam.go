package awsemu

import (
	"encoding/xml"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// role is an IAM role.
type role struct {
	account, name, path, id string
	arn                     string
	trustDoc                string
	trust                   *policyDocument
	maxSession              int
	description             string
	created                 time.Time
	tags                    []xmlTag
	// attached are managed policy ARNs, inline policies by name, boundary
	// the permissions boundary's ARN.
	attached []string
	inline   map[string]string
	boundary string
}

type xmlBoundary struct {
	PermissionsBoundaryType string `xml:"PermissionsBoundaryType"`
	PermissionsBoundaryArn  string `xml:"PermissionsBoundaryArn"`
}

type xmlTag struct {
	Key   string `xml:"Key"`
	Value string `xml:"Value"`
}

type xmlRole struct {
	Path                     string       `xml:"Path"`
	RoleName                 string       `xml:"RoleName"`
	RoleID                   string       `xml:"RoleId"`
	Arn                      string       `xml:"Arn"`
	CreateDate               string       `xml:"CreateDate"`
	AssumeRolePolicyDocument string       `xml:"AssumeRolePolicyDocument"`
	Description              string       `xml:"Description,omitempty"`
	MaxSessionDuration       int          `xml:"MaxSessionDuration"`
	Tags                     []xmlTag     `xml:"Tags>member,omitempty"`
	PermissionsBoundary      *xmlBoundary `xml:"PermissionsBoundary,omitempty"`
}

func (r *role) wire() xmlRole {
	var boundary *xmlBoundary
	if r.boundary != "" {
		boundary = &xmlBoundary{"Policy", r.boundary}
	}
	return xmlRole{
		PermissionsBoundary: boundary,
		Path:                r.path, RoleName: r.name, RoleID: r.id, Arn: r.arn,
		CreateDate: r.created.UTC().Format(time.RFC3339),
		// IAM returns policy documents URL-encoded.
		AssumeRolePolicyDocument: strings.ReplaceAll(url.QueryEscape(r.trustDoc), "+", "%20"),
		Description:              r.description,
		MaxSessionDuration:       r.maxSession,
		Tags:                     r.tags,
	}
}

var (
	roleNamePattern = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
	rolePathPattern = regexp.MustCompile(`^/([\x21-\x7e]*/)?$`)
)

func (e *Emulator) createRole(caller principal, f formValues) (any, *apiError) {
	name, rolePath := f.Get("RoleName"), f.Get("Path")
	if !roleNamePattern.MatchString(name) {
		return nil, errorf("ValidationError", "RoleName %q must be 1-64 characters of letters, digits and +=,.@_-", name)
	}
	if rolePath == "" {
		rolePath = "/"
	}
	if len(rolePath) > 512 || !rolePathPattern.MatchString(rolePath) {
		return nil, errorf("ValidationError", "Path %q must begin and end with '/'", rolePath)
	}
	doc := f.Get("AssumeRolePolicyDocument")
	if doc == "" {
		return nil, errorf("ValidationError", "AssumeRolePolicyDocument is required")
	}
	trust, aerr := parseTrustPolicy(doc)
	if aerr != nil {
		return nil, aerr
	}
	maxSession := 3600
	if v := f.Get("MaxSessionDuration"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 3600 || n > 43200 {
			return nil, errorf("ValidationError", "MaxSessionDuration must be between 3600 and 43200 seconds")
		}
		maxSession = n
	}
	r := &role{
		account: caller.account, name: name, path: rolePath,
		id:       "AROA" + randomString(upperAlnum, 17),
		arn:      "arn:" + e.opts.Partition + ":iam::" + caller.account + ":role" + rolePath + name,
		trustDoc: doc, trust: trust, maxSession: maxSession,
		description: f.Get("Description"),
		created:     e.now(),
	}
	keys, values := f.members("Tags", "Key"), f.members("Tags", "Value")
	for i := range keys {
		if i < len(values) {
			r.tags = append(r.tags, xmlTag{keys[i], values[i]})
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.iamWrites++
	if b := f.Get("PermissionsBoundary"); b != "" {
		if !e.policyExists(b) {
			return nil, errorf("NoSuchEntity", "Scope ARN: %s does not exist or is not attachable.", b)
		}
		r.boundary = b
	}
	if e.findRole(caller.account, name) != nil {
		return nil, errorf("EntityAlreadyExists", "Role with name %s already exists.", name)
	}
	e.roles[r.arn] = r
	return struct {
		Role xmlRole `xml:"Role"`
	}{r.wire()}, nil
}

// findRole looks a role up by account and name. Callers hold e.mu.
func (e *Emulator) findRole(account, name string) *role {
	for _, r := range e.roles {
		if r.account == account && strings.EqualFold(r.name, name) {
			return r
		}
	}
	return nil
}

// roleNamed finds the caller's role by name, or NoSuchEntity. Callers hold e.mu.
func (e *Emulator) roleNamed(caller principal, name string) (*role, *apiError) {
	if r := e.findRole(caller.account, name); r != nil {
		return r, nil
	}
	return nil, errorf("NoSuchEntity", "The role with name %s cannot be found.", name)
}

func (e *Emulator) getRole(caller principal, f formValues) (any, *apiError) {
	return e.onRole(caller, f, false, func(r *role) (any, *apiError) {
		return struct {
			Role xmlRole `xml:"Role"`
		}{r.wire()}, nil
	})
}

func (e *Emulator) listRoles(caller principal, f formValues) (any, *apiError) {
	prefix := f.Get("PathPrefix")
	if prefix == "" {
		prefix = "/"
	}
	e.mu.Lock()
	var roles []xmlRole
	for _, r := range e.roles {
		if r.account == caller.account && strings.HasPrefix(r.path, prefix) {
			roles = append(roles, r.wire())
		}
	}
	e.mu.Unlock()
	sort.Slice(roles, func(i, j int) bool { return roles[i].RoleName < roles[j].RoleName })
	return struct {
		Roles       []xmlRole `xml:"Roles>member"`
		IsTruncated bool      `xml:"IsTruncated"`
	}{Roles: roles}, nil
}

func (e *Emulator) updateAssumeRolePolicy(caller principal, f formValues) (any, *apiError) {
	doc := f.Get("PolicyDocument")
	trust, aerr := parseTrustPolicy(doc)
	if aerr != nil {
		return nil, aerr
	}
	return e.onRole(caller, f, true, func(r *role) (any, *apiError) {
		r.trustDoc, r.trust = doc, trust
		return struct{ XMLName xml.Name }{}, nil
	})
}

func (e *Emulator) updateRole(caller principal, f formValues) (any, *apiError) {
	return e.onRole(caller, f, true, func(r *role) (any, *apiError) {
		if v := f.Get("MaxSessionDuration"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 3600 || n > 43200 {
				return nil, errorf("ValidationError", "MaxSessionDuration must be between 3600 and 43200 seconds")
			}
			r.maxSession = n
		}
		if f.Has("Description") {
			r.description = f.Get("Description")
		}
		return struct{ XMLName xml.Name }{}, nil
	})
}

func (e *Emulator) deleteRole(caller principal, f formValues) (any, *apiError) {
	return e.onRole(caller, f, true, func(r *role) (any, *apiError) {
		// As IAM: policies first.
		if len(r.attached) > 0 {
			return nil, errorf("DeleteConflict", "Cannot delete entity, must detach all policies first.")
		}
		if len(r.inline) > 0 {
			return nil, errorf("DeleteConflict", "Cannot delete entity, must delete policies first.")
		}
		delete(e.roles, r.arn)
		return struct{ XMLName xml.Name }{}, nil
	})
}
