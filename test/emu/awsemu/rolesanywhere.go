package awsemu

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/podid/podid/internal/awsjson"
	"github.com/podid/podid/internal/rolesanywhere"
	"github.com/podid/podid/internal/sigv4"
)

// IAM Roles Anywhere: the control plane (trust anchors, profiles, CRLs, in
// REST-JSON signed with SigV4 as "rolesanywhere") for aws-sdk-go-v2's
// rolesanywhere client, and CreateSession, signed with a certificate's key
// (sigv4.VerifyX509), which checks what AWS checks: the signature, the
// chain from the certificate through the intermediates it sent to a CA of
// the trust anchor, validity on the emulator's clock, CRLs imported for the
// anchor, that anchor and profile are enabled, that the profile lists the
// role, and the role's trust for the service principal
// rolesanywhere.amazonaws.com (sts:AssumeRole, sts:TagSession and
// sts:SetSourceIdentity, with aws:SourceArn the trust anchor and the
// certificate's attributes as aws:PrincipalTag/x509Subject/CN and the like).
// The session it issues is one of the emulator's, accepted by its STS.

type trustAnchor struct {
	ID, ARN, Name string
	Bundle        string // PEM
	cas           []*x509.Certificate
	Enabled       bool
	created       time.Time
	updated       time.Time
}

type raProfile struct {
	ID, ARN, Name   string
	RoleARNs        []string
	DurationSeconds int
	Enabled         bool
	created         time.Time
	updated         time.Time
}

type raCRL struct {
	ID, ARN, Name, TrustAnchorARN string
	Enabled                       bool
	revoked                       map[string]bool // serial numbers, decimal
	data                          []byte
	created                       time.Time
}

// rolesAnywhere is the emulator's Roles Anywhere state, guarded by e.mu.
type rolesAnywhere struct {
	anchors  map[string]*trustAnchor // by ID
	profiles map[string]*raProfile
	crls     map[string]*raCRL
	sessions int
}

func isRolesAnywherePath(p string) bool {
	for _, prefix := range []string{"/trustanchor", "/profile", "/crl", "/sessions"} {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

func raError(w http.ResponseWriter, status int, code, format string, args ...any) {
	awsjson.WriteError(w, &awsjson.Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)})
}

func (e *Emulator) serveRolesAnywhere(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/sessions" {
		e.createSession(w, r)
		return
	}
	res, err := e.raVerifier.Verify(r)
	if err != nil {
		var verr *sigv4.Error
		if errors.As(err, &verr) {
			awsjson.WriteError(w, awsjson.FromSigV4(verr, err))
			return
		}
		raError(w, http.StatusInternalServerError, "InternalServerException", "%v", err)
		return
	}
	caller := res.Key.Principal.(principal)
	region := res.Region
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	e.mu.Lock()
	defer e.mu.Unlock()
	var out any
	var aerr *awsjson.Error
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/trustanchors":
		out, aerr = e.raCreateTrustAnchor(caller, region, res.Body)
	case r.Method == http.MethodGet && r.URL.Path == "/trustanchors":
		var list []any
		for _, a := range sortedByName(e.rolesAnywhere.anchors, func(a *trustAnchor) string { return a.Name }) {
			list = append(list, a.detail())
		}
		out, aerr = raPage("trustAnchors", list, r.URL.Query())
	case r.Method == http.MethodPost && r.URL.Path == "/profiles":
		out, aerr = e.raCreateProfile(caller, region, res.Body)
	case r.Method == http.MethodGet && r.URL.Path == "/profiles":
		var list []any
		for _, p := range sortedByName(e.rolesAnywhere.profiles, func(p *raProfile) string { return p.Name }) {
			list = append(list, p.detail())
		}
		out, aerr = raPage("profiles", list, r.URL.Query())
	case r.Method == http.MethodPost && r.URL.Path == "/crls":
		out, aerr = e.raImportCRL(caller, region, res.Body)
	case len(parts) >= 2 && parts[0] == "trustanchor":
		out, aerr = e.raTrustAnchorOp(r.Method, parts, res.Body)
	case len(parts) >= 2 && parts[0] == "profile":
		out, aerr = e.raProfileOp(r.Method, parts, res.Body)
	default:
		aerr = &awsjson.Error{Status: http.StatusNotFound, Code: "ResourceNotFoundException", Message: fmt.Sprintf("the emulator does not serve %s %s", r.Method, r.URL.Path)}
	}
	if aerr != nil {
		e.log.Info("refused", "action", "rolesanywhere "+r.Method+" "+r.URL.Path, "caller", caller.arn, "code", aerr.Code, "reason", aerr.Message)
		awsjson.WriteError(w, aerr)
		return
	}
	awsjson.WriteJSON(w, out)
}

