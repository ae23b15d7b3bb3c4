// Package podevents puts podid server's refusals where users look: a
// Kubernetes Event on the pod whose exchange was refused, with the reason
// and the fix, so that `kubectl describe pod` says why the pod has no
// credentials (or, through podid-credential-provider, why its image pull
// had none).
//
// One Event per pod and reason, not one per request: an SDK retrying every
// few seconds, or a kubelet backing off a pull, would otherwise flood the
// namespace. The Event's name is derived from the pod's UID and the
// reason, so every replica of podid server writes the same one (the second
// create is refused as existing), and each replica remembers what it
// wrote. Writes are rate-limited as a whole.
package podevents

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reasons of the Events.
const (
	ReasonNoAssociation    = "NoPodIdentityAssociation"
	ReasonRoleAssumeDenied = "PodIdentityRoleDenied"
	ReasonInvalidPolicy    = "PodIdentityInvalidPolicy"
	reportingController    = "podid.io/server"
	remembered             = 50000
	rememberFor            = time.Hour
)

// Pod is the pod a refusal is for.
type Pod struct {
	Namespace, Name string
	UID             types.UID
}

// Recorder writes the Events.
type Recorder struct {
	client   client.Client
	log      *slog.Logger
	now      func() time.Time
	limit    *rate.Limiter
	instance string

	mu   sync.Mutex
	seen map[string]time.Time // pod UID + reason → when written
}

// New returns a Recorder writing with c, at most qps Events a second.
func New(c client.Client, log *slog.Logger, qps float64, now func() time.Time) *Recorder {
	if now == nil {
		now = time.Now
	}
	host, _ := os.Hostname()
	return &Recorder{client: c, log: log, now: now, limit: rate.NewLimiter(rate.Limit(qps), int(max(qps, 1)*10)), instance: host, seen: map[string]time.Time{}}
}

// Refused records that pod's exchange was refused for reason, once.
// It never blocks the exchange: the write happens in the background.
func (r *Recorder) Refused(pod Pod, reason, message string) {
	if r == nil || pod.UID == "" {
		return
	}
	key := string(pod.UID) + "/" + reason
	now := r.now()
	r.mu.Lock()
	if t, ok := r.seen[key]; ok && now.Sub(t) < rememberFor {
		r.mu.Unlock()
		return
	}
	if len(r.seen) >= remembered {
		for k, t := range r.seen {
			if now.Sub(t) >= rememberFor || len(r.seen) >= remembered {
				delete(r.seen, k)
			}
		}
	}
	r.seen[key] = now
	r.mu.Unlock()
	if !r.limit.Allow() {
		r.log.Info("pod event dropped: too many refusals at once", "namespace", pod.Namespace, "pod", pod.Name, "reason", reason)
		return
	}
	go r.write(pod, reason, message, now)
}

func (r *Recorder) write(pod Pod, reason, message string, now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sum := sha256.Sum256([]byte(string(pod.UID) + "/" + reason))
	ev := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name + ".podid-" + hex.EncodeToString(sum[:6])},
		EventTime:           metav1.NewMicroTime(now),
		ReportingController: reportingController,
		ReportingInstance:   r.instance,
		Action:              "AssumeRoleForPodIdentity",
		Reason:              reason,
		Regarding:           corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Note:                truncate(message, 1024),
		Type:                corev1.EventTypeWarning,
	}
	if err := r.client.Create(ctx, ev); err != nil && !apierrors.IsAlreadyExists(err) {
		r.log.Error("recording a refusal on the pod", "namespace", pod.Namespace, "pod", pod.Name, "reason", reason, "err", err)
		// Let a later refusal try again.
		r.mu.Lock()
		delete(r.seen, string(pod.UID)+"/"+reason)
		r.mu.Unlock()
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
