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
	"github.com/podid/podid/internal/associationstore"
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
	if err := validateTags(req.Tags, InvalidParameter); err != nil {
		return nil, err
	}
	if req.Policy != nil && *req.Policy != "" {
		if err := association.ValidatePolicy(*req.Policy); err != nil {
			return nil, fail(InvalidParameter, "policy: %v", err)
		}
	}
	// A retry of the same request (same token) gets the same answer.
	isRetry := func(existing associationstore.Stored) bool {
		return req.ClientRequestToken != "" && existing.Object().GetAnnotations()[CreateTokenAnnotation] == req.ClientRequestToken
	}
	// One association per ServiceAccount, whichever kind holds it.
	if a, ok := h.opts.Index.Lookup(req.Namespace, req.ServiceAccount); ok {
		if existing, err := associationstore.Get(c.r.Context(), c.kube, req.Namespace, req.ServiceAccount); err == nil && isRetry(existing) {
			return associationResponse{toWire(h.opts.Identity, existing.View())}, nil
		}
		return nil, inUse(a.ID, req.Namespace, req.ServiceAccount)
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
	stored, err := associationstore.Create(c.r.Context(), c.kube, pia, associationstore.ScopeAuto)
	switch {
	case apierrors.IsAlreadyExists(err):
		existing, getErr := associationstore.Get(c.r.Context(), c.kube, req.Namespace, req.ServiceAccount)
		if getErr != nil {
			return nil, kubeError(getErr, "reading the existing association")
		}
		if isRetry(existing) {
			return associationResponse{toWire(h.opts.Identity, existing.View())}, nil
		}
		return nil, inUse(existing.ID(), req.Namespace, req.ServiceAccount)
	case associationstore.NamespaceMissing(err):
		return nil, fail(InvalidParameter, "namespace %s does not exist, and this access key's Kubernetes identity (%s) may create associations only in existing namespaces; "+
			"create the namespace first, or use a key whose identity may create clusterpodidentityassociations (podid.io), which may precede their namespace as on EKS", req.Namespace, c.caller)
	case associationstore.RBACForbidden(err):
		return nil, wrap(AccessDenied, fmt.Sprintf("this access key's Kubernetes identity (%s) may create neither clusterpodidentityassociations nor podidentityassociations in namespace %s (podid.io, RBAC)", c.caller, req.Namespace), err)
	case err != nil:
		return nil, kubeError(err, "creating the association")
	}
	return associationResponse{toWire(h.opts.Identity, stored.View())}, nil
}

func inUse(id, namespace, serviceAccount string) error {
	return fail(ResourceInUse, "Association already exists: %s (namespace %s, service account %s); update or delete it instead", id, namespace, serviceAccount)
}

func (h *Handler) describe(c *call) (any, error) {
	stored, err := h.find(c, c.r.PathValue("associationId"))
	if err != nil {
		return nil, err
	}
	return associationResponse{toWire(h.opts.Identity, stored.View())}, nil
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
	return h.change(c, id, func(stored associationstore.Stored) (bool, error) {
		obj, spec := stored.Object(), stored.Spec()
		if req.ClientRequestToken != "" && obj.GetAnnotations()[UpdateTokenAnnotation] == req.ClientRequestToken {
			return false, nil // this update was already applied
		}
		if req.RoleARN != nil {
			spec.RoleARN = *req.RoleARN
		}
		if req.DisableSessionTags != nil {
			spec.DisableSessionTags = *req.DisableSessionTags
		}
		// EKS clears targetRoleArn and policy when they are sent empty.
		if req.TargetRoleARN != nil {
			spec.TargetRoleARN = *req.TargetRoleARN
		}
		if req.Policy != nil {
			spec.Policy = *req.Policy
		}
		if req.ClientRequestToken != "" {
			annotations := obj.GetAnnotations()
			if annotations == nil {
				annotations = map[string]string{}
			}
			annotations[UpdateTokenAnnotation] = req.ClientRequestToken
			obj.SetAnnotations(annotations)
		}
		return true, nil
	}, kubeError)
}

// change applies edit to the association with that ID and writes it when
// edit says so, retrying on a conflicting write; it answers with the result.
func (h *Handler) change(c *call, id string, edit func(associationstore.Stored) (bool, error), toEKS func(error, string) error) (any, error) {
	var result associationstore.Stored
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		stored, err := h.find(c, id)
		if err != nil {
			return err
		}
		result = stored
		write, err := edit(stored)
		if err != nil || !write {
			return err
		}
		if err := c.kube.Update(c.r.Context(), stored.Object()); err != nil {
			if apierrors.IsConflict(err) {
				return err
			}
			return toEKS(err, "updating association "+id)
		}
		return nil
	})
	if err != nil {
		if apierrors.IsConflict(err) {
			return nil, fail(InvalidRequest, "association %s is being changed concurrently; retry", id)
		}
		return nil, err
	}
	return associationResponse{toWire(h.opts.Identity, result.View())}, nil
}

func (h *Handler) delete(c *call) (any, error) {
	id := c.r.PathValue("associationId")
	stored, err := h.find(c, id)
	if err != nil {
		return nil, err
	}
	uid := stored.Object().GetUID()
	err = c.kube.Delete(c.r.Context(), stored.Object(), client.Preconditions{UID: &uid})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil, notFound(id)
	}
	if err != nil {
		return nil, kubeError(err, "deleting association "+id)
	}
	return associationResponse{toWire(h.opts.Identity, stored.View())}, nil
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
	filter := associationstore.Filter{Namespace: q.Get("namespace"), ServiceAccount: q.Get("serviceAccount")}
	items, next, err := associationstore.List(c.r.Context(), c.kube, filter, limit, q.Get("nextToken"))
	if err != nil {
		if apierrors.IsBadRequest(err) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			return nil, fail(InvalidParameter, "nextToken is invalid or has expired; list again from the start")
		}
		return nil, kubeError(err, "listing associations")
	}
	out := listResponse{Associations: make([]Summary, 0, len(items))}
	for _, it := range items {
		out.Associations = append(out.Associations, summaryOf(h.opts.Identity, it.View()))
	}
	if next != "" {
		out.NextToken = &next
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