// raPage is one page of a Roles Anywhere list, as AWS pages them: pageSize
// items (default 50) from nextToken, and the token of the next page when
// there is one, so that a client reading only the first page misses some.
func raPage(key string, list []any, q url.Values) (map[string]any, *awsjson.Error) {
	size, start := 50, 0
	if v := q.Get("pageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 50 {
			return nil, validation("pageSize %q: it must be between 1 and 50", v)
		}
		size = n
	}
	if v := q.Get("nextToken"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > len(list) {
			return nil, validation("nextToken %q is not one this list gave", v)
		}
		start = n
	}
	end := min(start+size, len(list))
	out := map[string]any{key: list[start:end]}
	if end < len(list) {
		out["nextToken"] = strconv.Itoa(end)
	}
	return out, nil
}

func sortedByName[T any](m map[string]T, name func(T) string) []T {
	out := make([]T, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return name(out[i]) < name(out[j]) })
	return out
}

func validation(format string, args ...any) *awsjson.Error {
	return &awsjson.Error{Status: http.StatusBadRequest, Code: "ValidationException", Message: fmt.Sprintf(format, args...)}
}

func notFound(kind, id string) *awsjson.Error {
	return &awsjson.Error{Status: http.StatusNotFound, Code: "ResourceNotFoundException", Message: fmt.Sprintf("%s %s not found", kind, id)}
}

func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func (a *trustAnchor) detail() map[string]any {
	return map[string]any{
		"trustAnchorId": a.ID, "trustAnchorArn": a.ARN, "name": a.Name, "enabled": a.Enabled,
		"source":    map[string]any{"sourceType": "CERTIFICATE_BUNDLE", "sourceData": map[string]any{"x509CertificateData": a.Bundle}},
		"createdAt": timestamp(a.created), "updatedAt": timestamp(a.updated),
	}
}

func (p *raProfile) detail() map[string]any {
	return map[string]any{
		"profileId": p.ID, "profileArn": p.ARN, "name": p.Name, "enabled": p.Enabled, "roleArns": p.RoleARNs,
		"durationSeconds": p.DurationSeconds, "createdAt": timestamp(p.created), "updatedAt": timestamp(p.updated),
	}
}

// parseBundle reads the CA certificates of a trust anchor's bundle (PEM).
func parseBundle(bundle string) ([]*x509.Certificate, *awsjson.Error) {
	cas, err := rolesanywhere.ParseCABundle([]byte(bundle))
	if err != nil {
		return nil, validation("x509CertificateData: %v", err)
	}
	return cas, nil
}

type anchorSource struct {
	SourceType string `json:"sourceType"`
	SourceData struct {
		X509CertificateData string `json:"x509CertificateData"`
		AcmPcaArn           string `json:"acmPcaArn"`
	} `json:"sourceData"`
}

func (src anchorSource) bundle() ([]*x509.Certificate, *awsjson.Error) {
	if src.SourceType != "CERTIFICATE_BUNDLE" {
		return nil, validation("the emulator accepts sourceType CERTIFICATE_BUNDLE only (not %q)", src.SourceType)
	}
	return parseBundle(src.SourceData.X509CertificateData)
}

