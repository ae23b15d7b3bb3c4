package serveridentity

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Every replica of podid server, not only the leader, exchanges pods'
// tokens with its own AWS identity (its own Roles Anywhere session, its
// own SDK credentials). A replica whose identity fails while the leader's
// works fails a share of the exchanges, and the leader's view alone would
// not show it; so each replica writes its own view beside the leader's,
// under KeyReplicaPrefix and its name, and doctor reads them all.

// KeyReplicaPrefix, followed by a replica's name (its pod's), holds that
// replica's ReplicaStatus as JSON.
const KeyReplicaPrefix = "replica."

// ReplicaStatus is one replica's view of its AWS identity.
type ReplicaStatus struct {
	// At is when the replica checked.
	At time.Time `json:"at"`
	// Caller is who the replica is in AWS, when the check worked.
	Caller string `json:"caller,omitempty"`
	// Error is what failed: the call to STS, or a renewal of its session.
	Error string `json:"error,omitempty"`
}

// Replica views older than this are of replicas gone (a replica rewrites
// its own at least every replicaHeartbeat): the leader drops them, and
// doctor ignores them.
const (
	replicaHeartbeat = 5 * time.Minute
	ReplicaStale     = 3 * replicaHeartbeat
)

// ReplicaReporter writes this replica's view of its AWS identity into the
// ConfigMap every Refresh, when it changed or went unwritten for
// replicaHeartbeat. It runs on every replica; the ConfigMap is created by
// the leader's Publisher.
type ReplicaReporter struct {
	*Publisher
	// Name is this replica's (its pod's name).
	Name string

	last ReplicaStatus // as last written
}

// ReplicaReporter returns the runnable that reports this replica's view.
func (p *Publisher) ReplicaReporter(name string) *ReplicaReporter {
	return &ReplicaReporter{Publisher: p, Name: name}
}

// NeedLeaderElection: every replica reports its own.
func (r *ReplicaReporter) NeedLeaderElection() bool { return false }

// Start implements manager.Runnable.
func (r *ReplicaReporter) Start(ctx context.Context) error {
	for {
		if err := r.Report(ctx); err != nil && ctx.Err() == nil {
			r.Log.Warn("writing this replica's view of its AWS identity failed", "err", err, "replica", r.Name)
		}
		select {
		case <-ctx.Done():
			r.withdraw()
			return nil
		case <-time.After(min(r.refresh(), replicaHeartbeat)):
		}
	}
}

// withdraw removes this replica's view as it stops, so that a replica
// rolled out is not taken for one failing; a replica that dies without
// withdrawing is ignored by doctor once its pod is gone, and dropped by
// the leader once stale.
func (r *ReplicaReporter) withdraw() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	key := KeyReplicaPrefix + r.Name
	err := r.edit(ctx, func(data map[string]string) bool {
		_, had := data[key]
		delete(data, key)
		return had
	})
	if err != nil && !apierrors.IsNotFound(err) {
		r.Log.Warn("removing this replica's view of its AWS identity as it stops failed; it is dropped once stale", "err", err, "replica", r.Name)
	}
}

// Report checks this replica's identity and writes its view if it changed
// or its heartbeat is due (Start does, every Refresh).
func (r *ReplicaReporter) Report(ctx context.Context) error {
	st := ReplicaStatus{At: r.now().UTC().Truncate(time.Second)}
	if data, err := r.identity(ctx); err != nil {
		st.Error = err.Error()
	} else {
		st.Caller = data[KeyCallerARN]
	}
	if r.Source != nil {
		if _, err := r.Source(); err != nil && st.Error == "" {
			st.Error = err.Error()
		}
	}
	if st.Caller == r.last.Caller && st.Error == r.last.Error && st.At.Sub(r.last.At) < replicaHeartbeat {
		return nil
	}
	value, _ := json.Marshal(st) // strings and a time: cannot fail
	key := KeyReplicaPrefix + r.Name
	err := r.edit(ctx, func(data map[string]string) bool {
		data[key] = string(value)
		return true
	})
	if apierrors.IsNotFound(err) {
		return nil // the leader has not published yet: next time
	}
	if err != nil {
		return fmt.Errorf("writing %s in ConfigMap %s/%s: %w", key, r.Namespace, ConfigMapName, err)
	}
	r.last = st
	return nil
}

// edit changes the ConfigMap's data with change, which says whether it
// changed anything, reading it afresh after a conflict: the other replicas
// and the leader write it too.
func (r *ReplicaReporter) edit(ctx context.Context, change func(data map[string]string) bool) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cm corev1.ConfigMap
		if err := r.Reader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: ConfigMapName}, &cm); err != nil {
			return err
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		if !change(cm.Data) {
			return nil
		}
		return r.Client.Update(ctx, &cm)
	})
}

// keepReplicas copies the replicas' views from old into data, but those
// gone stale.
func keepReplicas(data, old map[string]string, now time.Time) {
	for key, value := range old {
		if !strings.HasPrefix(key, KeyReplicaPrefix) {
			continue
		}
		var st ReplicaStatus
		if json.Unmarshal([]byte(value), &st) == nil && now.Sub(st.At) < ReplicaStale {
			data[key] = value
		}
	}
}

// replicas reads the replicas' views by name; a view that cannot be read
// is reported as its error.
func replicas(data map[string]string) map[string]ReplicaStatus {
	out := map[string]ReplicaStatus{}
	for key, value := range data {
		name, ok := strings.CutPrefix(key, KeyReplicaPrefix)
		if !ok {
			continue
		}
		var st ReplicaStatus
		if err := json.Unmarshal([]byte(value), &st); err != nil {
			st.Error = fmt.Sprintf("its view in %s cannot be read: %v", key, err)
		}
		out[name] = st
	}
	return out
}

// Failing returns the replicas whose view, not stale at now, is an error,
// sorted by name.
func (id *Identity) Failing(now time.Time) []string {
	var names []string
	for name, st := range id.Replicas {
		if st.Error != "" && (st.At.IsZero() || now.Sub(st.At) < ReplicaStale) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}
