package podcheck

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/auth"
	"github.com/podid/podid/internal/kube"
)

type checker struct {
	calls      int
	requesters []string
}

func (c *checker) Check(_ context.Context, ns, pod, requester string) *auth.CheckResult {
	c.calls++
	c.requesters = append(c.requesters, requester)
	if pod == "orphan" {
		return &auth.CheckResult{Code: auth.ResourceNotFound, Message: "No Pod Identity association found for namespace " + ns + " and service account orphan."}
	}
	return &auth.CheckResult{AssociationID: "a-1", RoleARN: "arn:aws:iam::111122223333:role/app", AssumedRoleARN: "arn:aws:sts::111122223333:assumed-role/app/s"}
}

type callerIdentity struct{}

func (callerIdentity) GetCallerIdentity(context.Context, *awssts.GetCallerIdentityInput, ...func(*awssts.Options)) (*awssts.GetCallerIdentityOutput, error) {
	return &awssts.GetCallerIdentityOutput{Arn: aws.String("arn:aws:iam::111122223333:user/podid")}, nil
}

// A check is answered once, with the session or the refusal, and deleted
// TTL after its answer.
func TestReconcile(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	clock := clocktesting.NewFakeClock(now)
	c := fake.NewClientBuilder().WithScheme(kube.NewScheme()).WithStatusSubresource(&v1alpha1.PodIdentityCheck{}).Build()
	ch := &checker{}
	r := &Reconciler{Client: c, Checker: ch, STS: callerIdentity{}, Server: "replica-0", Rate: 1000, RequesterBound: true, Clock: clock, Log: slog.New(slog.DiscardHandler)}
	r.setDefaults()
	for _, name := range []string{"app", "orphan", ""} {
		if err := c.Create(ctx, &v1alpha1.PodIdentityCheck{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "check-" + name,
			Annotations: map[string]string{v1alpha1.AnnotationRequestedBy: "jane"}}, Spec: v1alpha1.PodIdentityCheckSpec{PodName: name}}); err != nil {
			t.Fatal(err)
		}
	}
	get := func(name string) *v1alpha1.PodIdentityCheck {
		var got v1alpha1.PodIdentityCheck
		if err := c.Get(ctx, types.NamespacedName{Namespace: "shop", Name: name}, &got); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			t.Fatal(err)
		}
		return &got
	}
	reconcileOnce := func(name string) reconcile.Result {
		res, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "shop", Name: name}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, name := range []string{"check-app", "check-orphan", "check-"} {
		if res := reconcileOnce(name); res.RequeueAfter != TTL {
			t.Errorf("%s: requeue after %s, want %s", name, res.RequeueAfter, TTL)
		}
	}
	if st := get("check-app").Status; st.Outcome != v1alpha1.CheckIssued || st.AssumedRoleARN != "arn:aws:sts::111122223333:assumed-role/app/s" || st.Server != "replica-0" || st.RequestedBy != "jane" || !st.CheckedAt.Time.Equal(now) {
		t.Errorf("issued: %+v", st)
	}
	if st := get("check-orphan").Status; st.Outcome != v1alpha1.CheckRefused || st.Code != auth.ResourceNotFound {
		t.Errorf("refused: %+v", st)
	}
	if st := get("check-").Status; st.Outcome != v1alpha1.CheckIssued || st.AssumedRoleARN != "arn:aws:iam::111122223333:user/podid" {
		t.Errorf("caller identity: %+v", st)
	}

	if want := "jane (shop/check-app)"; ch.requesters[0] != want {
		t.Errorf("audited requester %q, want %q", ch.requesters[0], want)
	}

	clock.Step(30 * time.Minute)
	if res := reconcileOnce("check-app"); res.RequeueAfter != 30*time.Minute || ch.calls != 2 {
		t.Errorf("an answered check: requeue %s, %d exchanges (want 30m0s, 2: not re-run)", res.RequeueAfter, ch.calls)
	}
	clock.Step(30 * time.Minute)
	reconcileOnce("check-app")
	if get("check-app") != nil {
		t.Error("an answered check outlived its TTL")
	}
	reconcileOnce("check-app") // gone: nothing to do, no error
}

// Where nothing binds podid.io/requested-by to the check's creator, podid
// believes no name it carries; checks left unanswered expire; a namespace
// asking in a loop is refused at once while another's check is answered.
func TestRequesterFairnessAndExpiry(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	clock := clocktesting.NewFakeClock(now)
	c := fake.NewClientBuilder().WithScheme(kube.NewScheme()).WithStatusSubresource(&v1alpha1.PodIdentityCheck{}).Build()
	ch := &checker{}
	r := &Reconciler{Client: c, Checker: ch, STS: callerIdentity{}, Rate: 1000, Clock: clock, Log: slog.New(slog.DiscardHandler)}
	r.setDefaults()
	create := func(ns, name string, created time.Time, annotations map[string]string) {
		t.Helper()
		if err := c.Create(ctx, &v1alpha1.PodIdentityCheck{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations,
			CreationTimestamp: metav1.NewTime(created)}, Spec: v1alpha1.PodIdentityCheckSpec{PodName: "app"}}); err != nil {
			t.Fatal(err)
		}
	}
	answer := func(ns, name string) *v1alpha1.PodIdentityCheck {
		t.Helper()
		if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}); err != nil {
			t.Fatal(err)
		}
		var got v1alpha1.PodIdentityCheck
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &got); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			t.Fatal(err)
		}
		return &got
	}

	// A name claimed where nothing binds it.
	create("shop", "claimed", now, map[string]string{v1alpha1.AnnotationRequestedBy: "cluster-admin"})
	if got := answer("shop", "claimed"); got.Status.RequestedBy != "" || ch.requesters[0] != "unknown (shop/claimed)" {
		t.Errorf("an unbound claim was believed: status %q, audit %q", got.Status.RequestedBy, ch.requesters[0])
	}

	// Unanswered for PendingTTL: deleted, without an exchange.
	create("shop", "stale", now.Add(-PendingTTL), nil)
	calls := ch.calls
	if got := answer("shop", "stale"); got != nil || ch.calls != calls {
		t.Errorf("a check unanswered for %s: %+v, %d exchanges", PendingTTL, got, ch.calls-calls)
	}

	// A flood from one namespace: its burst is answered, the rest refused
	// at once; another namespace is answered as usual.
	calls = ch.calls
	refused := 0
	for i := range 20 {
		name := fmt.Sprintf("flood-%d", i)
		create("noisy", name, now, nil)
		if got := answer("noisy", name); got.Status.Code == auth.Throttling {
			refused++
		}
	}
	if refused != 20-NamespaceBurst || ch.calls-calls != NamespaceBurst {
		t.Errorf("a flood of 20: %d refused, %d exchanges; want %d and %d", refused, ch.calls-calls, 20-NamespaceBurst, NamespaceBurst)
	}
	create("quiet", "mine", now, nil)
	if got := answer("quiet", "mine"); got.Status.Outcome != v1alpha1.CheckIssued {
		t.Errorf("another namespace's check during the flood: %+v", got.Status)
	}
	clock.Step(2 * time.Second)
	create("noisy", "later", clock.Now(), nil)
	if got := answer("noisy", "later"); got.Status.Outcome != v1alpha1.CheckIssued {
		t.Errorf("the noisy namespace, two seconds later: %+v", got.Status)
	}
}
