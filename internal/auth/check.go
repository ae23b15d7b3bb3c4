package auth

import (
	"context"
	"errors"

	"github.com/aws/smithy-go"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podid/podid/internal/podevents"
	"github.com/podid/podid/internal/sts"
)

// CheckResult is what a pod's exchange came to, without the credentials.
type CheckResult struct {
	// Code and Message are the EKS Auth refusal; empty when issued.
	Code, Message                          string
	AssociationID, RoleARN, AssumedRoleARN string
	SessionName                            string
}

// Check performs the exchange for pod namespace/name as its agent would,
// from the pod lookup on (there is no token: the caller is podid server
// itself, on behalf of whoever created the PodIdentityCheck), and returns
// the session it obtained or the refusal. The credentials are dropped here.
// It leaves an audit record with caller "check:"+requester and records no
// Event on the pod: the pod did not ask.
func (h *Handler) Check(ctx context.Context, namespace, name, requester string) *CheckResult {
	rec := &record{Cluster: h.opts.Identity.ClusterName, Caller: "check:" + requester, Namespace: namespace, Pod: name}
	res, err := h.check(ctx, namespace, name, rec)
	out := &CheckResult{AssociationID: rec.AssociationID, RoleARN: rec.Role}
	if err != nil {
		e := toAPIError(err)
		rec.Outcome, rec.Code = "refused", e.Code
		h.audit(rec, e)
		out.Code, out.Message = e.Code, e.Message
		// STS's own words say which action it refused (sts:TagSession or
		// sts:AssumeRole); the pod's wire error keeps them to the log.
		var api smithy.APIError
		if errors.As(err, &api) && api.ErrorMessage() != "" {
			out.Message += " (STS: " + api.ErrorMessage() + ")"
		}
		return out
	}
	rec.Outcome, rec.Role, rec.SessionName, rec.Expiration = "checked", res.RoleARN, res.SessionName, res.Credentials.Expiration
	h.audit(rec, nil)
	out.RoleARN, out.AssumedRoleARN, out.SessionName = res.RoleARN, res.AssumedRoleARN, res.SessionName
	return out
}

func (h *Handler) check(ctx context.Context, namespace, name string, rec *record) (*sts.Result, error) {
	pod, err := h.opts.Pods.PodByName(ctx, namespace, name)
	if errors.Is(err, ErrPodGone) {
		return nil, fail(ResourceNotFound, "no pod "+namespace+"/"+name, nil)
	}
	if err != nil {
		return nil, fail(ServiceUnavailable, "the pod could not be read from the API server; retry later", err)
	}
	rec.ServiceAccount, rec.Node = pod.ServiceAccount, pod.NodeName
	if pod.NodeName == "" {
		return nil, fail(InvalidRequest, "the pod is not scheduled to a node yet: no agent can ask for it", nil)
	}
	res, _, err := h.assume(ctx, podevents.Pod{Namespace: namespace, Name: name, UID: types.UID(pod.UID)}, pod.ServiceAccount, rec, false)
	return res, err
}
