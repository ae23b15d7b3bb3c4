package awsemu

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/podid/podid/internal/awsjson"
	"github.com/podid/podid/internal/sigv4"
)

// ecrTargetPrefix starts the X-Amz-Target of every ECR call (awsJson1_1).
const ecrTargetPrefix = "AmazonEC2ContainerRegistry_V20150921."

// ecrTokenLifetime is how long ECR's authorization tokens last.
const ecrTokenLifetime = 12 * time.Hour

// ECRToken is an authorization token the emulator issued; an emulated
// registry asks ECRAuthorization whether a password is one of them.
type ECRToken struct {
	// Registry is the account ID of the registry the token opens.
	Registry string
	Region   string
	// Principal is the ARN of the caller that asked for the token (for a
	// session, its assumed-role ARN); RoleARN is that session's role, if any.
	Principal  string
	RoleARN    string
	Expiration time.Time
}

var accountID = regexp.MustCompile(`^[0-9]{12}$`)

// serveECR answers the awsJson1_1 protocol ECR uses. Only
// GetAuthorizationToken is emulated.
func (e *Emulator) serveECR(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), ecrTargetPrefix)
	if op != "GetAuthorizationToken" {
		awsjson.WriteError(w, &awsjson.Error{Status: http.StatusBadRequest, Code: "UnknownOperationException", Message: fmt.Sprintf("the emulator serves ECR's GetAuthorizationToken only, not %q", op)})
		return
	}
	res, err := e.ecr.Verify(r)
	if err != nil {
		var verr *sigv4.Error
		if errors.As(err, &verr) {
			if exp, ok := e.expiredKey(r); ok {
				awsjson.WriteError(w, &awsjson.Error{Status: http.StatusBadRequest, Code: "ExpiredTokenException", Message: "The security token included in the request is expired (expired at " + exp.Format(time.RFC3339) + ")"})
				return
			}
			code := "UnrecognizedClientException"
			if verr.Code != sigv4.UnrecognizedClient {
				code = "InvalidSignatureException"
			}
			e.log.Info("refused", "action", op, "code", code, "reason", verr.Message)
			awsjson.WriteError(w, &awsjson.Error{Status: http.StatusForbidden, Code: code, Message: verr.Message})
			return
		}
		awsjson.WriteError(w, &awsjson.Error{Status: http.StatusInternalServerError, Code: "ServerException", Message: err.Error()})
		return
	}
	caller := res.Key.Principal.(principal)
	var in struct {
		RegistryIDs []string `json:"registryIds"`
	}
	if len(res.Body) > 0 {
		if err := json.Unmarshal(res.Body, &in); err != nil {
			awsjson.WriteError(w, &awsjson.Error{Status: http.StatusBadRequest, Code: "InvalidParameterException", Message: "the request body is not valid JSON: " + err.Error()})
			return
		}
	}
	if aerr := e.takeFault("GetAuthorizationToken"); aerr != nil {
		awsjson.WriteError(w, &awsjson.Error{Status: aerr.status(), Code: aerr.Code, Message: aerr.Message})
		return
	}
	registries := in.RegistryIDs
	if len(registries) == 0 {
		registries = []string{caller.account}
	}
	type authorizationData struct {
		AuthorizationToken string  `json:"authorizationToken"`
		ExpiresAt          float64 `json:"expiresAt"`
		ProxyEndpoint      string  `json:"proxyEndpoint"`
	}
	var out struct {
		AuthorizationData []authorizationData `json:"authorizationData"`
	}
	expires := e.now().Add(ecrTokenLifetime).Truncate(time.Second)
	e.mu.Lock()
	e.ecrCalls++
	for _, id := range registries {
		if !accountID.MatchString(id) {
			e.mu.Unlock()
			awsjson.WriteError(w, &awsjson.Error{Status: http.StatusBadRequest, Code: "InvalidParameterException", Message: fmt.Sprintf("registryId %q is not a 12-digit account ID", id)})
			return
		}
		password := randomString(base64ish, 96)
		e.ecrTokens[password] = ECRToken{Registry: id, Region: res.Region, Principal: caller.arn, RoleARN: caller.roleARN(), Expiration: expires}
		out.AuthorizationData = append(out.AuthorizationData, authorizationData{
			AuthorizationToken: base64.StdEncoding.EncodeToString([]byte("AWS:" + password)),
			ExpiresAt:          float64(expires.Unix()),
			ProxyEndpoint:      fmt.Sprintf("https://%s.dkr.ecr.%s.amazonaws.com", id, res.Region),
		})
	}
	e.mu.Unlock()
	awsjson.WriteJSON(w, out)
}

// ECRAuthorization reports whether password is an unexpired ECR token this
// emulator issued, and for whom.
func (e *Emulator) ECRAuthorization(password string) (ECRToken, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.ecrTokens[password]
	if !ok || !e.now().Before(t.Expiration) {
		return ECRToken{}, false
	}
	return t, true
}

// ECRTokenCalls counts the GetAuthorizationToken calls answered so far.
func (e *Emulator) ECRTokenCalls() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ecrCalls
}
