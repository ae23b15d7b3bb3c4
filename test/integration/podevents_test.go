package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/podevents"
	"github.com/podid/podid/test/emu/awsemu"
)

// A refusal that is the pod's configuration's doing is recorded on the
// pod, once per reason however often the pod asks, with the fix.
func TestRefusalEventsOnThePod(t *testing.T) {
	orphan := newWorkload(t, "", nil)
	untrusting := newWorkload(t, createRole(t, "events-untrusting", awsemu.TrustPolicy("arn:aws:iam::111122223333:user/someone-else", `"sts:AssumeRole"`, "")), nil)
	for range 4 {
		if _, err := exchange(t, agentClient("node-a"), orphan.token(t, orphan.pod)); err == nil {
			t.Fatal("a pod without an association got credentials")
		}
		if _, err := exchange(t, agentClient("node-a"), untrusting.token(t, untrusting.pod)); err == nil {
			t.Fatal("a pod whose role does not trust podid got credentials")
		}
	}
	for _, c := range []struct {
		w            *workload
		reason, note string
	}{
		{orphan, podevents.ReasonNoAssociation, "podid found no PodIdentityAssociation for ServiceAccount " + orphan.ns + "/app, so this pod gets no AWS credentials"},
		{untrusting, podevents.ReasonRoleAssumeDenied, "podid server could not assume role arn:aws:iam::111122223333:role/events-untrusting for this pod"},
	} {
		var evs []eventsv1.Event
		eventually(t, "the "+c.reason+" event", func(ctx context.Context) (bool, error) {
			evs = podEvents(ctx, t, c.w)
			return len(evs) > 0, nil
		})
		time.Sleep(500 * time.Millisecond) // a second one would be written by now
		evs = podEvents(t.Context(), t, c.w)
		if len(evs) != 1 || evs[0].Reason != c.reason || !strings.Contains(evs[0].Note, c.note) || evs[0].Type != "Warning" {
			t.Errorf("events on pod %s/%s: %+v", c.w.ns, c.w.pod.Name, evs)
		}
	}
}

func podEvents(ctx context.Context, t *testing.T, w *workload) []eventsv1.Event {
	var list eventsv1.EventList
	if err := k8s.List(ctx, &list, client.InNamespace(w.ns)); err != nil {
		t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.UID == w.pod.UID {
			out = append(out, e)
		}
	}
	return out
}