func (e *Emulator) raCreateTrustAnchor(caller principal, region string, body []byte) (any, *awsjson.Error) {
	var in struct {
		Name    string       `json:"name"`
		Source  anchorSource `json:"source"`
		Enabled *bool        `json:"enabled"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.Name == "" {
		return nil, validation("a trust anchor needs a name and a source")
	}
	cas, aerr := in.Source.bundle()
	if aerr != nil {
		return nil, aerr
	}
	id := newUUID()
	now := e.now()
	a := &trustAnchor{ID: id, ARN: fmt.Sprintf("arn:%s:rolesanywhere:%s:%s:trust-anchor/%s", e.opts.Partition, region, caller.account, id),
		Name: in.Name, Bundle: in.Source.SourceData.X509CertificateData, cas: cas, Enabled: in.Enabled == nil || *in.Enabled, created: now, updated: now}
	e.rolesAnywhere.anchors[id] = a
	return map[string]any{"trustAnchor": a.detail()}, nil
}

func (e *Emulator) raTrustAnchorOp(method string, parts []string, body []byte) (any, *awsjson.Error) {
	a, ok := e.rolesAnywhere.anchors[parts[1]]
	if !ok {
		return nil, notFound("trust anchor", parts[1])
	}
	switch {
	case method == http.MethodGet && len(parts) == 2:
	case method == http.MethodPatch && len(parts) == 2:
		var in struct {
			Name   string        `json:"name"`
			Source *anchorSource `json:"source"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			return nil, validation("the body is not JSON: %v", err)
		}
		if in.Source != nil {
			cas, aerr := in.Source.bundle()
			if aerr != nil {
				return nil, aerr
			}
			a.cas, a.Bundle = cas, in.Source.SourceData.X509CertificateData
		}
		if in.Name != "" {
			a.Name = in.Name
		}
		a.updated = e.now()
	case method == http.MethodPost && len(parts) == 3 && (parts[2] == "enable" || parts[2] == "disable"):
		a.Enabled, a.updated = parts[2] == "enable", e.now()
	default:
		return nil, notFound("operation on trust anchor", strings.Join(parts[2:], "/"))
	}
	return map[string]any{"trustAnchor": a.detail()}, nil
}

