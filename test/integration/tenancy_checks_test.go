package integration

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/auth"
	"github.com/podid/podid/internal/podcheck"
)

// answered waits for podid server's answer to check.
func answered(t *testing.T, c client.Client, check *v1alpha1.PodIdentityCheck) *v1alpha1.PodIdentityCheck {
	t.Helper()
	var got v1alpha1.PodIdentityCheck
	eventually(t, "an answer to "+check.Name, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(check), &got); err != nil {
			return false, err
		}
		return got.Status.Outcome != "", nil
	})
	return &got
}

// A namespace editor names someone else as the requester of a
// PodIdentityCheck: where nothing binds the name (this server runs without
// --check-requester-bound), podid does not believe it; with the chart's
// policy, the API server refuses it, and any change of it. A namespace
// creating checks in a loop is refused at once; another namespace's check
// is answered.
func TestPodIdentityCheckRequesterAndFairness(t *testing.T) {
	ctx := t.Context()
	ns, quiet := newNamespace(t), newNamespace(t)
	mallory, _ := namespaceEditor(t, ns, "mallory-checks")
	grant(t, ns, "checks", rbacv1.PolicyRule{APIGroups: []string{"podid.io"}, Resources: []string{"podidentitychecks"}, Verbs: []string{"create", "get", "update", "delete"}}, "mallory-checks")
	newCheck := func(ns, name, requester string) *v1alpha1.PodIdentityCheck {
		c := &v1alpha1.PodIdentityCheck{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if requester != "" {
			c.Annotations = map[string]string{v1alpha1.AnnotationRequestedBy: requester}
		}
		return c
	}

	claimed := newCheck(ns, "claimed", "cluster-admin")
	if err := mallory.Create(ctx, claimed); err != nil {
		t.Fatal(err)
	}
	if got := answered(t, mallory, claimed); got.Status.RequestedBy != "" {
		t.Errorf("an unbound requester was believed: %q", got.Status.RequestedBy)
	}

	install(t, podcheck.RequesterPolicy(), podcheck.RequesterBinding())
	eventually(t, "the requester policy to refuse another's name", func(ctx context.Context) (bool, error) {
		err := mallory.Create(ctx, newCheck(ns, "forged", "cluster-admin"))
		if err == nil {
			mallory.Delete(ctx, newCheck(ns, "forged", ""))
		}
		return err != nil && strings.Contains(err.Error(), "podid.io/requested-by must be the name of the user creating the check (mallory-checks)"), nil
	})
	own := newCheck(ns, "own", "mallory-checks")
	if err := mallory.Create(ctx, own); err != nil {
		t.Fatalf("a check naming its creator: %v", err)
	}
	// podid server answers meanwhile: read it again on a conflict, so that
	// the refusal tested is the policy's.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := mallory.Get(ctx, client.ObjectKeyFromObject(own), own); err != nil {
			return err
		}
		own.Annotations[v1alpha1.AnnotationRequestedBy] = "cluster-admin"
		return mallory.Update(ctx, own)
	})
	if err == nil || !strings.Contains(err.Error(), "cannot be changed") {
		t.Errorf("changing the requester: %v", err)
	}

	// A flood from one namespace.
	began := time.Now()
	const flood = 2*podcheck.NamespaceBurst + 4
	for i := range flood {
		if err := mallory.Create(ctx, newCheck(ns, fmt.Sprintf("flood-%d", i), "")); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(began)
	mine := newCheck(quiet, "mine", "")
	if err := k8s.Create(ctx, mine); err != nil {
		t.Fatal(err)
	}
	refused := 0
	for i := range flood {
		if got := answered(t, mallory, newCheck(ns, fmt.Sprintf("flood-%d", i), "")); got.Status.Code == auth.Throttling {
			refused++
		}
	}
	// At most the burst, plus the rate for each second the creations took,
	// are answered (the checks before the flood spent some too).
	if most := podcheck.NamespaceBurst + podcheck.DefaultNamespaceRate*int(math.Ceil(elapsed.Seconds())); flood-refused > most {
		t.Errorf("%d of %d checks created in %s were answered; at most %d should be", flood-refused, flood, elapsed, most)
	}
	if got := answered(t, k8s, mine); got.Status.Code == auth.Throttling || got.Status.Outcome != v1alpha1.CheckIssued {
		t.Errorf("another namespace's check during the flood: %+v", got.Status)
	}
}
