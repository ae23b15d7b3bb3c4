// Package auth serves podid's EKS Auth-compatible API:
// POST /clusters/{clusterName}/assume-role-for-pod-identity, which turns a
// pod's projected ServiceAccount token into credentials for the role its
// association names.
//
// A request passes, in order: the cluster name; the caller (a podid agent's
// own token, or SigV4 with a configured access key); the pod's token,
// verified offline; the bound pod, which must still exist with that UID;
// the node binding (the pod must run on the caller's node); the association
// from the watch-backed index; then STS through internal/sts. Every refusal
// becomes an EKS Auth error in one place (errors.go), and every request
// leaves one audit record and its metrics. docs/threat-model.md says why.
package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/awsjson"
	"github.com/podid/podid/internal/logging"
	"github.com/podid/podid/internal/podevents"
	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/internal/sigv4"
	"github.com/podid/podid/internal/sts"
	"github.com/podid/podid/internal/token"
)

// DefaultAgentAudience is the audience of a podid agent's own token.
const DefaultAgentAudience = "podid.io/agent"

// agentCacheTTL is how long a verified agent token is taken on trust: an
// agent pod deleted within it keeps calling for at most this long.
const agentCacheTTL = 10 * time.Second

// replayCacheSize bounds the SigV4 signatures remembered for the skew
// window: 100,000 is 333 signed calls a second, sustained.
const replayCacheSize = 100000

// Assumer obtains role credentials; *sts.Assumer is one.
type Assumer interface {
	Assume(ctx context.Context, a *association.Association, pod sts.Pod) (*sts.Result, error)
}