func (e *Emulator) raCreateProfile(caller principal, region string, body []byte) (any, *awsjson.Error) {
	var in struct {
		Name            string   `json:"name"`
		RoleARNs        []string `json:"roleArns"`
		DurationSeconds *int     `json:"durationSeconds"`
		Enabled         *bool    `json:"enabled"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.Name == "" {
		return nil, validation("a profile needs a name")
	}
	duration, aerr := profileDuration(in.DurationSeconds, 3600)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := checkRoleARNs(in.RoleARNs); aerr != nil {
		return nil, aerr
	}
	id := newUUID()
	now := e.now()
	p := &raProfile{ID: id, ARN: fmt.Sprintf("arn:%s:rolesanywhere:%s:%s:profile/%s", e.opts.Partition, region, caller.account, id),
		Name: in.Name, RoleARNs: in.RoleARNs, DurationSeconds: duration, Enabled: in.Enabled != nil && *in.Enabled, created: now, updated: now}
	e.rolesAnywhere.profiles[id] = p
	return map[string]any{"profile": p.detail()}, nil
}

// checkRoleARNs refuses a profile's role that is not a role ARN, as AWS
// does on CreateProfile and UpdateProfile.
func checkRoleARNs(arns []string) *awsjson.Error {
	for _, arn := range arns {
		if !roleARNPattern.MatchString(arn) {
			return validation("roleArns: %q is not a role ARN", arn)
		}
	}
	return nil
}

func profileDuration(v *int, def int) (int, *awsjson.Error) {
	if v == nil {
		return def, nil
	}
	if *v < 900 || *v > 43200 {
		return 0, validation("1 validation error detected: Value '%d' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200", *v)
	}
	return *v, nil
}

func (e *Emulator) raProfileOp(method string, parts []string, body []byte) (any, *awsjson.Error) {
	p, ok := e.rolesAnywhere.profiles[parts[1]]
	if !ok {
		return nil, notFound("profile", parts[1])
	}
	switch {
	case method == http.MethodGet && len(parts) == 2:
	case method == http.MethodPatch && len(parts) == 2:
		var in struct {
			Name            string   `json:"name"`
			RoleARNs        []string `json:"roleArns"`
			DurationSeconds *int     `json:"durationSeconds"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			return nil, validation("the body is not JSON: %v", err)
		}
		duration, aerr := profileDuration(in.DurationSeconds, p.DurationSeconds)
		if aerr != nil {
			return nil, aerr
		}
		if aerr := checkRoleARNs(in.RoleARNs); aerr != nil {
			return nil, aerr
		}
		p.DurationSeconds = duration
		if in.RoleARNs != nil {
			p.RoleARNs = in.RoleARNs
		}
		if in.Name != "" {
			p.Name = in.Name
		}
		p.updated = e.now()
	case method == http.MethodPost && len(parts) == 3 && (parts[2] == "enable" || parts[2] == "disable"):
		p.Enabled, p.updated = parts[2] == "enable", e.now()
	default:
		return nil, notFound("operation on profile", strings.Join(parts[2:], "/"))
	}
	return map[string]any{"profile": p.detail()}, nil
}

