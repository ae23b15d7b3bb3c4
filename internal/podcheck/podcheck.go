// Package podcheck answers PodIdentityChecks: podid server performs the
// credential exchange of the pod a check names, exactly as for the pod's
// agent from the pod lookup on, and writes into the check's status the role
// session it obtained or the refusal the pod would get. The credentials are
// never written anywhere. A check without a pod asks podid server to call
// sts:GetCallerIdentity, so that `podid doctor` learns whether STS answers
// from where the server runs, not from the user's laptop.
//
// Who may ask is Kubernetes RBAC's business (create on podidentitychecks in
// the pod's namespace); the API server's audit log names the user, podid's
// audit log the check and its outcome, and the user only where the chart's
// admission policy binds the podid.io/requested-by annotation to its
// creator (RequesterPolicy). A check is answered once, by the leader, at
// most Rate a second overall and NamespaceRate a second per namespace (so
// that one team cannot starve another's doctor), and deleted TTL after its
// answer; one left unanswered for PendingTTL is deleted too.
package podcheck

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	ctrl "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/auth"
	"github.com/podid/podid/internal/serveridentity"
)

// TTL is how long an answered check is kept for whoever asked to read it.
const TTL = time.Hour

// A namespace's share of the answers: half of the server's burst, so that
// `podid doctor deployment` of a ten-pod Deployment is answered at once,
// and no namespace takes the whole of it.
const (
	DefaultNamespaceRate = 2
	NamespaceBurst       = 10
)

// PendingTTL is how long an unanswered check is kept: doctor waits seconds
// for an answer, so one older than this (podid server was down, or the
// check was throttled and left) has nobody waiting for it.
const PendingTTL = 10 * time.Minute

// Checker performs a pod's exchange without returning credentials;
// *auth.Handler is one.
type Checker interface {
	Check(ctx context.Context, namespace, pod, requester string) *auth.CheckResult
}

// +kubebuilder:rbac:groups=podid.io,resources=podidentitychecks,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=podid.io,resources=podidentitychecks/status,verbs=get;update;patch

// Reconciler answers PodIdentityChecks.
type Reconciler struct {
	Client  ctrl.Client
	Checker Checker
	// STS answers checks without a pod.
	STS serveridentity.CallerIdentityAPI
	// Server names the replica in the answer.
	Server string
	// Rate bounds checks answered a second (default 5, burst 20): each is
	// an sts:AssumeRole, and creating checks must not become a way to
	// exhaust podid's STS quota.
	Rate rate.Limit
	// NamespaceRate bounds checks answered a second in one namespace
	// (default DefaultNamespaceRate, burst NamespaceBurst); a check over it
	// is refused at once, with ThrottlingException, so it neither waits for
	// nor takes a turn of the other namespaces.
	NamespaceRate rate.Limit
	// RequesterBound says the chart's admission policy binds the
	// podid.io/requested-by annotation to the user who created the check;
	// without it the annotation is anyone's word, and the audit log says
	// "unknown".
	RequesterBound bool
	Clock          clock.PassiveClock
	Log            *slog.Logger

	limiter    *rate.Limiter
	namespaces *namespaceLimiters
}

// SetupWithManager registers the reconciler; it runs on the leader.
func (r *Reconciler) SetupWithManager(mgr manager.Manager) error {
	r.setDefaults()
	return builder.ControllerManagedBy(mgr).
		Named("podidentitycheck").
		WithOptions(controller.Options{SkipNameValidation: ptr.To(true), MaxConcurrentReconciles: 4}).
		For(&v1alpha1.PodIdentityCheck{}).
		Complete(r)
}

// setDefaults fills in the zero values and makes the limiters.
func (r *Reconciler) setDefaults() {
	if r.Rate == 0 {
		r.Rate = 5
	}
	r.limiter = rate.NewLimiter(r.Rate, 20)
	if r.NamespaceRate == 0 {
		r.NamespaceRate = DefaultNamespaceRate
	}
	r.namespaces = newNamespaceLimiters(r.NamespaceRate, NamespaceBurst)
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
}

