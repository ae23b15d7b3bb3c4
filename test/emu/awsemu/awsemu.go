// Package awsemu is an emulator of the parts of AWS STS, IAM and ECR that podid
// relies on, for tests and the sandbox, where AWS itself is unreachable.
//
// It speaks the AWS query protocol over HTTP, so it is driven with the
// unmodified aws-sdk-go-v2 sts and iam clients (endpoint override), and it
// verifies every request's SigV4 signature against the keys it knows: the
// users it was started with, and the temporary credentials it issued.
//
// What it emulates:
//   - IAM CreateRole (path, tags, permissions boundary, MaxSessionDuration),
//     GetRole, UpdateAssumeRolePolicy, UpdateRole (MaxSessionDuration),
//     DeleteRole (refused while policies are attached or inline, as in IAM),
//     ListRoles; CreatePolicy/DeletePolicy (customer managed; AWS managed
//     policies are taken as existing), Attach/Detach/ListAttachedRolePolicies,
//     Put/Get/Delete/ListRolePolicies (inline), TagRole/UntagRole/ListRoleTags,
//     PutRolePermissionsBoundary. Permission policies are stored, never
//     evaluated. IAMWrites counts the mutating calls.
//   - STS AssumeRole, evaluated against the role's trust policy: the calling
//     principal must be allowed sts:AssumeRole, and sts:TagSession when
//     session tags are sent or carried over as transitive tags from the
//     caller's own session; explicit Deny wins; conditions with the String*
//     operators on sts:ExternalId, sts:RoleSessionName, aws:PrincipalArn,
//     aws:PrincipalAccount and aws:RequestTag/<key>. It enforces AWS's
//     limits on session names, durations (the role's MaxSessionDuration; one
//     hour when chaining), session policies (2,048 characters, valid JSON)
//     and tags (50, key 128, value 256, no "aws:" prefix), carries transitive
//     tags through role chains, records every session and issues credentials
//     it later recognises (until they expire on the injected clock).
//   - STS AssumeRoleWithWebIdentity (IRSA) for tokens of the OIDC providers
//     registered with AddOIDCProvider, the trust policy naming the provider
//     as a Federated principal with "<issuer>:sub"/":aud" conditions.
//   - STS GetCallerIdentity, signed with SigV4 or SigV4A (the passwordless
//     Artifactory exchange replays a SigV4A-signed one).
//   - ECR GetAuthorizationToken (awsJson1_1), issuing 12-hour passwords an
//     emulated registry checks with ECRAuthorization.
//   - IAM Roles Anywhere (REST-JSON): trust anchors (certificate bundles),
//     profiles, imported CRLs, and CreateSession signed with a certificate's
//     key, checked as AWS does (rolesanywhere.go).
//
// What it does not: evaluate identity-based policies (a principal may call
// any action) or permission boundaries, SCPs, resource policies other than trust
// policies, policy variables, the Null/Numeric/Date/Bool/IP condition
// operators (a statement using one never matches), NotPrincipal/NotAction,
// the exact packed size of policies and tags (it estimates it; see
// packedPercent), IAM users and groups through the API (users are given
// at start), MFA, SourceIdentity, and any other action.
// Use it to test podid's behaviour, not to test IAM policies.
package awsemu

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/podid/podid/internal/sigv4"
)

// User is an IAM user with one long-term access key.
type User struct {
	// Account defaults to Options.AccountID.
	Account         string
	Name            string
	AccessKeyID     string
	SecretAccessKey string
}

// Options configure an Emulator.
type Options struct {
	// AccountID is the default account; defaults to 111122223333.
	AccountID string
	// Partition defaults to "aws".
	Partition string
	// Users are the principals with long-term keys.
	Users []User
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives one line per refused request; nil discards.
	Log *slog.Logger
}

