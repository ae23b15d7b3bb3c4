package awsemu

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Session is a role session the emulator issued.
type Session struct {
	Account       string
	RoleARN       string
	ARN           string // arn:…:sts::ACCOUNT:assumed-role/NAME/SESSION
	AssumedRoleID string // AROA…:SESSION
	SessionName   string
	// Caller is the ARN of the principal that called AssumeRole.
	Caller string
	// Tags are the session's tags: those sent, plus transitive ones carried
	// from the caller's session.
	Tags map[string]string
	// Transitive are the keys of Tags that pass on to chained sessions.
	Transitive  []string
	Policy      string
	ExternalID  string
	Duration    time.Duration
	Expiration  time.Time
	AccessKeyID string

	SessionToken string
	secret       string
}

// AssumeRoleCall records one AssumeRole, granted or not.
type AssumeRoleCall struct {
	Caller  string
	RoleARN string
	// Code is the error code of a refusal, "" when granted.
	Code    string
	Session *Session
}

var (
	sessionNamePattern = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
	externalIDPattern  = regexp.MustCompile(`^[\w+=,.@:/-]+$`)
	roleARNPattern     = regexp.MustCompile(`^arn:(aws[a-zA-Z-]*):iam::(\d{12}):role/(?:[\x21-\x7e]*/)?([\w+=,.@-]{1,64})$`)
)

func (e *Emulator) assumeRole(caller principal, f formValues) (any, *apiError) {
	s, aerr := e.assume(caller, f, "sts:AssumeRole")
	e.mu.Lock()
	call := AssumeRoleCall{Caller: caller.arn, RoleARN: f.Get("RoleArn"), Session: s}
	if aerr != nil {
		call.Code = aerr.Code
	}
	e.calls = append(e.calls, call)
	e.mu.Unlock()
	if aerr != nil {
		return nil, aerr
	}
	return struct {
		sessionResult
		PackedPolicySize int `xml:"PackedPolicySize"`
	}{resultOf(s), packedPercent(s.Policy, s.Tags)}, nil
}

// sessionResult is the part of AssumeRole's and AssumeRoleWithWebIdentity's
// answers that describes the new session.
type sessionResult struct {
	Credentials struct {
		AccessKeyID     string `xml:"AccessKeyId"`
		SecretAccessKey string `xml:"SecretAccessKey"`
		SessionToken    string `xml:"SessionToken"`
		Expiration      string `xml:"Expiration"`
	} `xml:"Credentials"`
	AssumedRoleUser struct {
		Arn           string `xml:"Arn"`
		AssumedRoleID string `xml:"AssumedRoleId"`
	} `xml:"AssumedRoleUser"`
}

func resultOf(s *Session) sessionResult {
	var r sessionResult
	r.Credentials.AccessKeyID, r.Credentials.SecretAccessKey, r.Credentials.SessionToken = s.AccessKeyID, s.secret, s.SessionToken
	r.Credentials.Expiration = s.Expiration.UTC().Format(time.RFC3339)
	r.AssumedRoleUser.Arn, r.AssumedRoleUser.AssumedRoleID = s.ARN, s.AssumedRoleID
	return r
}

