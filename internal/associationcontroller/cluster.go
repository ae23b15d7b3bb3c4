package associationcontroller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
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
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1alpha1.ClusterPodIdentityAssociation{}, clusterNamespaceField,
		func(o client.Object) []string {
			return []string{o.(*v1alpha1.ClusterPodIdentityAssociation).Spec.Namespace}
		}); err != nil {
		return fmt.Errorf("indexing cluster associations by namespace: %w", err)
	}
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

// clusterNamespaceField indexes cluster associations by the namespace they
// name, so that a namespace event finds its few among thousands.
const clusterNamespaceField = "spec.namespace"

func (r ClusterReconciler) forNamespace(ctx context.Context, ns client.Object) []reconcile.Request {
	var list v1alpha1.ClusterPodIdentityAssociationList
	if err := r.Client.List(ctx, &list, client.MatchingFields{clusterNamespaceField: ns.GetName()}); err != nil {
		// From the informer's cache: only a missing index fails, at start.
		logf.FromContext(ctx).Error(err, "listing the cluster associations of a namespace", "namespace", ns.GetName())
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Name: list.Items[i].Name}})
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
		if saExists, err = r.exists(ctx, "ServiceAccount", client.ObjectKey{Namespace: cpia.Spec.Namespace, Name: cpia.Spec.ServiceAccount}); err != nil {
			return reconcile.Result{}, err
		}
	}
	return r.writeStatus(ctx, &cpia, &cpia.Status, r.desiredStatus(cpia.AsAssociation(), readyFacts{serviceAccount: saExists, namespace: nsExists}))
}
