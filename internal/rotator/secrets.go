package rotator

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/regcred"
)

const (
	// LabelRotator marks a secret as written by the SecretRotator it names.
	// A secret without it (or naming another rotator) is never touched.
	LabelRotator = "podid.io/secret-rotator"
	// annotationManagedMetadata lists the secretMetadata keys the rotator
	// applied, so that keys removed from the spec are removed from the
	// secrets while labels others add stay.
	annotationManagedMetadata = "podid.io/managed-metadata"
)

// desiredSecret is the secret g should be in namespace ns.
func desiredSecret(rot *v1alpha1.SecretRotator, ns string, g v1alpha1.GeneratedSecret, creds *regcred.Credentials) *corev1.Secret {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:        g.SecretName,
			Namespace:   ns,
			Labels:      map[string]string{},
			Annotations: map[string]string{},
		},
	}
	maps.Copy(s.Labels, rot.Spec.SecretMetadata.Labels)
	maps.Copy(s.Annotations, rot.Spec.SecretMetadata.Annotations)
	s.Labels[LabelRotator] = rot.Name
	s.Annotations[annotationManagedMetadata] = managedKeys(rot.Spec.SecretMetadata)
	s.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: v1alpha1.GroupVersion.String(), Kind: "SecretRotator", Name: rot.Name, UID: rot.UID,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(false),
	}}
	if g.SecretType == secretTypeGeneric {
		s.Type = corev1.SecretTypeOpaque
		s.Data = map[string][]byte{"user": []byte(creds.Auths[0].Username), "token": []byte(creds.Auths[0].Password)}
	} else {
		s.Type = corev1.SecretTypeDockerConfigJson
		s.Data = map[string][]byte{corev1.DockerConfigJsonKey: creds.DockerConfigJSON()}
	}
	return s
}

// managedKeys renders the metadata keys the rotator owns on its secrets.
func managedKeys(m v1alpha1.SecretMetadata) string {
	return "labels=" + strings.Join(slices.Sorted(maps.Keys(m.Labels)), ",") + ";annotations=" + strings.Join(slices.Sorted(maps.Keys(m.Annotations)), ",")
}

func parseManagedKeys(s string) (labels, annotations []string) {
	for _, part := range strings.Split(s, ";") {
		kind, list, _ := strings.Cut(part, "=")
		var keys []string
		if list != "" {
			keys = strings.Split(list, ",")
		}
		switch kind {
		case "labels":
			labels = keys
		case "annotations":
			annotations = keys
		}
	}
	return labels, annotations
}

// merged is existing brought to desired: data, type, owner, and the
// rotator's metadata, keeping metadata others set and dropping keys the
// rotator applied before but the spec no longer has. ok is false when
// nothing changes.
func merged(existing, desired *corev1.Secret) (*corev1.Secret, bool) {
	out := existing.DeepCopy()
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	oldLabels, oldAnnotations := parseManagedKeys(existing.Annotations[annotationManagedMetadata])
	for _, k := range oldLabels {
		if _, keep := desired.Labels[k]; !keep {
			delete(out.Labels, k)
		}
	}
	for _, k := range oldAnnotations {
		if _, keep := desired.Annotations[k]; !keep {
			delete(out.Annotations, k)
		}
	}
	maps.Copy(out.Labels, desired.Labels)
	maps.Copy(out.Annotations, desired.Annotations)
	out.Data = desired.Data
	out.StringData = nil
	out.OwnerReferences = desired.OwnerReferences
	changed := !maps.Equal(out.Labels, existing.Labels) || !maps.Equal(out.Annotations, existing.Annotations) ||
		!maps.EqualFunc(out.Data, existing.Data, bytes.Equal) || !sameOwners(out.OwnerReferences, existing.OwnerReferences)
	return out, changed
}

func sameOwners(a, b []metav1.OwnerReference) bool {
	return slices.EqualFunc(a, b, func(x, y metav1.OwnerReference) bool { return x.UID == y.UID && x.Name == y.Name && x.Kind == y.Kind })
}

// owned reports whether s was written by rotator name.
func owned(s *corev1.Secret, name string) bool {
	return s.Labels[LabelRotator] == name
}

// writeResult is what one pass did to the secrets.
type writeResult struct {
	mu       sync.Mutex
	managed  map[string][]string // namespace → secrets the rotator owns after the pass
	failures map[string][]string // namespace → reasons
	foreign  []types.NamespacedName
	writes   int
}

