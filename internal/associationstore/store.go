// Package associationstore reads and writes Pod Identity associations of both
// kinds — a namespace's PodIdentityAssociation and a
// ClusterPodIdentityAssociation — as one thing: for the callers that act for a
// user (the EKS-compatible API, the CLI, doctor, migrate), and the webhook's
// read past its index. Everything is done with the client it is given, so a
// user's own RBAC and podid's admission policies decide.
package associationstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
)

// Stored is one association as the API server holds it: exactly one of
// Namespaced and Cluster is set.
type Stored struct {
	Namespaced *v1alpha1.PodIdentityAssociation
	Cluster    *v1alpha1.ClusterPodIdentityAssociation
}

// Object is the stored object, for updates and deletes.
func (s Stored) Object() client.Object {
	if s.Cluster != nil {
		return s.Cluster
	}
	return s.Namespaced
}

// Spec is the stored object's spec; changes to it are written by Update.
func (s Stored) Spec() *v1alpha1.PodIdentityAssociationSpec {
	if s.Cluster != nil {
		return &s.Cluster.Spec.PodIdentityAssociationSpec
	}
	return &s.Namespaced.Spec
}

// View is the association as a PodIdentityAssociation in its namespace
// (a copy for a cluster association): what EKS's formats are made from.
func (s Stored) View() *v1alpha1.PodIdentityAssociation {
	if s.Cluster != nil {
		return s.Cluster.AsAssociation()
	}
	return s.Namespaced
}

// ID is the association's EKS ID.
func (s Stored) ID() string { return association.IDFor(s.Object().GetUID()) }

// Kind names the stored kind for messages: "ClusterPodIdentityAssociation x.y"
// or "PodIdentityAssociation ns/name".
func (s Stored) Kind() string {
	if s.Cluster != nil {
		return "ClusterPodIdentityAssociation " + s.Cluster.Name
	}
	return "PodIdentityAssociation " + s.Namespaced.Namespace + "/" + s.Namespaced.Name
}

// Get finds the association of a ServiceAccount: the cluster one, which is in
// force where both exist, else the namespace's. A caller who may not read
// cluster associations sees only the namespace's. The error is the API
// server's (NotFound when there is neither).
func Get(ctx context.Context, c client.Reader, namespace, serviceAccount string) (Stored, error) {
	stored, err := GetKind(ctx, c, namespace, serviceAccount, true)
	if err == nil || (!apierrors.IsNotFound(err) && !apierrors.IsForbidden(err)) {
		return stored, err
	}
	return GetKind(ctx, c, namespace, serviceAccount, false)
}

// GetKind reads the association of a ServiceAccount of one kind: the
// cluster one, or the namespace's.
func GetKind(ctx context.Context, c client.Reader, namespace, serviceAccount string, cluster bool) (Stored, error) {
	if cluster {
		var cpia v1alpha1.ClusterPodIdentityAssociation
		if err := c.Get(ctx, client.ObjectKey{Name: v1alpha1.ClusterAssociationName(namespace, serviceAccount)}, &cpia); err != nil {
			return Stored{}, err
		}
		return Stored{Cluster: &cpia}, nil
	}
	var pia v1alpha1.PodIdentityAssociation
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: serviceAccount}, &pia); err != nil {
		return Stored{}, err
	}
	return Stored{Namespaced: &pia}, nil
}

// Scope is where Create keeps a new association.
type Scope string

const (
	// ScopeAuto keeps it at the cluster level, as EKS does, when the caller
	// may create cluster associations, else in its namespace.
	ScopeAuto Scope = "auto"
	// ScopeCluster keeps it at the cluster level: it may precede its
	// namespace and survives the namespace's deletion.
	ScopeCluster Scope = "cluster"
	// ScopeNamespace keeps it in its namespace, which must exist, and which
	// it lives and dies with.
	ScopeNamespace Scope = "namespace"
)

// ParseScope reads a --scope value.
func ParseScope(s string) (Scope, error) {
	switch Scope(s) {
	case ScopeAuto, ScopeCluster, ScopeNamespace:
		return Scope(s), nil
	}
	return "", fmt.Errorf("scope %q is not one of auto, cluster, namespace", s)
}

// Create stores the association pia describes (its namespace, name, spec,
// labels and annotations) where scope says. The error is the API server's;
// with ScopeAuto, a refusal by RBAC of the cluster kind falls back to the
// namespace's, and a refusal by an admission policy (PassRole) does not.
func Create(ctx context.Context, c client.Client, pia *v1alpha1.PodIdentityAssociation, scope Scope) (Stored, error) {
	if scope != ScopeNamespace {
		cluster := v1alpha1.NewClusterAssociation(pia)
		err := c.Create(ctx, cluster)
		if err == nil {
			return Stored{Cluster: cluster}, nil
		}
		if scope == ScopeCluster || !RBACForbidden(err) {
			return Stored{}, err
		}
	}
	own := pia.DeepCopy()
	own.Name = own.Spec.ServiceAccount
	if err := c.Create(ctx, own); err != nil {
		return Stored{}, err
	}
	return Stored{Namespaced: own}, nil
}

// RBACForbidden reports whether err is RBAC's refusal, not an admission
// policy's (whose message the API server gives as "… denied request: …").
func RBACForbidden(err error) bool {
	return apierrors.IsForbidden(err) && !strings.Contains(err.Error(), " denied request: ")
}

// NamespaceMissing reports whether a namespaced create failed because the
// namespace does not exist.
func NamespaceMissing(err error) bool {
	var status apierrors.APIStatus
	if !apierrors.IsNotFound(err) || !errors.As(err, &status) {
		return false
	}
	d := status.Status().Details
	return d != nil && d.Kind == "namespaces"
}
