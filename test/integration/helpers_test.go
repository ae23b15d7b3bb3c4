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
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
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
	return name
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
func waitForStatus(t *testing.T, pia *v1alpha1.PodIdentityAssociation, reason string) *v1alpha1.PodIdentityAssociation {
	t.Helper()
	var got v1alpha1.PodIdentityAssociation
	eventually(t, "status of "+pia.Name+" with reason "+reason, func(ctx context.Context) (bool, error) {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(pia), &got); err != nil {
			return false, err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == v1alpha1.ConditionReady && c.Reason == reason && got.Status.ObservedGeneration == got.Generation {
				return true, nil
			}
		}
		return false, nil
	})
	return &got
}
