package associationstore

import (
	"context"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
)

// Filter selects associations by namespace and ServiceAccount ("" for any).
type Filter struct {
	Namespace, ServiceAccount string
}

func (f Filter) matches(namespace, serviceAccount string) bool {
	return (f.Namespace == "" || f.Namespace == namespace) && (f.ServiceAccount == "" || f.ServiceAccount == serviceAccount)
}

// Continue tokens say which kind the next page is of: the namespaces'
// associations come first, then the cluster ones. A token without a prefix
// is one a release before cluster associations handed out.
const (
	namespacedPrefix = "n:"
	clusterPrefix    = "c:"
)

// List returns at most limit associations matching f, from where token (""
// at first) says, and the token of the next page ("" after the last). A
// caller who may not list cluster associations gets the namespaces' only.
// Pages may hold fewer than limit, as EKS's may.
func List(ctx context.Context, c client.Reader, f Filter, limit int64, token string) ([]Stored, string, error) {
	if !strings.HasPrefix(token, clusterPrefix) {
		items, next, err := listNamespaced(ctx, c, f, limit, strings.TrimPrefix(token, namespacedPrefix))
		if err != nil || next != "" {
			return items, next, err
		}
		if int64(len(items)) == limit {
			return items, clusterPrefix, nil
		}
		more, next, err := listCluster(ctx, c, f, limit-int64(len(items)), "")
		return append(items, more...), next, err
	}
	return listCluster(ctx, c, f, limit, strings.TrimPrefix(token, clusterPrefix))
}

func listNamespaced(ctx context.Context, c client.Reader, f Filter, limit int64, cont string) ([]Stored, string, error) {
	opts := []client.ListOption{client.Limit(limit)}
	if f.Namespace != "" {
		opts = append(opts, client.InNamespace(f.Namespace))
	}
	if f.ServiceAccount != "" {
		// An association is named after its ServiceAccount.
		opts = append(opts, client.MatchingFields{"metadata.name": f.ServiceAccount})
	}
	if cont != "" {
		opts = append(opts, client.Continue(cont))
	}
	var list v1alpha1.PodIdentityAssociationList
	if err := c.List(ctx, &list, opts...); err != nil {
		return nil, "", err
	}
	out := make([]Stored, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, Stored{Namespaced: &list.Items[i]})
	}
	if list.Continue != "" {
		return out, namespacedPrefix + list.Continue, nil
	}
	return out, "", nil
}

func listCluster(ctx context.Context, c client.Reader, f Filter, limit int64, cont string) ([]Stored, string, error) {
	if f.Namespace != "" && f.ServiceAccount != "" {
		if cont != "" {
			return nil, "", nil
		}
		var one v1alpha1.ClusterPodIdentityAssociation
		err := c.Get(ctx, client.ObjectKey{Name: v1alpha1.ClusterAssociationName(f.Namespace, f.ServiceAccount)}, &one)
		switch {
		case apierrors.IsNotFound(err) || apierrors.IsForbidden(err):
			return nil, "", nil
		case err != nil:
			return nil, "", err
		}
		return []Stored{{Cluster: &one}}, "", nil
	}
	opts := []client.ListOption{client.Limit(limit)}
	if cont != "" {
		opts = append(opts, client.Continue(cont))
	}
	// The CRD declares spec.namespace and spec.serviceAccount selectable
	// (Kubernetes 1.31+); an older API server refuses the selector, and the
	// filter below does the work instead, with pages that may run short.
	selected := fields.Set{}
	if f.Namespace != "" {
		selected["spec.namespace"] = f.Namespace
	}
	if f.ServiceAccount != "" {
		selected["spec.serviceAccount"] = f.ServiceAccount
	}
	var list v1alpha1.ClusterPodIdentityAssociationList
	err := c.List(ctx, &list, append(opts, client.MatchingFieldsSelector{Selector: fields.SelectorFromSet(selected)})...)
	if apierrors.IsBadRequest(err) && len(selected) > 0 && cont == "" {
		err = c.List(ctx, &list, opts...)
	}
	if err != nil {
		if apierrors.IsForbidden(err) {
			return nil, "", nil
		}
		return nil, "", err
	}
	var out []Stored
	for i := range list.Items {
		if it := &list.Items[i]; f.matches(it.Spec.Namespace, it.Spec.ServiceAccount) {
			out = append(out, Stored{Cluster: it})
		}
	}
	if list.Continue != "" {
		return out, clusterPrefix + list.Continue, nil
	}
	return out, "", nil
}
