package integration

import (
	"context"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
)

var idPattern = regexp.MustCompile(`^a-[a-z0-9]{17}$`)

func TestStatusIsFilled(t *testing.T) {
	ns := newNamespace(t)
	pia := newAssociation(ns, "reports", roleA)
	pia.Spec.TargetRoleARN = "arn:aws:iam::444455556666:role/target"
	if err := k8s.Create(t.Context(), pia); err != nil {
		t.Fatal(err)
	}
	got := waitForStatus(t, pia, v1alpha1.ReasonServiceAccountNotFound)
	st := got.Status

	if !idPattern.MatchString(st.AssociationID) || st.AssociationID != association.IDFor(got.UID) {
		t.Errorf("associationId = %q, want a-+17 derived from the UID (%s)", st.AssociationID, association.IDFor(got.UID))
	}
	wantARN := "arn:aws:eks:eu-west-1:111122223333:podidentityassociation/podid-test/" + st.AssociationID
	if st.AssociationARN != wantARN {
		t.Errorf("associationArn = %q, want %q", st.AssociationARN, wantARN)
	}
	if st.ExternalID != association.ExternalIDFor(got.UID) {
		t.Errorf("externalId = %q", st.ExternalID)
	}
	if st.CreatedAt == nil || !st.CreatedAt.Equal(&got.CreationTimestamp) {
		t.Errorf("createdAt = %v, want the creation timestamp %v", st.CreatedAt, got.CreationTimestamp)
	}
	if st.ModifiedAt == nil || !st.ModifiedAt.Equal(st.CreatedAt) {
		t.Errorf("modifiedAt of a new association = %v, want createdAt %v", st.ModifiedAt, st.CreatedAt)
	}
	if st.ObservedGeneration != 1 {
		t.Errorf("observedGeneration = %d, want 1", st.ObservedGeneration)
	}
}

func TestReadyReasons(t *testing.T) {
	ns := newNamespace(t)
	pia := newAssociation(ns, "worker", roleA)
	if err := k8s.Create(t.Context(), pia); err != nil {
		t.Fatal(err)
	}

	// No ServiceAccount yet: in force, with a warning.
	got := waitForStatus(t, pia, v1alpha1.ReasonServiceAccountNotFound)
	ready := readyCondition(t, got)
	if ready.Status != metav1.ConditionTrue || !strings.Contains(ready.Message, "does not exist yet") {
		t.Errorf("without ServiceAccount: Ready = %s %q", ready.Status, ready.Message)
	}
	waitForEvent(t, ns, "worker", corev1.EventTypeWarning, v1alpha1.ReasonServiceAccountNotFound)

	// The ServiceAccount appears: the controller notices without a change to
	// the association.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "worker"}}
	if err := k8s.Create(t.Context(), sa); err != nil {
		t.Fatal(err)
	}
	got = waitForStatus(t, pia, v1alpha1.ReasonAssociated)
	if ready := readyCondition(t, got); ready.Status != metav1.ConditionTrue || !strings.Contains(ready.Message, roleA) {
		t.Errorf("with ServiceAccount: Ready = %s %q", ready.Status, ready.Message)
	}
	waitForEvent(t, ns, "worker", corev1.EventTypeNormal, v1alpha1.ReasonAssociated)

	// A policy that passes the API server's shape check but is not JSON.
	updateSpec(t, pia, func(s *v1alpha1.PodIdentityAssociationSpec) { s.Policy = `{"Version": 2012-10-17}` })
	got = waitForStatus(t, pia, v1alpha1.ReasonInvalidPolicy)
	ready = readyCondition(t, got)
	if ready.Status != metav1.ConditionFalse || !strings.Contains(ready.Message, "not valid JSON") {
		t.Errorf("bad policy: Ready = %s %q", ready.Status, ready.Message)
	}
	if got.Status.ObservedGeneration != 2 {
		t.Errorf("observedGeneration = %d, want 2", got.Status.ObservedGeneration)
	}
	if !got.Status.ModifiedAt.Time.Equal(fakeClock.Now()) {
		t.Errorf("modifiedAt after an update = %v, want the server's clock %v", got.Status.ModifiedAt, fakeClock.Now())
	}
	waitForEvent(t, ns, "worker", corev1.EventTypeWarning, v1alpha1.ReasonInvalidPolicy)

	// The ServiceAccount goes away again.
	updateSpec(t, pia, func(s *v1alpha1.PodIdentityAssociationSpec) { s.Policy = "" })
	waitForStatus(t, pia, v1alpha1.ReasonAssociated)
	if err := k8s.Delete(t.Context(), sa); err != nil {
		t.Fatal(err)
	}
	waitForStatus(t, pia, v1alpha1.ReasonServiceAccountNotFound)
}

func TestIndexFollowsAssociations(t *testing.T) {
	ns := newNamespace(t)
	pia := newAssociation(ns, "indexed", roleA)
	if err := k8s.Create(t.Context(), pia); err != nil {
		t.Fatal(err)
	}
	var got *association.Association
	eventually(t, "the index to hold the association", func(context.Context) (bool, error) {
		var ok bool
		got, ok = srv.Index.Lookup(ns, "indexed")
		return ok && got.RoleARN == roleA, nil
	})
	if byID, ok := srv.Index.ByID(got.ID); !ok || byID != got {
		t.Errorf("ByID(%s) = %v, %v; want the association Lookup returned", got.ID, byID, ok)
	}

	const roleB = "arn:aws:iam::111122223333:role/app-b"
	updateSpec(t, pia, func(s *v1alpha1.PodIdentityAssociationSpec) {
		s.RoleARN = roleB
		s.DisableSessionTags = true
	})
	eventually(t, "the index to see the update", func(context.Context) (bool, error) {
		a, ok := srv.Index.Lookup(ns, "indexed")
		return ok && a.RoleARN == roleB && a.DisableSessionTags, nil
	})

	if err := k8s.Delete(t.Context(), pia); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the index to drop the association", func(context.Context) (bool, error) {
		_, bySA := srv.Index.Lookup(ns, "indexed")
		_, byID := srv.Index.ByID(got.ID)
		return !bySA && !byID, nil
	})
}

func readyCondition(t *testing.T, pia *v1alpha1.PodIdentityAssociation) metav1.Condition {
	t.Helper()
	for _, c := range pia.Status.Conditions {
		if c.Type == v1alpha1.ConditionReady {
			return c
		}
	}
	t.Fatalf("no Ready condition in %+v", pia.Status)
	return metav1.Condition{}
}

func updateSpec(t *testing.T, pia *v1alpha1.PodIdentityAssociation, change func(*v1alpha1.PodIdentityAssociationSpec)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cur v1alpha1.PodIdentityAssociation
		if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(pia), &cur); err != nil {
			return err
		}
		change(&cur.Spec)
		return k8s.Update(t.Context(), &cur)
	})
	if err != nil {
		t.Fatalf("updating %s: %v", pia.Name, err)
	}
}

func waitForEvent(t *testing.T, namespace, name, eventType, reason string) {
	t.Helper()
	eventually(t, eventType+" event "+reason+" on "+name, func(ctx context.Context) (bool, error) {
		var list eventsv1.EventList
		if err := k8s.List(ctx, &list, client.InNamespace(namespace)); err != nil {
			return false, err
		}
		for _, e := range list.Items {
			if e.Regarding.Kind == "PodIdentityAssociation" && e.Regarding.Name == name && e.Type == eventType && e.Reason == reason && e.Note != "" {
				return true, nil
			}
		}
		return false, nil
	})
}
