package integration

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/doctor"
	"github.com/podid/podid/internal/serveridentity"
	"github.com/podid/podid/test/emu/awsemu"
)

// Each podid server replica reports whether its own AWS identity works,
// beside the leader's published identity: a replica whose credentials
// fail while the leader's work is named by doctor; a replica that stops
// withdraws its view; the view of one that died is ignored once its pod
// is gone and dropped once stale.
func TestEachReplicaReportsItsIdentity(t *testing.T) {
	ctx := t.Context()
	ns := newNamespace(t)
	clk := clocktesting.NewFakeClock(time.Now())
	publisher := func(user awsemu.User) *serveridentity.Publisher {
		return &serveridentity.Publisher{Client: k8s, Reader: k8s, Namespace: ns, STS: awssts.NewFromConfig(awsConfig(user)),
			Cluster: identity, Refresh: 100 * time.Millisecond, Log: slog.New(slog.DiscardHandler), Now: clk.Now}
	}
	// run starts r; the function it returns stops it and waits until it
	// has (a replica withdraws its view as it stops).
	run := func(r interface{ Start(context.Context) error }) func() {
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); r.Start(ctx) }()
		stop := func() { cancel(); <-done }
		t.Cleanup(stop)
		return stop
	}
	// The replicas' pods, which doctor matches the views with.
	for _, name := range []string{"podid-server-a", "podid-server-b"} {
		create(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app.kubernetes.io/name": "podid", "app.kubernetes.io/component": "server"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "server", Image: "podid:test"}}}})
	}
	leader := publisher(serverUser)
	run(leader)
	run(leader.ReplicaReporter("podid-server-a"))
	// Replica b's own credentials are not (or no longer) valid.
	broken := awsemu.User{Name: "revoked", AccessKeyID: "AKIAREVOKEDREPLICA00", SecretAccessKey: "revoked"}
	stopB := run(publisher(broken).ReplicaReporter("podid-server-b"))

	d := &doctor.Doctor{Kube: k8s, Namespace: ns, Now: clk.Now}
	doctorSays := func(status doctor.Status, want ...string) {
		t.Helper()
		var last doctor.Check
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			last = checkNamed(d.Cluster(ctx), "aws-identity")
			if last.Status != status {
				return false, nil
			}
			for _, w := range want {
				if !strings.Contains(last.Fact+" | "+last.Fix, w) {
					return false, nil
				}
			}
			return true, nil
		})
		if err != nil {
			t.Fatalf("doctor's aws-identity check: %s: %s | %s; want %s with %q", last.Status, last.Fact, last.Fix, status, want)
		}
		t.Logf("doctor: %s aws-identity: %s | %s", last.Status, last.Fact, last.Fix)
	}
	doctorSays(doctor.Fail, "1 of its replicas cannot use their own AWS identity", "podid-server-b: sts:GetCallerIdentity", "kubectl -n "+ns+" logs podid-server-b")
	eventually(t, "replica a's view, working", func(context.Context) (bool, error) {
		view := replicaViews(t, ns)["podid-server-a"]
		return view.Error == "" && strings.HasSuffix(view.Caller, ":user/podid-server"), nil
	})

	// Replica b gets working credentials (restarted with them).
	stopB()
	stopB = run(publisher(serverUser).ReplicaReporter("podid-server-b"))
	doctorSays(doctor.OK, "podid server is arn:aws:iam::"+identity.AccountID+":user/podid-server")

	// Replica b stops (a rollout): it withdraws its view.
	eventually(t, "both replicas' views", func(context.Context) (bool, error) { return len(replicaViews(t, ns)) == 2, nil })
	stopB()
	eventually(t, "replica b to withdraw its view", func(context.Context) (bool, error) {
		_, hasB := replicaViews(t, ns)["podid-server-b"]
		return !hasB, nil
	})

	// A replica that died failing, without withdrawing: doctor ignores it
	// once its pod is gone, and the leader drops its view once stale.
	crashed := publisher(broken).ReplicaReporter("podid-server-crashed")
	if err := crashed.Report(ctx); err != nil {
		t.Fatal(err)
	}
	doctorSays(doctor.OK, "podid server is arn:aws:iam::"+identity.AccountID+":user/podid-server")
	if _, ok := replicaViews(t, ns)["podid-server-crashed"]; !ok {
		t.Fatal("the crashed replica's view was not written")
	}
	clk.Step(serveridentity.ReplicaStale + time.Minute) // a's reports again, the crashed one's not
	eventually(t, "the leader to drop the crashed replica's stale view", func(context.Context) (bool, error) {
		views := replicaViews(t, ns)
		_, hasCrashed := views["podid-server-crashed"]
		return !hasCrashed && len(views) == 1, nil
	})
}

// replicaViews are the replicas' views in the ConfigMap, as published.
func replicaViews(t *testing.T, ns string) map[string]serveridentity.ReplicaStatus {
	t.Helper()
	var cm corev1.ConfigMap
	if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: serveridentity.ConfigMapName}, &cm); err != nil {
		t.Fatal(err)
	}
	out := map[string]serveridentity.ReplicaStatus{}
	for key, value := range cm.Data {
		if name, ok := strings.CutPrefix(key, serveridentity.KeyReplicaPrefix); ok {
			var st serveridentity.ReplicaStatus
			if err := json.Unmarshal([]byte(value), &st); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			out[name] = st
		}
	}
	return out
}
