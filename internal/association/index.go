package association

import (
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/podid/podid/api/v1alpha1"
)

// Association is an immutable snapshot of one PodIdentityAssociation, holding
// what the credential exchange and the webhook need and nothing else. Callers
// must not modify it.
type Association struct {
	Namespace          string
	ServiceAccount     string
	UID                types.UID
	ID                 string
	ARN                string
	ExternalID         string
	RoleARN            string
	TargetRoleARN      string
	Policy             string
	DisableSessionTags bool
	Generation         int64
	// Cluster says the association is a ClusterPodIdentityAssociation (named
	// ClusterAssociationName(Namespace, ServiceAccount)), not a namespace's
	// PodIdentityAssociation.
	Cluster bool
	// PolicyError is why Policy cannot be used (not JSON), or nil; checked
	// once here rather than on every credential request.
	PolicyError error
}

// saKey is a map key made of two strings, so a lookup builds no string.
type saKey struct{ namespace, serviceAccount string }

// Index maps (namespace, ServiceAccount) and association ID to the current
// association, fed by an informer through Handler. Lookups are map reads under
// a read lock: O(1) and allocation-free whatever the number of associations.
//
// Every replica of podid server keeps its own Index, leader or not, since
// every replica answers credential requests.
type Index struct {
	identity Identity

	mu sync.RWMutex
	// bySA holds the namespaces' PodIdentityAssociations, byClusterSA the
	// ClusterPodIdentityAssociations; where both name a ServiceAccount, the
	// cluster one is in force. byID holds both.
	bySA        map[saKey]*Association
	byClusterSA map[saKey]*Association
	byID        map[string]*Association
}

// NewIndex returns an empty Index that names associations with identity.
func NewIndex(identity Identity) *Index {
	return &Index{
		identity:    identity,
		bySA:        make(map[saKey]*Association),
		byClusterSA: make(map[saKey]*Association),
		byID:        make(map[string]*Association),
	}
}

// Lookup returns the association of a ServiceAccount, if there is one.
func (ix *Index) Lookup(namespace, serviceAccount string) (*Association, bool) {
	key := saKey{namespace, serviceAccount}
	ix.mu.RLock()
	a, ok := ix.byClusterSA[key]
	if !ok {
		a, ok = ix.bySA[key]
	}
	ix.mu.RUnlock()
	return a, ok
}

// ByID returns the association with this association ID, if there is one.
func (ix *Index) ByID(id string) (*Association, bool) {
	ix.mu.RLock()
	a, ok := ix.byID[id]
	ix.mu.RUnlock()
	return a, ok
}

// Len returns the number of associations in the index.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.byID)
}

// Snapshot builds the Association the index holds for obj.
func (ix *Index) Snapshot(obj *v1alpha1.PodIdentityAssociation) *Association {
	id := IDFor(obj.UID)
	return &Association{
		Namespace:          obj.Namespace,
		ServiceAccount:     obj.Spec.ServiceAccount,
		UID:                obj.UID,
		ID:                 id,
		ARN:                ix.identity.AssociationARN(id),
		ExternalID:         ExternalIDFor(obj.UID),
		RoleARN:            obj.Spec.RoleARN,
		TargetRoleARN:      obj.Spec.TargetRoleARN,
		Policy:             obj.Spec.Policy,
		DisableSessionTags: obj.Spec.DisableSessionTags,
		Generation:         obj.Generation,
		PolicyError:        ValidatePolicy(obj.Spec.Policy),
	}
}

// Upsert records obj, replacing what the index held for its ServiceAccount.
// The object's name is its ServiceAccount's (a CEL rule enforces it); key by
// the name, which is what a delete event carries for certain.
func (ix *Index) Upsert(obj *v1alpha1.PodIdentityAssociation) {
	ix.put(ix.bySA, saKey{obj.Namespace, obj.Name}, ix.Snapshot(obj))
}

// UpsertCluster records a cluster association.
func (ix *Index) UpsertCluster(obj *v1alpha1.ClusterPodIdentityAssociation) {
	a := ix.Snapshot(obj.AsAssociation())
	a.Cluster = true
	ix.put(ix.byClusterSA, clusterKey(obj.Name), a)
}

// clusterKey is the ServiceAccount a cluster association's name
// (<namespace>.<serviceAccount>; a namespace name has no dot) stands for.
func clusterKey(name string) saKey {
	namespace, serviceAccount, _ := strings.Cut(name, ".")
	return saKey{namespace, serviceAccount}
}

func (ix *Index) put(m map[saKey]*Association, key saKey, a *Association) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if old, ok := m[key]; ok && old.ID != a.ID {
		delete(ix.byID, old.ID)
	}
	m[key] = a
	ix.byID[a.ID] = a
}

// Delete forgets the association named name in namespace.
func (ix *Index) Delete(namespace, name string) {
	ix.remove(ix.bySA, saKey{namespace, name})
}

// DeleteCluster forgets the cluster association of that object name.
func (ix *Index) DeleteCluster(name string) {
	ix.remove(ix.byClusterSA, clusterKey(name))
}

func (ix *Index) remove(m map[saKey]*Association, key saKey) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if old, ok := m[key]; ok {
		delete(ix.byID, old.ID)
		delete(m, key)
	}
}

// Handler returns the informer event handler that keeps the index current.
func (ix *Index) Handler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { ix.upsertObject(obj) },
		UpdateFunc: func(_, obj any) { ix.upsertObject(obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			switch o := obj.(type) {
			case *v1alpha1.PodIdentityAssociation:
				ix.Delete(o.Namespace, o.Name)
			case *v1alpha1.ClusterPodIdentityAssociation:
				ix.DeleteCluster(o.Name)
			}
		},
	}
}

func (ix *Index) upsertObject(obj any) {
	switch o := obj.(type) {
	case *v1alpha1.PodIdentityAssociation:
		ix.Upsert(o)
	case *v1alpha1.ClusterPodIdentityAssociation:
		ix.UpsertCluster(o)
	}
}