// Emulator serves STS and IAM. It is an http.Handler.
type Emulator struct {
	opts   Options
	now    func() time.Time
	log    *slog.Logger
	sts    *sigv4.Verifier
	iam    *sigv4.Verifier
	mu     sync.Mutex
	users  map[string]*User    // by access key ID
	roles  map[string]*role    // by ARN
	keys   map[string]*Session // temporary credentials by access key ID
	calls  []AssumeRoleCall    // every AssumeRole, granted or refused
	faults []*fault
	ecr    *sigv4.Verifier
	// ecrTokens are the ECR passwords issued, ecrCalls the calls that did.
	ecrTokens map[string]ECRToken
	ecrCalls  int
	// oidc are the web identity providers by issuer.
	oidc             map[string]OIDCProvider
	webIdentityCalls int
	// policies are customer managed policies by ARN; iamWrites counts
	// mutating IAM calls.
	policies  map[string]*managedPolicy
	iamWrites int
	iamCalls  int
	// raVerifier checks Roles Anywhere's control-plane calls;
	// rolesAnywhere is its state (rolesanywhere.go).
	raVerifier    *sigv4.Verifier
	rolesAnywhere rolesAnywhere
}

// New returns an emulator holding opts.Users and no roles.
func New(opts Options) *Emulator {
	if opts.AccountID == "" {
		opts.AccountID = "111122223333"
	}
	if opts.Partition == "" {
		opts.Partition = "aws"
	}
	e := &Emulator{
		opts:  opts,
		now:   opts.Now,
		log:   opts.Log,
		users: map[string]*User{},
		roles: map[string]*role{},
		keys:  map[string]*Session{},

		ecrTokens: map[string]ECRToken{},
		oidc:      map[string]OIDCProvider{},
		policies:  map[string]*managedPolicy{},

		rolesAnywhere: rolesAnywhere{anchors: map[string]*trustAnchor{}, profiles: map[string]*raProfile{}, crls: map[string]*raCRL{}},
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	for i := range opts.Users {
		u := opts.Users[i]
		if u.Account == "" {
			u.Account = opts.AccountID
		}
		e.users[u.AccessKeyID] = &u
	}
	e.sts = &sigv4.Verifier{Service: "sts", Keys: keyStore{e}, Now: e.now}
	e.iam = &sigv4.Verifier{Service: "iam", Keys: keyStore{e}, Now: e.now}
	e.ecr = &sigv4.Verifier{Service: "ecr", Keys: keyStore{e}, Now: e.now}
	e.raVerifier = &sigv4.Verifier{Service: "rolesanywhere", Keys: keyStore{e}, Now: e.now}
	return e
}

// ServeHTTP implements the query protocol: a form-encoded POST (or GET with
// a query) naming an Action.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.Header.Get("X-Amz-Target"), ecrTargetPrefix) {
		e.serveECR(w, r)
		return
	}
	if isRolesAnywherePath(r.URL.Path) {
		e.serveRolesAnywhere(w, r)
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, &apiError{Code: "InvalidAction", Message: "use POST"})
		return
	}
	form, err := readForm(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, &apiError{Code: "MalformedQueryString", Message: err.Error()})
		return
	}
	action := form.Get("Action")
	op, ok := operations[action]
	if !ok {
		writeError(w, http.StatusBadRequest, &apiError{Code: "InvalidAction", Message: fmt.Sprintf("the action %q is not valid for this endpoint (the emulator serves %s)", action, operationNames())})
		return
	}
	if op.anonymous {
		out, aerr := op.run(e, principal{}, formValues(form))
		if aerr != nil {
			e.log.Info("refused", "action", action, "code", aerr.Code, "reason", aerr.Message)
			writeError(w, aerr.status(), aerr)
			return
		}
		writeResult(w, action, op.ns, out)
		return
	}
	verifier := e.sts
	if op.service == "iam" {
		verifier = e.iam
	}
	res, err := verifier.Verify(r)
	if err != nil {
		var verr *sigv4.Error
		if errors.As(err, &verr) {
			code := string(verr.Code)
			switch verr.Code {
			case sigv4.UnrecognizedClient:
				code = "InvalidClientTokenId"
			case sigv4.InvalidSignature:
				code = "SignatureDoesNotMatch"
			}
			if exp, ok := e.expiredKey(r); ok {
				writeError(w, http.StatusBadRequest, &apiError{Code: "ExpiredToken", Message: "The security token included in the request is expired (expired at " + exp.Format(time.RFC3339) + ")"})
				return
			}
			e.log.Info("refused", "action", action, "code", code, "reason", verr.Message)
			writeError(w, http.StatusForbidden, &apiError{Code: code, Message: verr.Message})
			return
		}
		writeError(w, http.StatusInternalServerError, &apiError{Code: "InternalFailure", Message: err.Error()})
		return
	}
	caller := res.Key.Principal.(principal)
	if op.service == "iam" {
		e.mu.Lock()
		e.iamCalls++
		e.mu.Unlock()
		// IAM's faults here; STS's and ECR's actions take theirs themselves.
		if aerr := e.takeFault(action); aerr != nil {
			e.log.Info("fault", "action", action, "code", aerr.Code)
			writeError(w, aerr.status(), aerr)
			return
		}
	}
	out, aerr := op.run(e, caller, formValues(form))
	if aerr != nil {
		e.log.Info("refused", "action", action, "caller", caller.arn, "code", aerr.Code, "reason", aerr.Message)
		writeError(w, aerr.status(), aerr)
		return
	}
	writeResult(w, action, op.ns, out)
}

