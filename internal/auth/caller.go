package auth

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/podid/podid/internal/accesskey"
	"github.com/podid/podid/internal/sigv4"
	"github.com/podid/podid/internal/token"
)

// Caller is who sent an exchange request.
type Caller struct {
	// Kind is "agent" (a podid agent's own token) or "accessKey" (SigV4).
	Kind string
	// Name is the agent's pod (namespace/name) or the key's name.
	Name string
	// Node is the node the caller speaks for; pods elsewhere are refused.
	// Empty for an access key not bound to a node.
	Node string
}

// callers authenticates the two kinds of caller.
type callers struct {
	tokens        *token.Verifier
	agentAudience string
	agentAccounts map[string]bool // "namespace/name" of agent ServiceAccounts
	pods          Pods
	signed        *sigv4.Verifier // nil when no access keys are configured
	cache         *token.Remembered[*Caller]
	now           func() time.Time
}

const bearer = "Bearer "

// authenticate identifies the caller and returns the request body it read.
func (c *callers) authenticate(r *http.Request) (*Caller, []byte, error) {
	authz := r.Header.Get("Authorization")
	switch {
	case sigv4.IsSigned(r):
		if c.signed == nil {
			return nil, nil, &apiError{Status: http.StatusForbidden, Code: string(sigv4.UnrecognizedClient),
				Message: "this podid server accepts no access keys; configure --access-keys-file, or call through a podid agent"}
		}
		res, err := c.signed.Verify(r)
		if err != nil {
			return nil, nil, err
		}
		entry, _ := res.Key.Principal.(accesskey.Entry)
		return &Caller{Kind: "accessKey", Name: entry.Name, Node: entry.Node}, res.Body, nil
	case strings.HasPrefix(authz, bearer):
		body, err := readBody(r)
		if err != nil {
			return nil, nil, err
		}
		caller, err := c.agent(r, strings.TrimPrefix(authz, bearer))
		return caller, body, err
	case authz == "":
		return nil, nil, fail(AccessDenied, "the request is not authenticated: a podid agent sends its own ServiceAccount token as 'Authorization: Bearer <token>'; other callers sign with SigV4 using a configured access key", nil)
	}
	return nil, nil, fail(AccessDenied, "the Authorization header is neither 'Bearer <agent token>' nor AWS SigV4", nil)
}

// agent verifies a podid agent's own token: right audience, an allowed
// agent ServiceAccount, bound to a pod that still exists, on a node.
func (c *callers) agent(r *http.Request, raw string) (*Caller, error) {
	now := c.now()
	if caller, ok := c.cache.Get(raw, now); ok {
		return caller, nil
	}
	claims, err := c.tokens.Verify(r.Context(), raw, c.agentAudience)
	if err != nil {
		var terr *token.Error
		if errors.As(err, &terr) && terr.Reason == token.KeysUnavailable {
			return nil, err
		}
		return nil, fail(AccessDenied, "the agent's token was refused: "+messageOf(err), err)
	}
	account := claims.Namespace + "/" + claims.ServiceAccount.Name
	if !c.agentAccounts[account] {
		return nil, fail(AccessDenied, fmt.Sprintf("ServiceAccount %s is not a podid agent; the server accepts agents running as %s", account, c.accountList()), nil)
	}
	if claims.Pod == nil {
		return nil, fail(AccessDenied, "the agent's token is not bound to its pod; mount a projected token (audience "+c.agentAudience+")", nil)
	}
	pod, err := c.pods.Pod(r.Context(), claims.Namespace, claims.Pod.Name, claims.Pod.UID)
	if errors.Is(err, ErrPodGone) {
		return nil, fail(AccessDenied, "the agent's pod no longer exists", err)
	}
	if err != nil {
		return nil, fail(ServiceUnavailable, "the agent's pod could not be checked; retry later", err)
	}
	if pod.NodeName == "" || (claims.Node != nil && claims.Node.Name != pod.NodeName) {
		return nil, fail(AccessDenied, "the agent's pod is not running on a node", nil)
	}
	caller := &Caller{Kind: "agent", Name: claims.Namespace + "/" + claims.Pod.Name, Node: pod.NodeName}
	c.cache.Put(raw, caller, claims.Expiry, now)
	return caller, nil
}

func (c *callers) accountList() string {
	var names []string
	for n := range c.agentAccounts {
		names = append(names, n)
	}
	return strings.Join(names, ", ")
}

func messageOf(err error) string {
	var terr *token.Error
	if errors.As(err, &terr) {
		return terr.Message
	}
	return "invalid"
}

func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, fail(InvalidRequest, "the request body could not be read", err)
	}
	if len(body) > maxBody {
		return nil, fail(InvalidRequest, fmt.Sprintf("the request body is larger than %d bytes", maxBody), nil)
	}
	return body, nil
}
