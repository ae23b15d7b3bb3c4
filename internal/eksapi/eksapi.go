// Package eksapi serves the Amazon EKS Pod Identity association API
// (Create/Describe/Update/Delete/ListPodIdentityAssociation(s)) over podid's
// PodIdentityAssociation objects, so `aws eks`, Terraform, eksctl and the
// SDKs manage podid associations with only an endpoint override.
//
// Requests are SigV4-signed (service "eks") with configured access keys; each
// key acts in Kubernetes as its own user through impersonation, so RBAC
// decides what it may do and the API server's audit log names it. Objects
// are the same ones kubectl and `podid association` see. It does not serve
// the rest of the EKS API.
package eksapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/accesskey"
	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/associationstore"
	"github.com/podid/podid/internal/awsjson"
	"github.com/podid/podid/internal/kube"
	"github.com/podid/podid/internal/sigv4"
)

// +kubebuilder:rbac:groups="",resources=users;groups,verbs=impersonate

// DefaultLimit is EKS's number of associations per cluster.
const DefaultLimit = 5000

// Annotations that make Create and Update idempotent per clientRequestToken.
const (
	CreateTokenAnnotation = "podid.io/create-request-token"
	UpdateTokenAnnotation = "podid.io/update-request-token"
)

// Options configure a Handler.
type Options struct {
	Identity association.Identity
	Index    *association.Index
	// Config is podid server's own connection; requests impersonate through it.
	Config *rest.Config
	Keys   sigv4.KeyStore
	// Limit of associations in the cluster; zero means DefaultLimit.
	Limit int
	Log   *slog.Logger
	Now   func() time.Time
}

// Handler is the EKS association API.
type Handler struct {
	opts     Options
	verifier *sigv4.Verifier
	mux      *http.ServeMux
	clients  sync.Map // access key ID and identity → client.Client impersonating it
}

// NewHandler returns the API over opts.
func NewHandler(opts Options) *Handler {
	if opts.Limit == 0 {
		opts.Limit = DefaultLimit
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{opts: opts, mux: http.NewServeMux()}
	h.verifier = &sigv4.Verifier{Service: "eks", Region: opts.Identity.Region, Keys: opts.Keys, Now: opts.Now,
		// Signatures are remembered for the skew window, so a captured
		// request cannot be replayed.
		Replays: sigv4.NewReplayCache(100000)}
	const base = "/clusters/{clusterName}/pod-identity-associations"
	h.mux.Handle("POST "+base, h.op("CreatePodIdentityAssociation", h.create))
	h.mux.Handle("GET "+base, h.op("ListPodIdentityAssociations", h.list))
	h.mux.Handle("GET "+base+"/{associationId}", h.op("DescribePodIdentityAssociation", h.describe))
	h.mux.Handle("POST "+base+"/{associationId}", h.op("UpdatePodIdentityAssociation", h.update))
	h.mux.Handle("DELETE "+base+"/{associationId}", h.op("DeletePodIdentityAssociation", h.delete))
	h.mux.Handle("POST /tags/{resourceArn...}", h.op("TagResource", h.tag))
	h.mux.Handle("DELETE /tags/{resourceArn...}", h.op("UntagResource", h.untag))
	h.mux.Handle("GET /tags/{resourceArn...}", h.op("ListTagsForResource", h.listTags))
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fail(UnknownOperation, "podid serves only the pod identity association operations of the EKS API"))
	})
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// call is one authenticated request.
type call struct {
	r      *http.Request
	body   []byte
	kube   client.Client // acts as the caller
	caller string
}

