package association

import (
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

	mu   sync.RWMutex
	bySA map[saKey]*Association
	byID map[string]*Association
}

// NewIndex returns an empty Index that names associations with identity.
func NewIndex(identity Identity) *Index {
	return &Index{
		identity: identity,
		bySA:     make(map[saKey]*Association),
		byID:     make(map[string]*Association),
	}
}

// Lookup returns the association of a ServiceAccount, if there is one.
func (ix *Index) Lookup(namespace, serviceAccount string) (*Association, bool) {
	ix.mu.RLock()
	a, ok := ix.bySA[saKey{namespace, serviceAccount}]
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
	return len(ix.bySA)
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
func (ix *Index) Upsert(obj *v1alpha1.PodIdentityAssociation) {
	a := ix.Snapshot(obj)
	// The object's name is its ServiceAccount's (a CEL rule enforces it); key
	// by the name, which is what a delete event carries for certain.
	key := saKey{obj.Namespace, obj.Name}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if old, ok := ix.bySA[key]; ok && old.ID != a.ID {
		delete(ix.byID, old.ID)
	}
	ix.bySA[key] = a
	ix.byID[a.ID] = a
}

// Delete forgets the association named name in namespace.
func (ix *Index) Delete(namespace, name string) {
	key := saKey{namespace, name}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if old, ok := ix.bySA[key]; ok {
		delete(ix.byID, old.ID)
		delete(ix.bySA, key)
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
			if pia, ok := obj.(*v1alpha1.PodIdentityAssociation); ok {
				ix.Delete(pia.Namespace, pia.Name)
			}
		},
	}
}

func (ix *Index) upsertObject(obj any) {
	if pia, ok := obj.(*v1alpha1.PodIdentityAssociation); ok {
		ix.Upsert(pia)
	}
}
