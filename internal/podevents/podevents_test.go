package podevents_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/podid/podid/internal/kube"
	"github.com/podid/podid/internal/podevents"
)

// One Event per pod and reason, however many refusals; a second
// Recorder (another replica) writes no second one.
func TestOncePerPodAndReason(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(kube.NewScheme()).Build()
	log := slog.New(slog.DiscardHandler)
	replicas := []*podevents.Recorder{podevents.New(c, log, 100, nil), podevents.New(c, log, 100, nil)}
	a := podevents.Pod{Namespace: "shop", Name: "web-0", UID: "uid-a"}
	b := podevents.Pod{Namespace: "shop", Name: "web-1", UID: "uid-b"}
	for i := range 20 {
		r := replicas[i%2]
		r.Refused(a, podevents.ReasonNoAssociation, "no association")
		r.Refused(b, podevents.ReasonNoAssociation, "no association")
		r.Refused(a, podevents.ReasonRoleAssumeDenied, "denied")
	}
	var list eventsv1.EventList
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := c.List(ctx, &list); err != nil {
			return false, err
		}
		return len(list.Items) >= 3, nil
	})
	if err != nil {
		t.Fatalf("%d events: %v", len(list.Items), err)
	}
	time.Sleep(100 * time.Millisecond)
	c.List(t.Context(), &list)
	if len(list.Items) != 3 {
		t.Errorf("%d events, want 3 (two pods × no association, one × denied)", len(list.Items))
	}
	for _, e := range list.Items {
		if e.Type != "Warning" || e.Regarding.Kind != "Pod" || e.ReportingController != "podid.io/server" || e.EventTime.IsZero() {
			t.Errorf("event %+v", e)
		}
	}
}