// op authenticates, checks the cluster name, runs fn and writes its result
// or its error, logging who did what.
func (h *Handler) op(name string, fn func(c *call) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := h.authenticate(r)
		if err == nil {
			// The tagging operations name their cluster in the resource's ARN.
			if cluster := r.PathValue("clusterName"); !strings.HasPrefix(r.URL.Path, "/tags/") && cluster != h.opts.Identity.ClusterName {
				err = fail(ResourceNotFound, "No cluster found for name: %s.", cluster)
			}
		}
		var out any
		if err == nil {
			out, err = fn(c)
		}
		caller := ""
		if c != nil {
			caller = c.caller
		}
		if err != nil {
			e := writeError(w, err)
			h.opts.Log.Info("eks api request refused", "operation", name, "caller", caller, "code", e.Code, "message", e.Message, "error", errString(e.Err))
			return
		}
		h.opts.Log.Info("eks api request", "operation", name, "caller", caller)
		awsjson.WriteJSON(w, out)
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (h *Handler) authenticate(r *http.Request) (*call, error) {
	if h.opts.Keys == nil {
		return nil, fail(AccessDenied, "this podid server accepts no access keys; configure --access-keys-file")
	}
	res, err := h.verifier.Verify(r)
	if err != nil {
		return nil, err
	}
	entry, _ := res.Key.Principal.(accesskey.Entry)
	user, groups := entry.KubernetesUser()
	kc, err := h.clientFor(res.Key.AccessKeyID, user, groups)
	if err != nil {
		return nil, err
	}
	return &call{r: r, body: res.Body, kube: kc, caller: user}, nil
}

// clientFor returns a client acting as user, one per access key and
// identity (a reloaded keys file may give a key another user).
func (h *Handler) clientFor(keyID, user string, groups []string) (client.Client, error) {
	cacheKey := keyID + "\x00" + user + "\x00" + strings.Join(groups, "\x00")
	if c, ok := h.clients.Load(cacheKey); ok {
		return c.(client.Client), nil
	}
	cfg := rest.CopyConfig(h.opts.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	c, err := client.New(cfg, client.Options{Scheme: kube.NewScheme()})
	if err != nil {
		return nil, fmt.Errorf("building a client acting as %s: %w", user, err)
	}
	actual, _ := h.clients.LoadOrStore(cacheKey, c)
	return actual.(client.Client), nil
}

// find locates the association with id, of either kind, from the index; the
// object is then read as the caller, so RBAC applies.
func (h *Handler) find(c *call, id string) (associationstore.Stored, error) {
	if !association.IsID(id) {
		return associationstore.Stored{}, fail(InvalidParameter, "associationId %q is not an association ID (a- followed by 17 lower-case letters and digits)", id)
	}
	// The watch-backed index knows every association; an ID it does not
	// know after a moment is not found. Never a LIST of every association
	// per request: unknown IDs cost a caller nothing but podid a great
	// deal.
	a, ok := h.indexed(c.r.Context(), id)
	if !ok {
		return associationstore.Stored{}, notFound(id)
	}
	stored, err := associationstore.GetKind(c.r.Context(), c.kube, a.Namespace, a.ServiceAccount, a.Cluster)
	if err != nil {
		return associationstore.Stored{}, kubeError(err, "reading association "+id)
	}
	if stored.ID() != id {
		return associationstore.Stored{}, notFound(id) // deleted and re-created: another association
	}
	return stored, nil
}

// indexed looks id up in the index, giving the watch a moment to deliver
// an association created an instant ago (a client describing what it just
// created, maybe through another replica).
func (h *Handler) indexed(ctx context.Context, id string) (*association.Association, bool) {
	deadline := time.Now().Add(indexGrace)
	for {
		if a, ok := h.opts.Index.ByID(id); ok {
			return a, true
		}
		if time.Now().After(deadline) {
			return nil, false
		}
		select {
		case <-ctx.Done():
			return nil, false
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// indexGrace is how long a lookup by ID waits for the index before the ID
// is not found: well above a watch's delivery, even on a busy server.
const indexGrace = time.Second

func notFound(id string) error {
	return fail(ResourceNotFound, "Pod Identity association %s not found.", id)
}
