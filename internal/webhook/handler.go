package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/associationstore"
	"github.com/podid/podid/internal/logging"
	"github.com/podid/podid/internal/podidentity"
)

// Path is where the API server sends pods to be mutated.
const Path = "/mutate-v1-pod"

// Options configure the Handler.
type Options struct {
	Config Config
	// Index answers "has this ServiceAccount an association?" from memory.
	Index *association.Index
	// Cache reads ServiceAccounts (IRSA's annotations); Live reads through
	// to the API server when the index or the cache has not seen an object
	// yet: a pod created right after its association or ServiceAccount must
	// still be mutated.
	Cache client.Reader
	Live  client.Reader
	// LiveTimeout bounds a read-through; default 2 s, well inside the
	// webhook's own timeout.
	LiveTimeout time.Duration
	Log         *slog.Logger
	Metrics     *Metrics
}

// Handler mutates pods: Pod Identity for ServiceAccounts with an
// association, IRSA for those with the role-arn annotation and no
// association.
type Handler struct {
	opts    Options
	decoder admission.Decoder
}

// NewHandler returns the admission handler.
func NewHandler(opts Options, decoder admission.Decoder) *Handler {
	if opts.LiveTimeout == 0 {
		opts.LiveTimeout = 2 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Handler{opts: opts, decoder: decoder}
}

// Handle implements admission.Handler.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	resp, mode := h.handle(ctx, req)
	h.opts.Metrics.observe(mode, resp, time.Since(start))
	return resp
}

// Modes of a decision, for metrics and logs.
const (
	modeNone        = "none"
	modePodIdentity = "podIdentity"
	modeIRSA        = "irsa"
	modeError       = "error"
)

func (h *Handler) handle(ctx context.Context, req admission.Request) (admission.Response, string) {
	if req.Operation != admissionv1.Create || req.Kind.Kind != "Pod" {
		return admission.Allowed("podid mutates pods at creation only"), modeNone
	}
	pod := &corev1.Pod{}
	if err := h.decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the pod: %w", err)), modeError
	}
	if pod.Labels[LabelInject] == "false" {
		return admission.Allowed("the pod opted out with " + LabelInject + "=false"), modeNone
	}
	namespace := req.Namespace
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	log := h.opts.Log.With(logging.KeyNamespace, namespace, logging.KeyServiceAccount, sa, logging.KeyPod, podName(pod))

	assoc, err := h.association(ctx, namespace, sa)
	if err != nil {
		// Not knowing means not mutating a pod that needed it; the failure
		// policy decides whether the pod is then refused (Fail, the default).
		log.Error("cannot tell whether the ServiceAccount has an association", "error", err.Error())
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("podid could not read the ServiceAccount's association; retry: %w", err)), modeError
	}
	var annotations map[string]string
	if !assoc && h.opts.Config.IRSA {
		if annotations, err = h.serviceAccountAnnotations(ctx, namespace, sa); err != nil {
			log.Error("cannot read the ServiceAccount for IRSA", "error", err.Error())
			return admission.Errored(http.StatusInternalServerError, fmt.Errorf("podid could not read ServiceAccount %s/%s; retry: %w", namespace, sa, err)), modeError
		}
	}
	mutated, mode, err := Mutate(pod, h.opts.Config, assoc, annotations)
	if err != nil {
		return admission.Denied(fmt.Sprintf("ServiceAccount %s/%s: %v", namespace, sa, err)), modeError
	}
	if mode == modeNone {
		return admission.Allowed("the ServiceAccount has no association"), mode
	}
	raw, err := json.Marshal(mutated)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err), modeError
	}
	log.Debug("pod mutated", "mode", mode)
	resp := admission.PatchResponseFromRaw(req.Object.Raw, raw)
	if mode == modePodIdentity {
		resp.Warnings = chainWarnings(mutated)
	}
	return resp, mode
}

// aheadInChain are variables which, set in a container, make every AWS SDK
// take credentials from somewhere else before the Pod Identity agent, and
// why.
var aheadInChain = []struct{ name, why string }{
	{"AWS_ACCESS_KEY_ID", "static keys come first in every SDK's chain"},
	{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "the SDKs ask the ECS endpoint it names instead of " + podidentity.EnvCredentialsFullURI + " (images built for ECS set it)"},
}

// chainWarnings are the kubectl warnings for containers of a Pod Identity
// pod whose own environment keeps the SDKs from the agent. The pod is
// admitted, as EKS does; podid doctor reports the same.
func chainWarnings(pod *corev1.Pod) []string {
	var out []string
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		for _, v := range aheadInChain {
			for _, e := range c.Env {
				if e.Name == v.name && (e.Value != "" || e.ValueFrom != nil) {
					out = append(out, fmt.Sprintf("podid: container %s sets %s: %s, so it will not use its Pod Identity credentials; remove it", c.Name, v.name, v.why))
				}
			}
		}
	}
	return out
}

// Mutate returns pod as the webhook admits it, and the mode applied: Pod
// Identity when the ServiceAccount has an association, else IRSA when cfg
// allows it and the ServiceAccount's annotations name a role, else none (pod
// returned as is). An error is an IRSA annotation that cannot be used.
func Mutate(pod *corev1.Pod, cfg Config, hasAssociation bool, saAnnotations map[string]string) (*corev1.Pod, string, error) {
	switch {
	case hasAssociation:
		mutated := pod.DeepCopy()
		podIdentityProjection(cfg).apply(mutated)
		if mutated.Labels == nil {
			mutated.Labels = map[string]string{}
		}
		mutated.Labels[podidentity.LabelPodIdentity] = "enabled"
		return mutated, modePodIdentity, nil
	case cfg.IRSA && saAnnotations[podidentity.AnnotationRoleARN] != "":
		p, err := irsaProjection(cfg, saAnnotations)
		if err != nil {
			return nil, modeError, err
		}
		mutated := pod.DeepCopy()
		p.apply(mutated)
		return mutated, modeIRSA, nil
	}
	return pod, modeNone, nil
}

// association says whether the ServiceAccount has an association: the index
// first, then the API server, since the index may not have seen one just
// created.
func (h *Handler) association(ctx context.Context, namespace, sa string) (bool, error) {
	if _, ok := h.opts.Index.Lookup(namespace, sa); ok {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, h.opts.LiveTimeout)
	defer cancel()
	_, err := associationstore.Get(ctx, h.opts.Live, namespace, sa)
	switch {
	case err == nil:
		h.opts.Metrics.readThrough("association")
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	}
	return false, err
}

// serviceAccountAnnotations reads the ServiceAccount's metadata: from the
// cache the association controller already keeps (metadata only), and from
// the API server when the cache has not seen it yet.
func (h *Handler) serviceAccountAnnotations(ctx context.Context, namespace, name string) (map[string]string, error) {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	sa := &metav1.PartialObjectMetadata{}
	sa.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ServiceAccount"))
	err := h.opts.Cache.Get(ctx, key, sa)
	if apierrors.IsNotFound(err) {
		ctx, cancel := context.WithTimeout(ctx, h.opts.LiveTimeout)
		defer cancel()
		h.opts.Metrics.readThrough("serviceAccount")
		err = h.opts.Live.Get(ctx, key, sa)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil // the pod will be refused by the API server itself
	}
	return sa.Annotations, err
}

func podName(pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	return pod.GenerateName + "…"
}
