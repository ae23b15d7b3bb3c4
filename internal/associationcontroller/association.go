package associationcontroller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
)

// +kubebuilder:rbac:groups=podid.io,resources=podidentityassociations,verbs=get;list;watch
// +kubebuilder:rbac:groups=podid.io,resources=podidentityassociations/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=podid.io,resources=clusterpodidentityassociations,verbs=get;list;watch
// +kubebuilder:rbac:groups=podid.io,resources=clusterpodidentityassociations/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Reconciler keeps the status of PodIdentityAssociations true.
type Reconciler struct {
	Client client.Client
	// APIReader reads past the cache: a ServiceAccount created just before
	// its association may not be in the cache yet, and "not found" must not
	// be reported for one that exists.
	APIReader client.Reader
	Identity  association.Identity
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
}

// SetupWithManager registers the reconciler. It watches ServiceAccounts by
// metadata only, since it needs to know only that one exists, and an
// association is named after its ServiceAccount, so a ServiceAccount event maps
// to the association of the same namespace and name.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("podidentityassociation").
		// One process may run more than one server (the sandbox's tests run
		// two in turn); their controllers then share metrics, which is fine.
		WithOptions(controller.Options{SkipNameValidation: ptr.To(true)}).
		For(&v1alpha1.PodIdentityAssociation{}).
		WatchesMetadata(&corev1.ServiceAccount{}, handler.EnqueueRequestsFromMapFunc(
			func(_ context.Context, sa client.Object) []reconcile.Request {
				return []reconcile.Request{{NamespacedName: client.ObjectKeyFromObject(sa)}}
			}), builder.OnlyMetadata).
		// A cluster association supersedes the namespace's own.
		Watches(&v1alpha1.ClusterPodIdentityAssociation{}, handler.EnqueueRequestsFromMapFunc(
			func(_ context.Context, obj client.Object) []reconcile.Request {
				c := obj.(*v1alpha1.ClusterPodIdentityAssociation)
				return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: c.Spec.Namespace, Name: c.Spec.ServiceAccount}}}
			})).
		Complete(r)
}

// Reconcile brings one association's status up to date.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var pia v1alpha1.PodIdentityAssociation
	if err := r.Client.Get(ctx, req.NamespacedName, &pia); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}

	saExists, err := r.exists(ctx, "ServiceAccount", client.ObjectKey{Namespace: pia.Namespace, Name: pia.Spec.ServiceAccount})
	if err != nil {
		return reconcile.Result{}, err
	}
	facts := readyFacts{serviceAccount: saExists, namespace: true}
	var cluster v1alpha1.ClusterPodIdentityAssociation
	switch err := r.Client.Get(ctx, client.ObjectKey{Name: v1alpha1.ClusterAssociationName(pia.Namespace, pia.Spec.ServiceAccount)}, &cluster); {
	case err == nil:
		facts.supersededBy = association.IDFor(cluster.UID)
	case !apierrors.IsNotFound(err):
		return reconcile.Result{}, fmt.Errorf("looking up the cluster association of %s/%s: %w", pia.Namespace, pia.Name, err)
	}
	return r.writeStatus(ctx, &pia, &pia.Status, r.desiredStatus(&pia, facts))
}

// writeStatus writes desired into obj's status (current points at it) with
// an optimistic-lock merge patch, and records an Event when the Ready
// reason changes. It serves both kinds.
func (r *Reconciler) writeStatus(ctx context.Context, obj client.Object, current *v1alpha1.PodIdentityAssociationStatus, desired v1alpha1.PodIdentityAssociationStatus) (reconcile.Result, error) {
	if equality.Semantic.DeepEqual(desired, *current) {
		return reconcile.Result{}, nil
	}
	before := meta.FindStatusCondition(current.Conditions, v1alpha1.ConditionReady)
	after := meta.FindStatusCondition(desired.Conditions, v1alpha1.ConditionReady)
	patch := client.MergeFromWithOptions(obj.DeepCopyObject().(client.Object), client.MergeFromWithOptimisticLock{})
	*current = desired
	if err := r.Client.Status().Patch(ctx, obj, patch); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			// A newer version is on its way to us, or the object is gone.
			return reconcile.Result{Requeue: apierrors.IsConflict(err)}, nil
		}
		return reconcile.Result{}, fmt.Errorf("updating status of association %s: %w", client.ObjectKeyFromObject(obj), err)
	}
	if before == nil || before.Reason != after.Reason {
		r.recordTransition(obj, after)
	}
	return reconcile.Result{}, nil
}

