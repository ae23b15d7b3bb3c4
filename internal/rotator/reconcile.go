package rotator

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/credsource"
	"github.com/podid/podid/internal/regcred"
)

// Finalizer holds a SecretRotator until its secrets are deleted, so that
// they go with it even where no garbage collector runs.
const Finalizer = "podid.io/secret-rotator"

// Reconciler is the SecretRotator controller.
type Reconciler struct {
	// Client reads from the cache (secrets: only the rotators' own) and writes.
	Client client.Client
	// APIReader reads past the cache.
	APIReader client.Reader
	// Resolver returns the credential resolver for a rotator (its region).
	Resolver func(rot *v1alpha1.SecretRotator) *credsource.Resolver
	// Exchangers builds a rotator's registry exchanger.
	Exchangers func(ctx context.Context, rot *v1alpha1.SecretRotator) (regcred.Exchanger, error)
	Recorder   events.EventRecorder
	// Namespaced is true when the SecretRotator CRD is the namespaced
	// variant: a rotator then writes only into its own namespace, and
	// names nothing outside it.
	Namespaced bool
	// Reach bounds the hosts and ServiceAccounts a rotator may name.
	Reach Reach
	// Workers bounds concurrent secret writes; zero means 16.
	Workers int
	// Backoff spaces out retries; zero means DefaultBackoff.
	Backoff Backoff
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	tokens  states
	metrics *metrics
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Reconciler) backoff() Backoff {
	if r.Backoff.Base == 0 {
		return DefaultBackoff
	}
	return r.Backoff
}

func (r *Reconciler) workers() int {
	if r.Workers > 0 {
		return r.Workers
	}
	return 16
}

// Reconcile brings one SecretRotator's secrets and status up to date.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var rot v1alpha1.SecretRotator
	if err := r.Client.Get(ctx, req.NamespacedName, &rot); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	if !rot.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, r.finalize(ctx, &rot)
	}
	if !controllerutil.ContainsFinalizer(&rot, Finalizer) {
		patch := client.MergeFrom(rot.DeepCopy())
		controllerutil.AddFinalizer(&rot, Finalizer)
		if err := r.Client.Patch(ctx, &rot, patch); err != nil {
			return reconcile.Result{}, fmt.Errorf("adding the finalizer: %w", err)
		}
	}

	err := validate(&rot.Spec)
	if err == nil {
		err = r.Reach.check(&rot, r.Namespaced)
	}
	if err != nil {
		st := r.status(&rot, tokenResult{failure: err, reason: v1alpha1.ReasonInvalidSpec}, nil, nil)
		return reconcile.Result{}, r.writeStatus(ctx, &rot, st)
	}

	tok := r.token(ctx, &rot)
	logger := log.FromContext(ctx).WithValues("secretrotator", rot.Name)
	if tok.rotated {
		logger.Info("obtained a registry token", "provider", provider(&rot.Spec), "authType", tok.mechanism, "identity", tok.creds.Identity, "expires", tok.creds.ExpiresAt.UTC().Format(time.RFC3339))
		r.Recorder.Eventf(&rot, nil, corev1.EventTypeNormal, "Rotated", "Rotate", "obtained a %s token for %s, valid until %s", provider(&rot.Spec), tok.creds.Identity, tok.creds.ExpiresAt.UTC().Format(time.RFC3339))
		for _, n := range tok.notes {
			logger.Info("registry token note", "reason", n.reason, "note", n.message)
			r.Recorder.Eventf(&rot, nil, corev1.EventTypeWarning, n.reason, "Rotate", "%s", n.message)
		}
	}
	if tok.attempted && tok.failure != nil {
		// One line and one event per attempt; attempts are spaced by the backoff.
		logger.Error(tok.failure, "registry token exchange failed", "reason", tok.reason, "retryAt", tok.next.UTC().Format(time.RFC3339))
		r.Recorder.Eventf(&rot, nil, corev1.EventTypeWarning, tok.reason, "Rotate", "%v (next attempt at %s)", tok.failure, tok.next.UTC().Format(time.RFC3339))
	}

	namespaces, err := r.matchingNamespaces(ctx, &rot)
	if err != nil {
		return reconcile.Result{}, err
	}
	existing, err := r.ownedSecrets(ctx, &rot)
	if err != nil {
		return reconcile.Result{}, err
	}
	written := r.sync(ctx, &rot, namespaces, tok.creds, existing)
	for _, key := range written.foreign {
		r.Recorder.Eventf(&rot, nil, corev1.EventTypeWarning, "SecretNotOwned", "Provision", "secret %s/%s exists and was not created by this SecretRotator; it is left alone", key.Namespace, key.Name)
	}

	if err := r.writeStatus(ctx, &rot, r.status(&rot, tok, namespaces, written)); err != nil {
		return reconcile.Result{}, err
	}
	after := tok.next.Sub(r.now())
	if len(written.failures) > 0 {
		// Namespaces that failed for another reason (a write refused) are
		// tried again soon, on the same token.
		after = min(after, 30*time.Second)
	}
	return reconcile.Result{RequeueAfter: max(after, time.Second)}, nil
}

