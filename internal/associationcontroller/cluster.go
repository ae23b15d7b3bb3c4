package associationcontroller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podid/podid/api/v1alpha1"
)

// ClusterReconciler keeps the status of ClusterPodIdentityAssociations true:
// the same identifiers and Ready condition as a namespace's association, with
// NamespaceNotFound while the namespace does not exist.
type ClusterReconciler struct {
	*Reconciler
}

// SetupWithManager registers the reconciler. A cluster association is named
// <namespace>.<serviceAccount>, so a ServiceAccount event maps to one name; a
// namespace event maps to every cluster association naming the namespace.
func (r ClusterReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("clusterpodidentityassociation").
		WithOptions(controller.Options{SkipNameValidation: ptr.To(true)}).
		For(&v1alpha1.ClusterPodIdentityAssociation{}).
		WatchesMetadata(&corev1.ServiceAccount{}, handler.EnqueueRequestsFromMapFunc(
			func(_ context.Context, sa client.Object) []reconcile.Request {
				return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: v1alpha1.ClusterAssociationName(sa.GetNamespace(), sa.GetName())}}}
			}), builder.OnlyMetadata).
		WatchesMetadata(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.forNamespace), builder.OnlyMetadata).
		Complete(r)
}

func (r ClusterReconciler) forNamespace(ctx context.Context, ns client.Object) []reconcile.Request {
	var list v1alpha1.ClusterPodIdentityAssociationList
	if err := r.Client.List(ctx, &list); err != nil {
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		if list.Items[i].Spec.Namespace == ns.GetName() {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Name: list.Items[i].Name}})
		}
	}
	return out
}

// Reconcile brings one cluster association's status up to date.
func (r ClusterReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var cpia v1alpha1.ClusterPodIdentityAssociation
	if err := r.Client.Get(ctx, req.NamespacedName, &cpia); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	nsExists, err := r.exists(ctx, "Namespace", client.ObjectKey{Name: cpia.Spec.Namespace})
	if err != nil {
		return reconcile.Result{}, err
	}
	saExists := false
	if nsExists {
		if saExists, err = r.serviceAccountExists(ctx, cpia.Spec.Namespace, cpia.Spec.ServiceAccount); err != nil {
			return reconcile.Result{}, err
		}
	}
	view := cpia.AsAssociation()
	status := r.desiredStatus(view, readyFacts{serviceAccount: saExists, namespace: nsExists})
	if equality.Semantic.DeepEqual(status, cpia.Status) {
		return reconcile.Result{}, nil
	}
	before := meta.FindStatusCondition(cpia.Status.Conditions, v1alpha1.ConditionReady)
	after := meta.FindStatusCondition(status.Conditions, v1alpha1.ConditionReady)
	patch := client.MergeFromWithOptions(cpia.DeepCopy(), client.MergeFromWithOptimisticLock{})
	cpia.Status = status
	if err := r.Client.Status().Patch(ctx, &cpia, patch); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return reconcile.Result{Requeue: apierrors.IsConflict(err)}, nil
		}
		return reconcile.Result{}, fmt.Errorf("updating status of cluster association %s: %w", cpia.Name, err)
	}
	if before == nil || before.Reason != after.Reason {
		r.recordTransition(&cpia, after)
	}
	return reconcile.Result{}, nil
}

// exists reports whether the object of that core kind exists, reading past
// the cache before saying it does not.
func (r ClusterReconciler) exists(ctx context.Context, kind string, key client.ObjectKey) (bool, error) {
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
