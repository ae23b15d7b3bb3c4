package eksapi

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
)

type associationResponse struct {
	Association Association `json:"association"`
}

func (h *Handler) create(c *call) (any, error) {
	var req createRequest
	if err := decode(c.body, &req); err != nil {
		return nil, err
	}
	switch {
	case req.Namespace == "":
		return nil, fail(InvalidParameter, "namespace is required")
	case len(validation.IsDNS1123Label(req.Namespace)) > 0:
		return nil, fail(InvalidParameter, "namespace %q is not a valid Kubernetes namespace name", req.Namespace)
	case req.ServiceAccount == "":
		return nil, fail(InvalidParameter, "serviceAccount is required")
	case len(validation.IsDNS1123Subdomain(req.ServiceAccount)) > 0:
		return nil, fail(InvalidParameter, "serviceAccount %q is not a valid ServiceAccount name", req.ServiceAccount)
	case req.RoleARN == "":
		return nil, fail(InvalidParameter, "roleArn is required")
	}
	if req.Policy != nil && *req.Policy != "" {
		if err := association.ValidatePolicy(*req.Policy); err != nil {
			return nil, fail(InvalidParameter, "policy: %v", err)
		}
	}
	if n := h.opts.Index.Len(); n >= h.opts.Limit {
		return nil, fail(ResourceLimitExceeded, "the cluster has %d Pod Identity associations, the limit of %d; delete some or raise podid server's --association-limit", n, h.opts.Limit)
	}
	pia := &v1alpha1.PodIdentityAssociation{
		ObjectMeta: metav1.ObjectMeta{Namespace: req.Namespace, Name: req.ServiceAccount},
		Spec: v1alpha1.PodIdentityAssociationSpec{
			ServiceAccount: req.ServiceAccount, RoleARN: req.RoleARN, Tags: req.Tags,
			DisableSessionTags: deref(req.DisableSessionTags), TargetRoleARN: deref(req.TargetRoleARN), Policy: deref(req.Policy),
		},
	}
	if req.ClientRequestToken != "" {
		pia.Annotations = map[string]string{CreateTokenAnnotation: req.ClientRequestToken}
	}
	err := c.kube.Create(c.r.Context(), pia)
	if apierrors.IsAlreadyExists(err) {
		var existing v1alpha1.PodIdentityAssociation
		if getErr := c.kube.Get(c.r.Context(), client.ObjectKeyFromObject(pia), &existing); getErr != nil {
			return nil, kubeError(getErr, "reading the existing association")
		}
		// A retry of the same request (same token) gets the same answer.
		if req.ClientRequestToken != "" && existing.Annotations[CreateTokenAnnotation] == req.ClientRequestToken {
			return associationResponse{toWire(h.opts.Identity, &existing)}, nil
		}
		return nil, fail(ResourceInUse, "Association already exists: %s (namespace %s, service account %s); update or delete it instead",
			association.IDFor(existing.UID), req.Namespace, req.ServiceAccount)
	}
	if apierrors.IsNotFound(err) {
		return nil, fail(InvalidParameter, "namespace %s does not exist in the cluster; create it first", req.Namespace)
	}
	if err != nil {
		return nil, kubeError(err, "creating the association")
	}
	return associationResponse{toWire(h.opts.Identity, pia)}, nil
}

func (h *Handler) describe(c *call) (any, error) {
	pia, err := h.find(c, c.r.PathValue("associationId"))
	if err != nil {
		return nil, err
	}
	return associationResponse{toWire(h.opts.Identity, pia)}, nil
}

func (h *Handler) update(c *call) (any, error) {
	var req updateRequest
	if err := decode(c.body, &req); err != nil {
		return nil, err
	}
	if req.RoleARN != nil && *req.RoleARN == "" {
		return nil, fail(InvalidParameter, "roleArn may not be empty")
	}
	if req.Policy != nil && *req.Policy != "" {
		if err := association.ValidatePolicy(*req.Policy); err != nil {
			return nil, fail(InvalidParameter, "policy: %v", err)
		}
	}
	id := c.r.PathValue("associationId")
	var result *v1alpha1.PodIdentityAssociation
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pia, err := h.find(c, id)
		if err != nil {
			return err
		}
		if req.ClientRequestToken != "" && pia.Annotations[UpdateTokenAnnotation] == req.ClientRequestToken {
			result = pia // this update was already applied
			return nil
		}
		if req.RoleARN != nil {
			pia.Spec.RoleARN = *req.RoleARN
		}
		if req.DisableSessionTags != nil {
			pia.Spec.DisableSessionTags = *req.DisableSessionTags
		}
		// EKS clears targetRoleArn and policy when they are sent empty.
		if req.TargetRoleARN != nil {
			pia.Spec.TargetRoleARN = *req.TargetRoleARN
		}
		if req.Policy != nil {
			pia.Spec.Policy = *req.Policy
		}
		if req.ClientRequestToken != "" {
			if pia.Annotations == nil {
				pia.Annotations = map[string]string{}
			}
			pia.Annotations[UpdateTokenAnnotation] = req.ClientRequestToken
		}
		if err := c.kube.Update(c.r.Context(), pia); err != nil {
			if apierrors.IsConflict(err) {
				return err
			}
			return kubeError(err, "updating association "+id)
		}
		result = pia
		return nil
	})
	if err != nil {
		if apierrors.IsConflict(err) {
			return nil, fail(InvalidRequest, "association %s is being changed concurrently; retry", id)
		}
		return nil, err
	}
	return associationResponse{toWire(h.opts.Identity, result)}, nil
}