func (e *Emulator) raImportCRL(caller principal, region string, body []byte) (any, *awsjson.Error) {
	var in struct {
		Name           string `json:"name"`
		CRLData        []byte `json:"crlData"` // base64 in JSON, as the SDK sends a blob
		TrustAnchorARN string `json:"trustAnchorArn"`
		Enabled        *bool  `json:"enabled"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.Name == "" {
		return nil, validation("a CRL needs a name, crlData and a trustAnchorArn")
	}
	anchor := e.anchorByARN(in.TrustAnchorARN)
	if anchor == nil {
		return nil, notFound("trust anchor", in.TrustAnchorARN)
	}
	der := in.CRLData
	if block, _ := pem.Decode(der); block != nil {
		der = block.Bytes
	}
	list, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, validation("crlData is not an X.509 v2 CRL: %v", err)
	}
	signed := false
	for _, ca := range anchor.cas {
		if list.CheckSignatureFrom(ca) == nil {
			signed = true
		}
	}
	if !signed {
		return nil, validation("the CRL is not signed by a CA of trust anchor %s", anchor.ARN)
	}
	id := newUUID()
	c := &raCRL{ID: id, ARN: fmt.Sprintf("arn:%s:rolesanywhere:%s:%s:crl/%s", e.opts.Partition, region, caller.account, id),
		Name: in.Name, TrustAnchorARN: anchor.ARN, Enabled: in.Enabled == nil || *in.Enabled, revoked: map[string]bool{}, data: in.CRLData, created: e.now()}
	for _, entry := range list.RevokedCertificateEntries {
		c.revoked[entry.SerialNumber.String()] = true
	}
	e.rolesAnywhere.crls[id] = c
	return map[string]any{"crl": map[string]any{
		"crlId": c.ID, "crlArn": c.ARN, "name": c.Name, "enabled": c.Enabled, "trustAnchorArn": c.TrustAnchorARN,
		"crlData": c.data, "createdAt": timestamp(c.created), "updatedAt": timestamp(c.created),
	}}, nil
}

func (e *Emulator) anchorByARN(arn string) *trustAnchor {
	for _, a := range e.rolesAnywhere.anchors {
		if a.ARN == arn {
			return a
		}
	}
	return nil
}

func (e *Emulator) profileByARN(arn string) *raProfile {
	for _, p := range e.rolesAnywhere.profiles {
		if p.ARN == arn {
			return p
		}
	}
	return nil
}

// createSession is CreateSession: credentials of a role for the holder of a
// certificate a trust anchor vouches for.
func (e *Emulator) createSession(w http.ResponseWriter, r *http.Request) {
	denied := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		e.log.Info("refused", "action", "CreateSession", "code", "AccessDeniedException", "reason", msg)
		raError(w, http.StatusForbidden, "AccessDeniedException", "%s", msg)
	}
	if aerr := e.takeFault("CreateSession"); aerr != nil {
		status := http.StatusBadRequest
		if aerr.Code == "ThrottlingException" || aerr.Code == "Throttling" {
			status = http.StatusTooManyRequests
		}
		raError(w, status, aerr.Code, "%s", aerr.Message)
		return
	}
	now := e.now()
	res, err := sigv4.VerifyX509(r, "rolesanywhere", now, maxBody)
	if err != nil {
		var verr *sigv4.Error
		if errors.As(err, &verr) {
			awsjson.WriteError(w, awsjson.FromSigV4(verr, err))
			return
		}
		raError(w, http.StatusBadRequest, "ValidationException", "%v", err)
		return
	}
	q := r.URL.Query()
	var in struct {
		DurationSeconds *int   `json:"durationSeconds"`
		RoleSessionName string `json:"roleSessionName"`
	}
	if len(res.Body) > 0 {
		if err := json.Unmarshal(res.Body, &in); err != nil {
			raError(w, http.StatusBadRequest, "ValidationException", "the body is not JSON: %v", err)
			return
		}
	}
	if in.RoleSessionName != "" {
		raError(w, http.StatusBadRequest, "ValidationException", "the profile does not accept a role session name (acceptRoleSessionName is false)")
		return
	}
	cert := res.Certificate

	e.mu.Lock()
	defer e.mu.Unlock()
	e.rolesAnywhere.sessions++
	anchor := e.anchorByARN(q.Get("trustAnchorArn"))
	profile := e.profileByARN(q.Get("profileArn"))
	roleARN := q.Get("roleArn")
	switch {
	case anchor == nil:
		raError(w, http.StatusNotFound, "ResourceNotFoundException", "Trust anchor %s not found", q.Get("trustAnchorArn"))
		return
	case profile == nil:
		raError(w, http.StatusNotFound, "ResourceNotFoundException", "Profile %s not found", q.Get("profileArn"))
		return
	case !anchor.Enabled:
		denied("Trust anchor %s is disabled", anchor.ARN)
		return
	case !profile.Enabled:
		denied("Profile %s is disabled", profile.ARN)
		return
	}
	if cert.IsCA || cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		denied("Untrusted Signing Certificate: the end-entity certificate must not be a CA and must allow digitalSignature")
		return
	}
	if now.Before(cert.NotBefore) {
		denied("Certificate is not yet valid: valid from %s", timestamp(cert.NotBefore))
		return
	}
	if !now.Before(cert.NotAfter) {
		denied("Certificate expired at %s", timestamp(cert.NotAfter))
		return
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, ca := range anchor.cas {
		roots.AddCert(ca)
	}
	for _, c := range res.Chain {
		inter.AddCert(c)
	}
	chains, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		denied("Untrusted Signing Certificate: %v", err)
		return
	}
	for _, c := range e.rolesAnywhere.crls {
		if !c.Enabled || c.TrustAnchorARN != anchor.ARN {
			continue
		}
		for _, link := range chains[0] {
			if c.revoked[link.SerialNumber.String()] {
				denied("Certificate revoked: serial number %s is on CRL %s", link.SerialNumber, c.Name)
				return
			}
		}
	}
	if !slices.Contains(profile.RoleARNs, roleARN) {
		denied("The role %s is not among the roles of profile %s", roleARN, profile.ARN)
		return
	}
	m := roleARNPattern.FindStringSubmatch(roleARN)
	var role *role
	if m != nil {
		role = e.findRole(m[2], m[3])
	}
	tags := certificateTags(cert)
	caller := principal{service: rolesanywhere.Service, arn: rolesanywhere.Service}
	for _, action := range []string{"sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"} {
		if role == nil || !role.trust.allows(request{caller: caller, action: action, sourceARN: anchor.ARN, principalTags: tags}) {
			denied("Unable to assume role %s: its trust policy does not allow %s to %s for this certificate (trust anchor %s, subject %s)", roleARN, rolesanywhere.Service, action, anchor.ARN, cert.Subject)
			return
		}
	}
	duration := profile.DurationSeconds
	if in.DurationSeconds != nil {
		if *in.DurationSeconds < 900 || *in.DurationSeconds > 43200 {
			raError(w, http.StatusBadRequest, "ValidationException", "durationSeconds must be between 900 and 43200")
			return
		}
		duration = min(duration, *in.DurationSeconds)
	}
	if duration > role.maxSession {
		raError(w, http.StatusBadRequest, "ValidationException", "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
		return
	}
	s := e.newSession(role, cert.SerialNumber.Text(16), rolesanywhere.Service, time.Duration(duration)*time.Second)
	s.Tags = tags
	awsjson.WriteJSON(w, map[string]any{
		"credentialSet": []any{map[string]any{
			"assumedRoleUser": map[string]any{"arn": s.ARN, "assumedRoleId": s.AssumedRoleID},
			"credentials": map[string]any{
				"accessKeyId": s.AccessKeyID, "secretAccessKey": s.secret, "sessionToken": s.SessionToken,
				"expiration": timestamp(s.Expiration),
			},
			"packedPolicySize": 0,
			"roleArn":          role.arn,
			"sourceIdentity":   "CN=" + cert.Subject.CommonName,
		}},
		"subjectArn": fmt.Sprintf("arn:%s:rolesanywhere:%s:%s:subject/%s", e.opts.Partition, res.Region, role.account, stableID(cert.Subject.String(), 32)),
	})
}

// certificateTags are the certificate's attributes as Roles Anywhere maps
// them to principal tags: x509Subject/<RDN>, x509Issuer/<RDN>, x509SAN/DNS,
// x509SAN/URI (the first of each).
func certificateTags(cert *x509.Certificate) map[string]string {
	tags := map[string]string{}
	add := func(prefix, cn string, o, ou, c []string) {
		if cn != "" {
			tags[prefix+"/CN"] = cn
		}
		for key, values := range map[string][]string{"O": o, "OU": ou, "C": c} {
			if len(values) > 0 {
				tags[prefix+"/"+key] = values[0]
			}
		}
	}
	add("x509Subject", cert.Subject.CommonName, cert.Subject.Organization, cert.Subject.OrganizationalUnit, cert.Subject.Country)
	add("x509Issuer", cert.Issuer.CommonName, cert.Issuer.Organization, cert.Issuer.OrganizationalUnit, cert.Issuer.Country)
	if len(cert.DNSNames) > 0 {
		tags["x509SAN/DNS"] = cert.DNSNames[0]
	}
	if len(cert.URIs) > 0 {
		tags["x509SAN/URI"] = cert.URIs[0].String()
	}
	return tags
}

// newUUID is a random version-4 UUID, as Roles Anywhere names resources.
func newUUID() string {
	b := []byte(randomString("0123456789abcdef", 32))
	b[12] = '4'
	return fmt.Sprintf("%s-%s-%s-%s-%s", b[0:8], b[8:12], b[12:16], b[16:20], b[20:32])
}

// CreateSessionCalls counts CreateSession requests that reached the
// emulator's checks (granted or refused after the signature verified).
func (e *Emulator) CreateSessionCalls() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rolesAnywhere.sessions
}