func (w *writeResult) manage(ns, name string) {
	w.mu.Lock()
	w.managed[ns] = append(w.managed[ns], name)
	w.mu.Unlock()
}

func (w *writeResult) fail(ns, reason string) {
	w.mu.Lock()
	w.failures[ns] = append(w.failures[ns], reason)
	w.mu.Unlock()
}

func (w *writeResult) wrote() {
	w.mu.Lock()
	w.writes++
	w.mu.Unlock()
}

// sync writes the desired secrets into namespaces and deletes the rotator's
// secrets that are no longer wanted (existing holds the rotator's current
// secrets, by namespace/name). With creds nil it only deletes the unwanted.
func (r *Reconciler) sync(ctx context.Context, rot *v1alpha1.SecretRotator, namespaces []string, creds *regcred.Credentials, existing map[types.NamespacedName]*corev1.Secret) *writeResult {
	res := &writeResult{managed: map[string][]string{}, failures: map[string][]string{}}
	wanted := map[types.NamespacedName]v1alpha1.GeneratedSecret{}
	gens := wantedSecrets(&rot.Spec)
	for _, ns := range namespaces {
		for _, g := range gens {
			wanted[types.NamespacedName{Namespace: ns, Name: g.SecretName}] = g
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.workers())
	for key, gen := range wanted {
		if creds == nil {
			// Still wanted, but no token to refresh it with: leave it.
			if existing[key] != nil {
				res.manage(key.Namespace, key.Name)
			}
			continue
		}
		g.Go(func() error {
			r.ensure(gctx, rot, key, gen, creds, existing[key], res)
			return nil
		})
	}
	for key, s := range existing {
		if _, keep := wanted[key]; keep {
			continue
		}
		g.Go(func() error {
			err := r.Client.Delete(gctx, s, client.Preconditions{UID: &s.UID})
			if err != nil && !apierrors.IsNotFound(err) {
				res.fail(key.Namespace, fmt.Sprintf("deleting secret %s: %v", key.Name, err))
				res.manage(key.Namespace, key.Name)
				return nil
			}
			res.wrote()
			r.metrics.writes.WithLabelValues("delete").Inc()
			return nil
		})
	}
	g.Wait()
	for ns := range res.managed {
		sort.Strings(res.managed[ns])
	}
	return res
}

// ensure makes one secret what it should be.
func (r *Reconciler) ensure(ctx context.Context, rot *v1alpha1.SecretRotator, key types.NamespacedName, g v1alpha1.GeneratedSecret, creds *regcred.Credentials, current *corev1.Secret, res *writeResult) {
	desired := desiredSecret(rot, key.Namespace, g, creds)
	if current == nil {
		err := r.Client.Create(ctx, desired)
		switch {
		case err == nil:
			res.wrote()
			r.metrics.writes.WithLabelValues("create").Inc()
			res.manage(key.Namespace, key.Name)
			return
		case !apierrors.IsAlreadyExists(err):
			res.fail(key.Namespace, fmt.Sprintf("creating secret %s: %v", key.Name, err))
			return
		}
		// There is one the cache does not show: someone else's, or ours
		// written a moment ago. Ask the API server.
		var live corev1.Secret
		if err := r.APIReader.Get(ctx, key, &live); err != nil {
			res.fail(key.Namespace, fmt.Sprintf("reading secret %s: %v", key.Name, err))
			return
		}
		if !owned(&live, rot.Name) {
			res.fail(key.Namespace, fmt.Sprintf("secret %s exists and was not created by this SecretRotator; it is left alone (delete or rename it, or pick another secretName)", key.Name))
			res.mu.Lock()
			res.foreign = append(res.foreign, key)
			res.mu.Unlock()
			return
		}
		current = &live
	}
	if current.Type != desired.Type {
		// A secret's type is immutable: replace it.
		if err := r.Client.Delete(ctx, current, client.Preconditions{UID: &current.UID}); err != nil && !apierrors.IsNotFound(err) {
			res.fail(key.Namespace, fmt.Sprintf("replacing secret %s of type %s: %v", key.Name, current.Type, err))
			return
		}
		r.ensure(ctx, rot, key, g, creds, nil, res)
		return
	}
	res.manage(key.Namespace, key.Name)
	next, changed := merged(current, desired)
	if !changed {
		return
	}
	if err := r.Client.Update(ctx, next); err != nil {
		res.fail(key.Namespace, fmt.Sprintf("updating secret %s: %v", key.Name, err))
		return
	}
	res.wrote()
	r.metrics.writes.WithLabelValues("update").Inc()
}