// exists reports whether the object of that core kind exists (and is not
// being deleted), reading past the cache before saying it does not.
func (r *Reconciler) exists(ctx context.Context, kind string, key client.ObjectKey) (bool, error) {
	var obj metav1.PartialObjectMetadata
	obj.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(kind))
	err := r.Client.Get(ctx, key, &obj)
	if apierrors.IsNotFound(err) && r.APIReader != nil {
		err = r.APIReader.Get(ctx, key, &obj)
	}
	switch {
	case err == nil:
		return obj.DeletionTimestamp == nil, nil
	case apierrors.IsNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("looking up %s %s: %w", kind, key, err)
}

// desiredStatus computes the status pia should have; it reads nothing but its
// arguments and the clock.
// readyFacts is what the Ready condition depends on beside the association.
type readyFacts struct {
	serviceAccount, namespace bool
	// supersededBy is the ID of the cluster association that is in force
	// instead of this namespaced one, or "".
	supersededBy string
}

func (r *Reconciler) desiredStatus(pia *v1alpha1.PodIdentityAssociation, facts readyFacts) v1alpha1.PodIdentityAssociationStatus {
	status := *pia.Status.DeepCopy()
	id := association.IDFor(pia.UID)
	status.AssociationID = id
	status.AssociationARN = r.Identity.AssociationARN(id)
	status.ExternalID = association.ExternalIDFor(pia.UID)
	created := pia.CreationTimestamp
	status.CreatedAt = &created

	if status.ModifiedAt == nil || status.ObservedGeneration != pia.Generation {
		modified := created
		if status.ObservedGeneration != 0 || pia.Generation > 1 {
			// The spec changed after creation (or before we first saw it).
			modified = metav1.NewTime(r.Clock.Now().Truncate(time.Second))
		}
		status.ModifiedAt = &modified
	}
	status.ObservedGeneration = pia.Generation

	ready := metav1.Condition{Type: v1alpha1.ConditionReady, ObservedGeneration: pia.Generation}
	switch err := association.ValidatePolicy(pia.Spec.Policy); {
	case err != nil:
		ready.Status = metav1.ConditionFalse
		ready.Reason = v1alpha1.ReasonInvalidPolicy
		ready.Message = fmt.Sprintf("%v; podid issues no credentials for this association until spec.policy is fixed", err)
	case facts.supersededBy != "":
		ready.Status = metav1.ConditionFalse
		ready.Reason = v1alpha1.ReasonSuperseded
		ready.Message = fmt.Sprintf("ClusterPodIdentityAssociation %s (association %s) names ServiceAccount %s/%s too and is in force instead; delete one of them",
			v1alpha1.ClusterAssociationName(pia.Namespace, pia.Spec.ServiceAccount), facts.supersededBy, pia.Namespace, pia.Spec.ServiceAccount)
	case !facts.namespace:
		ready.Status = metav1.ConditionTrue
		ready.Reason = v1alpha1.ReasonNamespaceNotFound
		ready.Message = fmt.Sprintf("namespace %s does not exist; pods running as ServiceAccount %s there will receive credentials for %s once it and the ServiceAccount are created", pia.Namespace, pia.Spec.ServiceAccount, effectiveRole(pia))
	case !facts.serviceAccount:
		ready.Status = metav1.ConditionTrue
		ready.Reason = v1alpha1.ReasonServiceAccountNotFound
		ready.Message = fmt.Sprintf("ServiceAccount %s/%s does not exist yet; its pods will receive credentials for %s once it is created", pia.Namespace, pia.Spec.ServiceAccount, pia.Spec.RoleARN)
	default:
		ready.Status = metav1.ConditionTrue
		ready.Reason = v1alpha1.ReasonAssociated
		ready.Message = fmt.Sprintf("pods running as ServiceAccount %s/%s receive credentials for %s", pia.Namespace, pia.Spec.ServiceAccount, effectiveRole(pia))
	}
	// SetStatusCondition keeps LastTransitionTime when the status is unchanged.
	now := metav1.NewTime(r.Clock.Now().Truncate(time.Second))
	if old := meta.FindStatusCondition(status.Conditions, ready.Type); old == nil || old.Status != ready.Status {
		ready.LastTransitionTime = now
	}
	meta.SetStatusCondition(&status.Conditions, ready)
	return status
}

func effectiveRole(pia *v1alpha1.PodIdentityAssociation) string {
	if pia.Spec.TargetRoleARN != "" {
		return pia.Spec.TargetRoleARN + " (through " + pia.Spec.RoleARN + ")"
	}
	return pia.Spec.RoleARN
}

func (r *Reconciler) recordTransition(regarding client.Object, ready *metav1.Condition) {
	eventType := corev1.EventTypeNormal
	if ready.Reason != v1alpha1.ReasonAssociated {
		eventType = corev1.EventTypeWarning
	}
	r.Recorder.Eventf(regarding, nil, eventType, ready.Reason, "Reconcile", "%s", ready.Message)
}