// readForm parses the query-protocol parameters, leaving the body readable
// for the signature check.
func readForm(r *http.Request) (url.Values, error) {
	if r.Method == http.MethodGet {
		return r.URL.Query(), nil
	}
	body, err := readAll(r)
	if err != nil {
		return nil, err
	}
	return url.ParseQuery(string(body))
}

// principal is who signed a request.
type principal struct {
	account string
	arn     string // user ARN, or assumed-role session ARN
	userID  string // AIDA… for users, AROA…:session for sessions
	session *Session
	// federated is the OIDC provider ARN of a web identity caller, and
	// claims its token's condition keys ("<provider>:sub", ":aud").
	federated string
	claims    map[string]string
	// service is the service principal of a call a service makes itself
	// (rolesanywhere.amazonaws.com).
	service string
}

// roleARN is the role a session principal acts as ("" for users).
func (p principal) roleARN() string {
	if p.session == nil {
		return ""
	}
	return p.session.RoleARN
}

type keyStore struct{ e *Emulator }

func (k keyStore) Key(_ context.Context, id string) (sigv4.Key, error) {
	return k.e.key(id)
}

func (e *Emulator) key(id string) (sigv4.Key, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if u, ok := e.users[id]; ok {
		return sigv4.Key{AccessKeyID: id, SecretAccessKey: u.SecretAccessKey, Principal: principal{
			account: u.Account,
			arn:     fmt.Sprintf("arn:%s:iam::%s:user/%s", e.opts.Partition, u.Account, u.Name),
			userID:  "AIDA" + stableID(u.Account+"/"+u.Name, 17),
		}}, nil
	}
	if s, ok := e.keys[id]; ok && e.now().Before(s.Expiration) {
		return sigv4.Key{AccessKeyID: id, SecretAccessKey: s.secret, SessionToken: s.SessionToken, Principal: principal{
			account: s.Account, arn: s.ARN, userID: s.AssumedRoleID, session: s,
		}}, nil
	}
	return sigv4.Key{}, sigv4.ErrUnknownKey
}

// expiredKey reports whether r was signed with temporary credentials this
// emulator issued that have since expired, so the caller hears ExpiredToken
// as from AWS rather than "invalid".
func (e *Emulator) expiredKey(r *http.Request) (time.Time, bool) {
	id := accessKeyOf(r.Header.Get("Authorization"))
	e.mu.Lock()
	defer e.mu.Unlock()
	if s, ok := e.keys[id]; ok && !e.now().Before(s.Expiration) {
		return s.Expiration, true
	}
	return time.Time{}, false
}

// randomString returns n characters of alphabet from crypto/rand.
func randomString(alphabet string, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

const (
	upperAlnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	base64ish  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)
