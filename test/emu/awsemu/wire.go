package awsemu

import (
	"bytes"
	"crypto/sha256"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
)

const (
	stsNamespace = "https://sts.amazonaws.com/doc/2011-06-15/"
	iamNamespace = "https://iam.amazonaws.com/doc/2010-05-08/"
	maxBody      = 256 << 10
)

// operation is one query-protocol action.
type operation struct {
	service string // signing name
	ns      string // XML namespace of the response
	run     func(e *Emulator, caller principal, form formValues) (any, *apiError)
	// anonymous actions are not signed (the caller proves itself otherwise).
	anonymous bool
}

var operations = map[string]operation{
	"AssumeRole":                  {"sts", stsNamespace, (*Emulator).assumeRole, false},
	"GetCallerIdentity":           {"sts", stsNamespace, (*Emulator).getCallerIdentity, false},
	"AssumeRoleWithWebIdentity":   {"sts", stsNamespace, (*Emulator).assumeRoleWithWebIdentity, true},
	"CreateRole":                  {"iam", iamNamespace, (*Emulator).createRole, false},
	"GetRole":                     {"iam", iamNamespace, (*Emulator).getRole, false},
	"ListRoles":                   {"iam", iamNamespace, (*Emulator).listRoles, false},
	"UpdateAssumeRolePolicy":      {"iam", iamNamespace, (*Emulator).updateAssumeRolePolicy, false},
	"UpdateRole":                  {"iam", iamNamespace, (*Emulator).updateRole, false},
	"DeleteRole":                  {"iam", iamNamespace, (*Emulator).deleteRole, false},
	"CreatePolicy":                {"iam", iamNamespace, (*Emulator).createPolicy, false},
	"DeletePolicy":                {"iam", iamNamespace, (*Emulator).deletePolicy, false},
	"AttachRolePolicy":            {"iam", iamNamespace, (*Emulator).attachRolePolicy, false},
	"DetachRolePolicy":            {"iam", iamNamespace, (*Emulator).detachRolePolicy, false},
	"ListAttachedRolePolicies":    {"iam", iamNamespace, (*Emulator).listAttachedRolePolicies, false},
	"PutRolePolicy":               {"iam", iamNamespace, (*Emulator).putRolePolicy, false},
	"GetRolePolicy":               {"iam", iamNamespace, (*Emulator).getRolePolicy, false},
	"DeleteRolePolicy":            {"iam", iamNamespace, (*Emulator).deleteRolePolicy, false},
	"ListRolePolicies":            {"iam", iamNamespace, (*Emulator).listRolePolicies, false},
	"TagRole":                     {"iam", iamNamespace, (*Emulator).tagRole, false},
	"UntagRole":                   {"iam", iamNamespace, (*Emulator).untagRole, false},
	"ListRoleTags":                {"iam", iamNamespace, (*Emulator).listRoleTags, false},
	"PutRolePermissionsBoundary":  {"iam", iamNamespace, (*Emulator).putRolePermissionsBoundary, false},
	"ListOpenIDConnectProviders":  {"iam", iamNamespace, (*Emulator).listOpenIDConnectProviders, false},
	"DeleteOpenIDConnectProvider": {"iam", iamNamespace, (*Emulator).deleteOpenIDConnectProvider, false},
}

func operationNames() string {
	names := make([]string, 0, len(operations))
	for n := range operations {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// apiError is an AWS error as the query protocol sends it.
type apiError struct {
	Code    string
	Message string
	Status  int // zero: derived from Code
}

func (e *apiError) status() int {
	if e.Status != 0 {
		return e.Status
	}
	switch e.Code {
	case "AccessDenied", "InvalidClientTokenId", "RegionDisabledException":
		return http.StatusForbidden
	case "NoSuchEntity":
		return http.StatusNotFound
	case "EntityAlreadyExists", "DeleteConflict", "LimitExceeded":
		return http.StatusConflict
	case "Throttling":
		return http.StatusBadRequest // STS sends Throttling with 400; the SDK retries it by code
	case "InternalFailure":
		return http.StatusInternalServerError
	case "ServiceUnavailable":
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}

func errorf(code, format string, args ...any) *apiError {
	return &apiError{Code: code, Message: fmt.Sprintf(format, args...)}
}

func writeError(w http.ResponseWriter, status int, e *apiError) {
	type errBody struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	type errorResponse struct {
		XMLName   xml.Name `xml:"ErrorResponse"`
		Xmlns     string   `xml:"xmlns,attr"`
		Error     errBody  `xml:"Error"`
		RequestID string   `xml:"RequestId"`
	}
	kind := "Sender"
	if status >= 500 {
		kind = "Receiver"
	}
	body, _ := xml.Marshal(errorResponse{Xmlns: stsNamespace, Error: errBody{kind, e.Code, e.Message}, RequestID: requestID()})
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	w.Write(body)
}

func writeResult(w http.ResponseWriter, action, ns string, result any) {
	var buf bytes.Buffer
	enc := xml.NewEncoder(&buf)
	start := xml.StartElement{Name: xml.Name{Local: action + "Response"}, Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: ns}}}
	enc.EncodeToken(start)
	if err := enc.EncodeElement(result, xml.StartElement{Name: xml.Name{Local: action + "Result"}}); err != nil {
		writeError(w, http.StatusInternalServerError, errorf("InternalFailure", "encoding the response: %v", err))
		return
	}
	type meta struct {
		RequestID string `xml:"RequestId"`
	}
	enc.EncodeElement(meta{requestID()}, xml.StartElement{Name: xml.Name{Local: "ResponseMetadata"}})
	enc.EncodeToken(start.End())
	enc.Flush()
	w.Header().Set("Content-Type", "text/xml")
	w.Write(buf.Bytes())
}

func requestID() string {
	return strings.ToLower(randomString(upperAlnum, 8) + "-" + randomString(upperAlnum, 4) + "-" + randomString(upperAlnum, 12))
}

// readAll reads a bounded body and puts it back for the signature check.
func readAll(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("request body is larger than %d bytes", maxBody)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

// accessKeyOf pulls the access key ID out of a SigV4 Authorization header.
func accessKeyOf(authz string) string {
	_, cred, ok := strings.Cut(authz, "Credential=")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(cred, "/")
	return id
}

// stableID derives n characters of upperAlnum from s, for IDs that must be
// the same every time (user IDs).
func stableID(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	out := make([]byte, n)
	for i := range out {
		out[i] = upperAlnum[int(sum[i%len(sum)])%len(upperAlnum)]
	}
	return string(out)
}

// formValues reads query-protocol parameters, including lists such as
// Tags.member.N.Key.
type formValues map[string][]string

func (f formValues) Get(key string) string {
	if v := f[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (f formValues) Has(key string) bool { _, ok := f[key]; return ok }

// members returns prefix.member.1, prefix.member.2, … until one is missing.
func (f formValues) members(prefix string, field string) []string {
	var out []string
	for i := 1; ; i++ {
		key := fmt.Sprintf("%s.member.%d", prefix, i)
		if field != "" {
			key += "." + field
		}
		v, ok := f[key]
		if !ok {
			return out
		}
		out = append(out, v[0])
	}
}