// Options configure a Handler.
type Options struct {
	Identity association.Identity
	Index    *association.Index
	// Tokens verifies pod and agent tokens of this cluster.
	Tokens *token.Verifier
	// Audience of pod tokens; default podidentity.Audience.
	Audience string
	// AgentAudience of agent tokens; default DefaultAgentAudience.
	AgentAudience string
	// AgentServiceAccounts are "namespace/name" of the ServiceAccounts podid
	// agents run as.
	AgentServiceAccounts []string
	// AccessKeys, when non-nil, admits SigV4 callers signing with them.
	AccessKeys sigv4.KeyStore
	Pods       Pods
	Assumer    Assumer
	// Log receives errors; Audit receives one record per request.
	Log, Audit *slog.Logger
	// Events records a refusal that is the pod's configuration's doing (no
	// association, a role that does not trust podid, an invalid policy) on
	// the pod, once per reason (package podevents); nil records none.
	Events PodEvents
	// Registerer receives the metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// PodEvents records refusals on pods; *podevents.Recorder is one.
type PodEvents interface {
	Refused(pod podevents.Pod, reason, message string)
}

// Handler is the EKS Auth API. It is an http.Handler.
type Handler struct {
	opts    Options
	callers *callers
	metrics *metrics
	mux     *http.ServeMux
}

// NewHandler returns the API over opts.
func NewHandler(opts Options) *Handler {
	if opts.Audience == "" {
		opts.Audience = podidentity.Audience
	}
	if opts.AgentAudience == "" {
		opts.AgentAudience = DefaultAgentAudience
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Audit == nil {
		opts.Audit = opts.Log
	}
	h := &Handler{opts: opts, metrics: newMetrics(opts.Registerer), mux: http.NewServeMux()}
	h.callers = &callers{tokens: opts.Tokens, agentAudience: opts.AgentAudience, agentAccounts: map[string]bool{}, pods: opts.Pods,
		cache: token.NewRemembered[*Caller](agentCacheTTL, 10000), now: opts.Now}
	for _, sa := range opts.AgentServiceAccounts {
		h.callers.agentAccounts[sa] = true
	}
	if opts.AccessKeys != nil {
		h.callers.signed = &sigv4.Verifier{Service: "eks-auth", Region: opts.Identity.Region, Keys: opts.AccessKeys, MaxBody: maxBody, Now: opts.Now,
			Replays: sigv4.NewReplayCache(replayCacheSize)}
	}
	h.mux.HandleFunc("POST /clusters/{clusterName}/assume-role-for-pod-identity", h.assumeRoleForPodIdentity)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		awsjson.WriteError(w, fail(UnknownOperation, "no such operation: podid serves POST /clusters/{clusterName}/assume-role-for-pod-identity", nil))
	})
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// response is the AssumeRoleForPodIdentity output, in the model's member order.
type response struct {
	Subject struct {
		Namespace      string `json:"namespace"`
		ServiceAccount string `json:"serviceAccount"`
	} `json:"subject"`
	Audience               string `json:"audience"`
	PodIdentityAssociation struct {
		AssociationARN string `json:"associationArn"`
		AssociationID  string `json:"associationId"`
	} `json:"podIdentityAssociation"`
	AssumedRoleUser struct {
		ARN          string `json:"arn"`
		AssumeRoleID string `json:"assumeRoleId"`
	} `json:"assumedRoleUser"`
	Credentials struct {
		SessionToken    string `json:"sessionToken"`
		SecretAccessKey string `json:"secretAccessKey"`
		AccessKeyID     string `json:"accessKeyId"`
		// Expiration is epoch seconds: the SDKs reject a string.
		Expiration int64 `json:"expiration"`
	} `json:"credentials"`
}

func (h *Handler) assumeRoleForPodIdentity(w http.ResponseWriter, r *http.Request) {
	start := h.opts.Now()
	rec := &record{Cluster: r.PathValue("clusterName")}
	out, err := h.exchange(r, rec)
	if err != nil {
		e := toAPIError(err)
		rec.Outcome, rec.Code = "refused", e.Code
		h.metrics.observe(rec, h.opts.Now().Sub(start))
		h.audit(rec, e)
		awsjson.WriteError(w, e)
		return
	}
	rec.Outcome = "issued"
	h.metrics.observe(rec, h.opts.Now().Sub(start))
	h.audit(rec, nil)
	awsjson.WriteJSON(w, out)
}

// exchange does the work, filling rec as it learns who is asking for what.
func (h *Handler) exchange(r *http.Request, rec *record) (*response, error) {
	if err := checkClusterName(rec.Cluster, h.opts.Identity.ClusterName); err != nil {
		return nil, err
	}
	caller, body, err := h.callers.authenticate(r)
	if err != nil {
		return nil, err
	}
	rec.Caller = caller.Kind + ":" + caller.Name
	req, err := decodeRequest(body)
	if err != nil {
		return nil, err
	}
	claims, err := h.opts.Tokens.Verify(r.Context(), req.Token, h.opts.Audience)
	if err != nil {
		return nil, err
	}
	rec.Namespace, rec.ServiceAccount = claims.Namespace, claims.ServiceAccount.Name
	if claims.Pod == nil {
		return nil, fail(InvalidToken, "the token is not bound to a pod; use the projected token the pod identity webhook mounts", nil)
	}
	rec.Pod = claims.Pod.Name
	pod, err := h.opts.Pods.Pod(r.Context(), claims.Namespace, claims.Pod.Name, claims.Pod.UID)
	if errors.Is(err, ErrPodGone) {
		return nil, fail(InvalidToken, "the pod this token is bound to no longer exists", err)
	}
	if err != nil {
		return nil, fail(ServiceUnavailable, "the pod could not be checked with the API server; retry later", err)
	}
	rec.Node = pod.NodeName
	if err := checkNode(caller, pod, claims, req); err != nil {
		return nil, err
	}
	res, a, err := h.assume(r.Context(), podevents.Pod{Namespace: claims.Namespace, Name: claims.Pod.Name, UID: types.UID(claims.Pod.UID)}, claims.ServiceAccount.Name, rec, true)
	if err != nil {
		return nil, err
	}
	rec.Role, rec.SessionName, rec.Expiration = res.RoleARN, res.SessionName, res.Credentials.Expiration

	out := &response{Audience: h.opts.Audience}
	out.Subject.Namespace, out.Subject.ServiceAccount = claims.Namespace, claims.ServiceAccount.Name
	out.PodIdentityAssociation.AssociationARN, out.PodIdentityAssociation.AssociationID = a.ARN, a.ID
	out.AssumedRoleUser.ARN, out.AssumedRoleUser.AssumeRoleID = res.AssumedRoleARN, res.AssumedRoleID
	c := res.Credentials
	out.Credentials.AccessKeyID, out.Credentials.SecretAccessKey, out.Credentials.SessionToken = c.AccessKeyID, c.SecretAccessKey, c.SessionToken
	out.Credentials.Expiration = c.Expiration.Unix()
	return out, nil
}

// assume finds the association of the pod's ServiceAccount and assumes its
// role. From here a refusal is the pod's configuration's doing: with
// events, it is said on the pod too.
func (h *Handler) assume(ctx context.Context, ref podevents.Pod, serviceAccount string, rec *record, events bool) (*sts.Result, *association.Association, error) {
	event := func(reason, message string) {
		if events {
			h.event(ref, reason, message)
		}
	}
	sa := ref.Namespace + "/" + serviceAccount
	a, ok := h.opts.Index.Lookup(ref.Namespace, serviceAccount)
	if !ok {
		event(podevents.ReasonNoAssociation, "podid found no PodIdentityAssociation for ServiceAccount "+sa+", so this pod gets no AWS credentials (nor, with podid-credential-provider, registry logins). Create one: podid association create -n "+ref.Namespace+" --service-account "+serviceAccount+" --role-arn ARN; or check the pod's serviceAccountName.")
		return nil, nil, fail(ResourceNotFound, "No Pod Identity association found for namespace "+ref.Namespace+" and service account "+serviceAccount+".", nil)
	}
	rec.AssociationID, rec.Role = a.ID, a.RoleARN
	if a.PolicyError != nil {
		event(podevents.ReasonInvalidPolicy, "the session policy of association "+a.ID+" ("+sa+") is invalid: "+a.PolicyError.Error()+"; fix spec.policy.")
		return nil, nil, fail(InvalidRequest, "the association's session policy is invalid ("+a.PolicyError.Error()+"); fix spec.policy", nil)
	}
	res, err := h.opts.Assumer.Assume(ctx, a, sts.Pod{Namespace: ref.Namespace, ServiceAccount: serviceAccount, Name: ref.Name, UID: string(ref.UID)})
	if err != nil {
		var serr *sts.Error
		if errors.As(err, &serr) && serr.Kind == sts.AccessDenied {
			event(podevents.ReasonRoleAssumeDenied, "podid server could not assume role "+a.RoleARN+" for this pod (association "+a.ID+"): "+serr.Message+". The role's trust policy must allow podid server's principal (ConfigMap podid-server-identity in podid's namespace) sts:AssumeRole and sts:TagSession, with conditions this pod's session tags meet: for a role that trusts EKS Pod Identity, run `podid role trust -n "+ref.Namespace+" --service-account "+serviceAccount+" --role-arn "+a.RoleARN+" --approve`; `podid doctor pod` shows what is missing.")
		}
		return nil, nil, err
	}
	return res, a, nil
}

func (h *Handler) event(pod podevents.Pod, reason, message string) {
	if h.opts.Events != nil {
		h.opts.Events.Refused(pod, reason, message)
	}
}

// checkNode holds a caller to its node: a stolen token is useless from
// anywhere but the node its pod runs on.
func checkNode(caller *Caller, pod *PodInfo, claims *token.Claims, req *request) error {
	if claims.Node != nil && claims.Node.Name != pod.NodeName {
		return fail(InvalidToken, "the token names a node the pod does not run on", nil)
	}
	if caller.Node != "" && caller.Node != pod.NodeName {
		return fail(AccessDenied, "the pod does not run on the caller's node ("+caller.Node+"); an agent may only exchange tokens of pods on its own node", nil)
	}
	if req.EKSNodeName != "" && req.EKSNodeName != pod.NodeName {
		return fail(AccessDenied, "eksNodeName does not match the node the pod runs on", nil)
	}
	return nil
}

// record is one audit record. It never holds a token or a credential.
type record struct {
	Cluster, Caller, Namespace, ServiceAccount, Pod, Node string
	AssociationID, Role, SessionName                      string
	Expiration                                            time.Time
	Outcome, Code                                         string
}

func (h *Handler) audit(rec *record, e *apiError) {
	attrs := []any{
		"cluster", rec.Cluster, "caller", rec.Caller,
		logging.KeyNamespace, rec.Namespace, logging.KeyServiceAccount, rec.ServiceAccount,
		logging.KeyPod, rec.Pod, logging.KeyNode, rec.Node,
		logging.KeyAssociationID, rec.AssociationID, logging.KeyRole, rec.Role,
		"outcome", rec.Outcome,
	}
	if e == nil {
		attrs = append(attrs, "sessionName", rec.SessionName, "expiration", rec.Expiration.UTC().Format(time.RFC3339))
		h.opts.Audit.Info("credentials issued", attrs...)
		return
	}
	attrs = append(attrs, "code", e.Code, "message", e.Message)
	if e.Err != nil {
		attrs = append(attrs, "error", e.Err.Error())
	}
	h.opts.Audit.Info("credentials refused", attrs...)
}
