package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/associationstore"
)

// newNamespace creates a namespace of its own for one test.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 40 {
		name = name[:40]
	}
	name = strings.Trim(name, "-") + "-" + rand.String(5)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := k8s.Create(t.Context(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	// Cluster associations survive their namespace (envtest has no namespace
	// controller to delete anything anyway): take away those of this one so
	// the tests after it keep room under the association limit.
	t.Cleanup(func() { deleteClusterAssociations(t, name) })
	return name
}

// deleteClusterAssociations deletes the cluster associations naming namespace.
func deleteClusterAssociations(t *testing.T, namespace string) {
	t.Helper()
	err := k8s.DeleteAllOf(context.WithoutCancel(t.Context()), &v1alpha1.ClusterPodIdentityAssociation{}, client.MatchingFields{"spec.namespace": namespace})
	if err != nil {
		t.Errorf("deleting the cluster associations of %s: %v", namespace, err)
	}
}

// newAssociation returns a valid association for serviceAccount.
func newAssociation(namespace, serviceAccount, role string) *v1alpha1.PodIdentityAssociation {
	return &v1alpha1.PodIdentityAssociation{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: serviceAccount},
		Spec: v1alpha1.PodIdentityAssociationSpec{
			ServiceAccount: serviceAccount,
			RoleARN:        role,
		},
	}
}

// eventually polls cond until it holds or 20 s pass.
func eventually(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 20*time.Second, true, cond)
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// waitForStatus waits until the controller has observed pia's generation
// and returns the object.
// pia may be a cluster association's view (its namespace and
// ServiceAccount); the association in force is read, of either kind.
func waitForStatus(t *testing.T, pia *v1alpha1.PodIdentityAssociation, reason string) *v1alpha1.PodIdentityAssociation {
	t.Helper()
	var got *v1alpha1.PodIdentityAssociation
	eventually(t, "status of "+pia.Name+" with reason "+reason, func(ctx context.Context) (bool, error) {
		stored, err := associationstore.Get(ctx, k8s, pia.Namespace, pia.Spec.ServiceAccount)
		if err != nil {
			return false, err
		}
		got = stored.View()
		for _, c := range got.Status.Conditions {
			if c.Type == v1alpha1.ConditionReady && c.Reason == reason && got.Status.ObservedGeneration == got.Generation {
				return true, nil
			}
		}
		return false, nil
	})
	return got
}

// getAssociation reads the association of namespace/serviceAccount, of
// either kind, as a PodIdentityAssociation (a view of a cluster one).
func getAssociation(t *testing.T, namespace, serviceAccount string) *v1alpha1.PodIdentityAssociation {
	t.Helper()
	stored, err := associationstore.Get(t.Context(), k8s, namespace, serviceAccount)
	if err != nil {
		t.Fatal(err)
	}
	return stored.View()
}

// updateLatest makes change to the latest version of obj and updates it,
// again after a conflict: podid's controllers write status meanwhile.
func updateLatest(t *testing.T, obj client.Object, change func()) error {
	t.Helper()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		change()
		return k8s.Update(t.Context(), obj)
	})
}