func (h *Handler) delete(c *call) (any, error) {
	id := c.r.PathValue("associationId")
	pia, err := h.find(c, id)
	if err != nil {
		return nil, err
	}
	err = c.kube.Delete(c.r.Context(), pia, client.Preconditions{UID: &pia.UID})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil, notFound(id)
	}
	if err != nil {
		return nil, kubeError(err, "deleting association "+id)
	}
	return associationResponse{toWire(h.opts.Identity, pia)}, nil
}

type listResponse struct {
	Associations []Summary `json:"associations"`
	NextToken    *string   `json:"nextToken,omitempty"`
}

func (h *Handler) list(c *call) (any, error) {
	q := c.r.URL.Query()
	limit := int64(100)
	if v := q.Get("maxResults"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || n > 100 {
			return nil, fail(InvalidParameter, "maxResults must be between 1 and 100")
		}
		limit = n
	}
	opts := []client.ListOption{client.Limit(limit)}
	if ns := q.Get("namespace"); ns != "" {
		opts = append(opts, client.InNamespace(ns))
	}
	if sa := q.Get("serviceAccount"); sa != "" {
		// An association is named after its ServiceAccount.
		opts = append(opts, client.MatchingFields{"metadata.name": sa})
	}
	if token := q.Get("nextToken"); token != "" {
		opts = append(opts, client.Continue(token))
	}
	var list v1alpha1.PodIdentityAssociationList
	if err := c.kube.List(c.r.Context(), &list, opts...); err != nil {
		if apierrors.IsBadRequest(err) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			return nil, fail(InvalidParameter, "nextToken is invalid or has expired; list again from the start")
		}
		return nil, kubeError(err, "listing associations")
	}
	out := listResponse{Associations: make([]Summary, 0, len(list.Items))}
	for i := range list.Items {
		out.Associations = append(out.Associations, summaryOf(h.opts.Identity, &list.Items[i]))
	}
	if list.Continue != "" {
		out.NextToken = &list.Continue
	}
	return out, nil
}

// kubeError turns an API server error into an EKS error.
func kubeError(err error, doing string) error {
	var status apierrors.APIStatus
	switch {
	case apierrors.IsForbidden(err):
		// An admission policy's refusal (podid's PassRole) is written for
		// the user, who needs it to ask for the right permission.
		if _, denial, ok := strings.Cut(err.Error(), " denied request: "); ok {
			return wrap(AccessDenied, fmt.Sprintf("%s: %s", doing, denial), err)
		}
		return wrap(AccessDenied, fmt.Sprintf("%s: this access key's Kubernetes identity is not allowed to (RBAC)", doing), err)
	case apierrors.IsInvalid(err) && errors.As(err, &status):
		var parts []string
		if d := status.Status().Details; d != nil {
			for _, cause := range d.Causes {
				parts = append(parts, eksField(cause.Field)+": "+cause.Message)
			}
		}
		if len(parts) == 0 {
			parts = append(parts, status.Status().Message)
		}
		return wrap(InvalidParameter, strings.Join(parts, "; "), err)
	case apierrors.IsNotFound(err):
		return wrap(ResourceNotFound, "the association was not found", err)
	case apierrors.IsTooManyRequests(err), apierrors.IsServerTimeout(err), apierrors.IsTimeout(err), apierrors.IsServiceUnavailable(err):
		return wrap(ServiceUnavailable, "the Kubernetes API server is busy; retry", err)
	}
	return wrap(Server, doing+" failed; the podid server log has the detail", err)
}

// eksField names a CRD field the way the EKS API's caller spelt it.
func eksField(field string) string {
	field = strings.TrimPrefix(field, "spec.")
	switch {
	case field == "metadata.name":
		return "serviceAccount"
	case strings.HasPrefix(field, "tags"):
		return field
	}
	return field
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
