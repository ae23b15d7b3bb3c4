package rotator

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podid/podid/api/v1alpha1"
)

// CacheOptions keep only the rotators' own secrets in memory: a cluster's
// other secrets are neither cached nor watched.
func CacheOptions() cache.Options {
	managed, _ := labels.NewRequirement(LabelRotator, selection.Exists, nil)
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.NewSelector().Add(*managed)},
		},
	}
}

// IsNamespaced reports whether the installed SecretRotator CRD is the
// namespaced variant.
func IsNamespaced(mapper meta.RESTMapper) (bool, error) {
	m, err := mapper.RESTMapping(v1alpha1.GroupVersion.WithKind("SecretRotator").GroupKind(), v1alpha1.GroupVersion.Version)
	if err != nil {
		return false, err
	}
	return m.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

// SetupWithManager registers the controller. Rotators are reconciled when
// their spec changes; all of them when a namespace appears, changes labels
// or goes (so matchExpressions count as much as matchLabels); one when a
// secret it owns is changed or deleted by someone else; and on their
// renewal and retry timers.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, reg prometheus.Registerer) error {
	r.metrics = newMetrics(reg, r)
	namespaceChanged := predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return true },
		DeleteFunc: func(event.DeleteEvent) bool { return true },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return !labels.Equals(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels()) ||
				e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero()
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("secretrotator").
		WithOptions(controller.Options{SkipNameValidation: ptr.To(true), MaxConcurrentReconciles: 4}).
		For(&v1alpha1.SecretRotator{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}))).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.rotatorsFor), builder.WithPredicates(namespaceChanged)).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.ownerOf)).
		Complete(r)
}

// rotatorsFor maps a namespace event to the rotators that may select it.
func (r *Reconciler) rotatorsFor(ctx context.Context, ns client.Object) []reconcile.Request {
	var list v1alpha1.SecretRotatorList
	var opts []client.ListOption
	if r.Namespaced {
		opts = append(opts, client.InNamespace(ns.GetName()))
	}
	if err := r.Client.List(ctx, &list, opts...); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, rot := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&rot)})
	}
	return out
}

// ownerOf maps a managed secret to its rotator.
func (r *Reconciler) ownerOf(_ context.Context, s client.Object) []reconcile.Request {
	name := s.GetLabels()[LabelRotator]
	if name == "" {
		return nil
	}
	key := types.NamespacedName{Name: name}
	if r.Namespaced {
		key.Namespace = s.GetNamespace()
	}
	return []reconcile.Request{{NamespacedName: key}}
}
