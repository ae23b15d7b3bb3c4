package rotator

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
)

// ReasonRenewalFailing: the current token still works, but making its
// successor failed; the rotator keeps trying with backoff.
const ReasonRenewalFailing = "RenewalFailing"

// status computes the rotator's status from one pass.
func (r *Reconciler) status(rot *v1alpha1.SecretRotator, tok tokenResult, namespaces []string, written *writeResult) v1alpha1.SecretRotatorStatus {
	st := *rot.Status.DeepCopy()
	st.ObservedGeneration = rot.Generation
	st.Provider = provider(&rot.Spec)
	if tok.mechanism != "" {
		st.AuthType = string(tok.mechanism)
	}
	st.TokenExpiresAt, st.LastRotationTime = nil, nil
	if tok.creds != nil {
		st.TokenExpiresAt = &metav1.Time{Time: tok.creds.ExpiresAt.Truncate(time.Second)}
		st.LastRotationTime = &metav1.Time{Time: tok.obtained.Truncate(time.Second)}
		st.Identity = tok.creds.Identity
	}
	if written != nil {
		st.SecretManagedByNamespaces = nil
		if len(written.managed) > 0 {
			st.SecretManagedByNamespaces = written.managed
		}
		st.ProvisionedNamespaces = nil
		want := len(wantedSecrets(&rot.Spec))
		for _, ns := range namespaces {
			if len(written.failures[ns]) == 0 && len(written.managed[ns]) == want {
				st.ProvisionedNamespaces = append(st.ProvisionedNamespaces, ns)
			}
		}
		st.NamespaceCount = len(st.ProvisionedNamespaces)
		st.FailedNamespaces = nil
		for _, ns := range slices.Sorted(maps.Keys(written.failures)) {
			st.FailedNamespaces = append(st.FailedNamespaces, v1alpha1.NamespaceFailure{Namespace: ns, Reason: strings.Join(written.failures[ns], "; ")})
		}
	}

	cond := metav1.Condition{Type: v1alpha1.ConditionReady, ObservedGeneration: rot.Generation}
	switch {
	case tok.reason == v1alpha1.ReasonInvalidSpec && tok.creds == nil:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec, "the spec cannot be acted on: "+tok.failure.Error()
	case tok.creds == nil && tok.failure != nil:
		cond.Status, cond.Reason = metav1.ConditionFalse, tok.reason
		cond.Message = fmt.Sprintf("%v; next attempt at %s", tok.failure, tok.next.UTC().Format(time.RFC3339))
		if tok.reason == v1alpha1.ReasonNoAWSIdentity {
			cond.Message += " (check the rotator's PodIdentityAssociation or IRSA role)"
		}
	case tok.creds == nil:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1alpha1.ReasonTokenExchangeFailed, "no registry token yet"
	case tok.failure != nil:
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonRenewalFailing
		cond.Message = fmt.Sprintf("the current token is valid until %s, but renewing it failed: %v; next attempt at %s", tok.creds.ExpiresAt.UTC().Format(time.RFC3339), tok.failure, tok.next.UTC().Format(time.RFC3339))
	case written != nil && len(written.failures) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha1.ReasonPartiallyProvisioned
		cond.Message = fmt.Sprintf("%d of %d namespaces could not get their secrets; see status.failedNamespaces", len(written.failures), len(namespaces))
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, v1alpha1.ReasonRotated
		cond.Message = fmt.Sprintf("%d namespaces have their secrets; the token is valid until %s", len(namespaces), tok.creds.ExpiresAt.UTC().Format(time.RFC3339))
		for _, n := range tok.notes {
			cond.Message += "; " + n.message
		}
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	return st
}

// writeStatus writes st when it differs from what the object has.
func (r *Reconciler) writeStatus(ctx context.Context, rot *v1alpha1.SecretRotator, st v1alpha1.SecretRotatorStatus) error {
	if equality.Semantic.DeepEqual(st, rot.Status) {
		return nil
	}
	patch := client.MergeFrom(rot.DeepCopy())
	rot.Status = st
	if err := r.Client.Status().Patch(ctx, rot, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("updating the status: %w", err)
	}
	return nil
}