// assume validates and evaluates one AssumeRole and, when granted, stores
// the new session.
func (e *Emulator) assume(caller principal, f formValues, action string) (*Session, *apiError) {
	if aerr := e.takeFault(strings.TrimPrefix(action, "sts:")); aerr != nil {
		return nil, aerr
	}
	roleARN, sessionName := f.Get("RoleArn"), f.Get("RoleSessionName")
	m := roleARNPattern.FindStringSubmatch(roleARN)
	if m == nil {
		return nil, errorf("ValidationError", "RoleArn %q is not a role ARN", roleARN)
	}
	if !sessionNamePattern.MatchString(sessionName) {
		return nil, errorf("ValidationError", "1 validation error detected: Value '%s' at 'roleSessionName' failed to satisfy constraint: Member must have length between 2 and 64 and match [\\w+=,.@-]*", sessionName)
	}
	externalID := f.Get("ExternalId")
	if f.Has("ExternalId") && (len(externalID) < 2 || len(externalID) > 1224 || !externalIDPattern.MatchString(externalID)) {
		return nil, errorf("ValidationError", "ExternalId must be 2-1224 characters of [\\w+=,.@:/-]")
	}
	policy := f.Get("Policy")
	if policy != "" {
		if len(policy) > 2048 {
			return nil, errorf("ValidationError", "1 validation error detected: Value at 'policy' failed to satisfy constraint: Member must have length less than or equal to 2048")
		}
		if !json.Valid([]byte(policy)) {
			return nil, errorf("MalformedPolicyDocument", "The policy is not in the valid JSON format.")
		}
	}
	tags, transitive, aerr := sessionTags(caller, f)
	if aerr != nil {
		return nil, aerr
	}
	if packedPercent(policy, tags) > 100 {
		return nil, errorf("PackedPolicyTooLarge", "Packed size of the session policy and session tags consume %d%% of the allotted space; pass fewer tags or a smaller policy.", packedPercent(policy, tags))
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.findRole(m[2], m[3])
	denied := errorf("AccessDenied", "User: %s is not authorized to perform: %s on resource: %s", caller.arn, action, roleARN)
	if r == nil {
		return nil, denied
	}
	req := request{caller: caller, action: action, sessionName: sessionName, externalID: externalID, tags: tags}
	if !r.trust.allows(req) {
		return nil, denied
	}
	if len(tags) > 0 {
		req.action = "sts:TagSession"
		if !r.trust.allows(req) {
			return nil, errorf("AccessDenied", "User: %s is not authorized to perform: sts:TagSession on resource: %s", caller.arn, roleARN)
		}
	}

	duration := 3600
	if v := f.Get("DurationSeconds"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 900 || n > 43200 {
			return nil, errorf("ValidationError", "DurationSeconds must be between 900 and 43200")
		}
		duration = n
	}
	if caller.session != nil && duration > 3600 {
		return nil, errorf("ValidationError", "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.")
	}
	if duration > r.maxSession {
		return nil, errorf("ValidationError", "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
	}

	s := e.newSession(r, sessionName, caller.arn, time.Duration(duration)*time.Second)
	s.Tags, s.Transitive, s.Policy, s.ExternalID = tags, transitive, policy, externalID
	return s, nil
}

// newSession issues credentials of role r, recognised by every service of
// the emulator until they expire. The caller holds e.mu.
func (e *Emulator) newSession(r *role, sessionName, caller string, duration time.Duration) *Session {
	s := &Session{
		Account:       r.account,
		RoleARN:       r.arn,
		ARN:           fmt.Sprintf("arn:%s:sts::%s:assumed-role/%s/%s", e.opts.Partition, r.account, r.name, sessionName),
		AssumedRoleID: r.id + ":" + sessionName,
		SessionName:   sessionName,
		Caller:        caller,
		Duration:      duration,
		Expiration:    e.now().Add(duration).Truncate(time.Second),
		AccessKeyID:   "ASIA" + randomString(upperAlnum, 16),
		SessionToken:  "IQoJb3JpZ2luX2VtdQ" + randomString(base64ish, 300),
		secret:        randomString(base64ish, 40),
	}
	e.keys[s.AccessKeyID] = s
	return s
}

// sessionTags merges the request's tags with the transitive tags of the
// caller's own session, with AWS's limits.
func sessionTags(caller principal, f formValues) (map[string]string, []string, *apiError) {
	keys, values := f.members("Tags", "Key"), f.members("Tags", "Value")
	if len(keys) != len(values) {
		return nil, nil, errorf("ValidationError", "every tag needs a Key and a Value")
	}
	if len(keys) > 50 {
		return nil, nil, errorf("ValidationError", "1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50")
	}
	tags := map[string]string{}
	lower := map[string]bool{}
	var transitive []string
	if caller.session != nil {
		for _, k := range caller.session.Transitive {
			tags[k] = caller.session.Tags[k]
			lower[strings.ToLower(k)] = true
			transitive = append(transitive, k)
		}
	}
	for i, k := range keys {
		v := values[i]
		switch {
		case len(k) < 1 || len(k) > 128:
			return nil, nil, errorf("ValidationError", "tag key %q must be 1-128 characters", k)
		case len(v) > 256:
			return nil, nil, errorf("ValidationError", "the value of tag %q must be at most 256 characters", k)
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return nil, nil, errorf("ValidationError", "tag key %q may not start with aws:", k)
		case lower[strings.ToLower(k)]:
			return nil, nil, errorf("InvalidParameterValue", "tag key %q is already set, either earlier in this request or as a transitive tag of the calling session", k)
		}
		lower[strings.ToLower(k)] = true
		tags[k] = v
	}
	for _, k := range f.members("TransitiveTagKeys", "") {
		if _, ok := tags[k]; !ok {
			return nil, nil, errorf("InvalidParameterValue", "transitive tag key %q is not among the session tags", k)
		}
		transitive = append(transitive, k)
	}
	return tags, transitive, nil
}

// packedPercent estimates how much of STS's packed-policy allowance a session
// policy and tags use. AWS compresses both into a binary form it does not
// document; the emulator deflates the policy, adds the tags' bytes and counts
// against 1,000 bytes, which puts ordinary policies with the six EKS session
// tags well under 100% and a near-2,048-character policy of random text over.
func packedPercent(policy string, tags map[string]string) int {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestCompression)
	w.Write([]byte(policy))
	w.Close()
	size := 0
	if policy != "" {
		size = buf.Len()
	}
	for k, v := range tags {
		size += len(k) + len(v) + 2
	}
	return size * 100 / 1000
}

func (e *Emulator) getCallerIdentity(caller principal, _ formValues) (any, *apiError) {
	if aerr := e.takeFault("GetCallerIdentity"); aerr != nil {
		return nil, aerr
	}
	return struct {
		Arn     string `xml:"Arn"`
		UserID  string `xml:"UserId"`
		Account string `xml:"Account"`
	}{caller.arn, caller.userID, caller.account}, nil
}
