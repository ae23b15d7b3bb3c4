package associationcontroller

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
)

func TestDesiredStatus(t *testing.T) {
	created := metav1.NewTime(time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC))
	now := time.Date(2026, 11, 23, 10, 0, 0, 500, time.UTC)
	earlier := metav1.NewTime(time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC))
	r := &Reconciler{
		Identity: association.Identity{Partition: "aws", Region: "eu-west-1", AccountID: "111122223333", ClusterName: "c"},
		Clock:    clocktesting.NewFakePassiveClock(now),
	}
	base := func(gen int64, policy string, status v1alpha1.PodIdentityAssociationStatus) *v1alpha1.PodIdentityAssociation {
		return &v1alpha1.PodIdentityAssociation{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "sa", UID: "uid-1", Generation: gen, CreationTimestamp: created},
			Spec:       v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "sa", RoleARN: "arn:aws:iam::111122223333:role/r", Policy: policy},
			Status:     status,
		}
	}
	observed := func(gen int64, status metav1.ConditionStatus, reason string) v1alpha1.PodIdentityAssociationStatus {
		return v1alpha1.PodIdentityAssociationStatus{
			ObservedGeneration: gen,
			ModifiedAt:         &earlier,
			Conditions:         []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: status, Reason: reason, LastTransitionTime: earlier}},
		}
	}

	cases := []struct {
		name           string
		pia            *v1alpha1.PodIdentityAssociation
		saExists       bool
		wantStatus     metav1.ConditionStatus
		wantReason     string
		wantModified   time.Time
		wantTransition time.Time
	}{
		{"new, no ServiceAccount", base(1, "", v1alpha1.PodIdentityAssociationStatus{}), false,
			metav1.ConditionTrue, v1alpha1.ReasonServiceAccountNotFound, created.Time, now.Truncate(time.Second)},
		{"new, ServiceAccount exists", base(1, "", v1alpha1.PodIdentityAssociationStatus{}), true,
			metav1.ConditionTrue, v1alpha1.ReasonAssociated, created.Time, now.Truncate(time.Second)},
		{"spec changed since last seen", base(2, "", observed(1, metav1.ConditionTrue, v1alpha1.ReasonAssociated)), true,
			metav1.ConditionTrue, v1alpha1.ReasonAssociated, now.Truncate(time.Second), earlier.Time},
		{"unchanged keeps its times", base(2, "", observed(2, metav1.ConditionTrue, v1alpha1.ReasonServiceAccountNotFound)), true,
			metav1.ConditionTrue, v1alpha1.ReasonAssociated, earlier.Time, earlier.Time},
		{"policy not JSON", base(3, "{nope}", observed(2, metav1.ConditionTrue, v1alpha1.ReasonAssociated)), true,
			metav1.ConditionFalse, v1alpha1.ReasonInvalidPolicy, now.Truncate(time.Second), now.Truncate(time.Second)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := r.desiredStatus(tc.pia, readyFacts{serviceAccount: tc.saExists, namespace: true})
			if st.AssociationID != association.IDFor("uid-1") || st.AssociationARN != r.Identity.AssociationARN(st.AssociationID) || st.ExternalID != association.ExternalIDFor("uid-1") {
				t.Errorf("identifiers: %+v", st)
			}
			if st.ObservedGeneration != tc.pia.Generation || !st.CreatedAt.Equal(&created) {
				t.Errorf("observedGeneration %d createdAt %v", st.ObservedGeneration, st.CreatedAt)
			}
			if !st.ModifiedAt.Time.Equal(tc.wantModified) {
				t.Errorf("modifiedAt = %v, want %v", st.ModifiedAt.Time, tc.wantModified)
			}
			if len(st.Conditions) != 1 {
				t.Fatalf("conditions = %+v", st.Conditions)
			}
			c := st.Conditions[0]
			if c.Status != tc.wantStatus || c.Reason != tc.wantReason || c.ObservedGeneration != tc.pia.Generation || c.Message == "" {
				t.Errorf("Ready = %s/%s gen %d %q, want %s/%s", c.Status, c.Reason, c.ObservedGeneration, c.Message, tc.wantStatus, tc.wantReason)
			}
			if !c.LastTransitionTime.Time.Equal(tc.wantTransition) {
				t.Errorf("lastTransitionTime = %v, want %v", c.LastTransitionTime.Time, tc.wantTransition)
			}
			if tc.wantReason == v1alpha1.ReasonInvalidPolicy && !strings.Contains(c.Message, "spec.policy") {
				t.Errorf("InvalidPolicy message does not say what to fix: %q", c.Message)
			}
		})
	}
}