// Reconcile answers a new check, or deletes an answered one past TTL.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var check v1alpha1.PodIdentityCheck
	if err := r.Client.Get(ctx, req.NamespacedName, &check); err != nil {
		return reconcile.Result{}, ctrl.IgnoreNotFound(err)
	}
	now := r.Clock.Now()
	if at := check.Status.CheckedAt; at != nil {
		if left := at.Add(TTL).Sub(now); left > 0 {
			return reconcile.Result{RequeueAfter: left}, nil
		}
		return reconcile.Result{}, ctrl.IgnoreNotFound(r.Client.Delete(ctx, &check))
	}
	if created := check.CreationTimestamp; !created.IsZero() && !now.Before(created.Add(PendingTTL)) {
		r.Log.Info("deleted a PodIdentityCheck left unanswered", "check", req.String(), "age", now.Sub(check.CreationTimestamp.Time).Round(time.Second).String())
		return reconcile.Result{}, ctrl.IgnoreNotFound(r.Client.Delete(ctx, &check))
	}
	requester := r.requester(&check)
	if !r.namespaces.allow(check.Namespace, now) {
		check.Status = v1alpha1.PodIdentityCheckStatus{Outcome: v1alpha1.CheckRefused, Code: auth.Throttling,
			Message: "namespace " + check.Namespace + " asked for more checks than podid answers for one namespace (" + r.namespaces.describe() + "); ask again in a few seconds"}
		return r.answer(ctx, req, &check, requester)
	}
	if err := r.limiter.Wait(ctx); err != nil {
		return reconcile.Result{}, err
	}
	if check.Spec.PodName == "" {
		check.Status = r.callerIdentity(ctx)
	} else {
		res := r.Checker.Check(ctx, check.Namespace, check.Spec.PodName, requester+" ("+req.String()+")")
		check.Status = v1alpha1.PodIdentityCheckStatus{Outcome: v1alpha1.CheckIssued, Code: res.Code, Message: res.Message,
			AssociationID: res.AssociationID, RoleARN: res.RoleARN, AssumedRoleARN: res.AssumedRoleARN}
		if res.Code != "" {
			check.Status.Outcome = v1alpha1.CheckRefused
		} else {
			check.Status.Message = "podid server obtained credentials for the pod as " + res.AssumedRoleARN + " (not kept)"
		}
	}
	return r.answer(ctx, req, &check, requester)
}

// answer writes the check's status and podid's audit line.
func (r *Reconciler) answer(ctx context.Context, req reconcile.Request, check *v1alpha1.PodIdentityCheck, requester string) (reconcile.Result, error) {
	check.Status.Server = r.Server
	if requester != unknownRequester {
		check.Status.RequestedBy = requester
	}
	check.Status.CheckedAt = &metav1.Time{Time: r.Clock.Now()}
	if err := r.Client.Status().Update(ctx, check); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return reconcile.Result{}, nil // deleted by the asker, or answered already
		}
		return reconcile.Result{}, err
	}
	r.Log.Info("answered a PodIdentityCheck", "check", req.String(), "requestedBy", requester, "pod", check.Spec.PodName, "outcome", check.Status.Outcome, "code", check.Status.Code)
	return reconcile.Result{RequeueAfter: TTL}, nil
}

// unknownRequester is the audit log's requester when nothing binds the
// annotation to the check's creator.
const unknownRequester = "unknown"

// requester is who asked, as far as podid can know: the annotation, where
// the admission policy binds it to the creator; "unknown" otherwise,
// whatever the annotation claims.
func (r *Reconciler) requester(check *v1alpha1.PodIdentityCheck) string {
	if name := check.Annotations[v1alpha1.AnnotationRequestedBy]; r.RequesterBound && name != "" {
		return name
	}
	return unknownRequester
}

// callerIdentity asks STS who podid server is.
func (r *Reconciler) callerIdentity(ctx context.Context) v1alpha1.PodIdentityCheckStatus {
	if r.STS == nil {
		return v1alpha1.PodIdentityCheckStatus{Outcome: v1alpha1.CheckRefused, Code: auth.InternalServer, Message: "this podid server has no STS client that can call sts:GetCallerIdentity"}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := r.STS.GetCallerIdentity(cctx, &awssts.GetCallerIdentityInput{})
	if err != nil {
		code := auth.ServiceUnavailable
		if errors.Is(err, context.DeadlineExceeded) {
			return v1alpha1.PodIdentityCheckStatus{Outcome: v1alpha1.CheckRefused, Code: code, Message: "sts:GetCallerIdentity did not answer within 10s from podid server: check its --sts-endpoint and the network from its pods to STS"}
		}
		return v1alpha1.PodIdentityCheckStatus{Outcome: v1alpha1.CheckRefused, Code: code, Message: "sts:GetCallerIdentity from podid server failed: " + err.Error()}
	}
	return v1alpha1.PodIdentityCheckStatus{Outcome: v1alpha1.CheckIssued, AssumedRoleARN: aws.ToString(out.Arn),
		Message: "STS answered podid server as " + aws.ToString(out.Arn)}
}