// matchingNamespaces are the live namespaces the selector matches; for a
// namespaced rotator, at most its own.
func (r *Reconciler) matchingNamespaces(ctx context.Context, rot *v1alpha1.SecretRotator) ([]string, error) {
	selector, err := metav1.LabelSelectorAsSelector(&rot.Spec.NamespaceSelector)
	if err != nil {
		return nil, fmt.Errorf("namespaceSelector: %w", err)
	}
	var list corev1.NamespaceList
	if err := r.Client.List(ctx, &list, client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	var out []string
	for _, ns := range list.Items {
		if ns.Status.Phase == corev1.NamespaceTerminating || !ns.DeletionTimestamp.IsZero() {
			continue
		}
		if r.Namespaced && ns.Name != rot.Namespace {
			continue
		}
		out = append(out, ns.Name)
	}
	slices.Sort(out)
	return out, nil
}

// ownedSecrets are the secrets this rotator wrote, by namespace/name.
func (r *Reconciler) ownedSecrets(ctx context.Context, rot *v1alpha1.SecretRotator) (map[types.NamespacedName]*corev1.Secret, error) {
	var list corev1.SecretList
	opts := []client.ListOption{client.MatchingLabels{LabelRotator: rot.Name}}
	if r.Namespaced {
		opts = append(opts, client.InNamespace(rot.Namespace))
	}
	if err := r.Client.List(ctx, &list, opts...); err != nil {
		return nil, fmt.Errorf("listing the rotator's secrets: %w", err)
	}
	out := make(map[types.NamespacedName]*corev1.Secret, len(list.Items))
	for i := range list.Items {
		s := &list.Items[i]
		out[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	return out, nil
}

// finalize deletes the rotator's secrets, then lets it go.
func (r *Reconciler) finalize(ctx context.Context, rot *v1alpha1.SecretRotator) error {
	if !controllerutil.ContainsFinalizer(rot, Finalizer) {
		return nil
	}
	var list corev1.SecretList
	opts := []client.ListOption{client.MatchingLabels{LabelRotator: rot.Name}}
	if r.Namespaced {
		opts = append(opts, client.InNamespace(rot.Namespace))
	}
	// Past the cache: a secret written a moment ago must go too.
	if err := r.APIReader.List(ctx, &list, opts...); err != nil {
		return fmt.Errorf("listing the rotator's secrets: %w", err)
	}
	for i := range list.Items {
		s := &list.Items[i]
		if err := r.Client.Delete(ctx, s, client.Preconditions{UID: &s.UID}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting secret %s/%s: %w", s.Namespace, s.Name, err)
		}
		r.metrics.writes.WithLabelValues("delete").Inc()
	}
	patch := client.MergeFrom(rot.DeepCopy())
	controllerutil.RemoveFinalizer(rot, Finalizer)
	if err := r.Client.Patch(ctx, rot, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing the finalizer: %w", err)
	}
	r.tokens.forget(string(rot.UID))
	r.metrics.forget(rot.Name)
	log.FromContext(ctx).Info("deleted the rotator's secrets", "secretrotator", rot.Name, "count", len(list.Items))
	return nil
}
