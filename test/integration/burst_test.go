package integration

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podid/podid/test/emu/awsemu"
)

// burstPods is the CronJob of the issue: that many pods of one
// ServiceAccount starting on one node at once (fewer under the race
// detector, which slows podid server several times over: the figure is
// the plain build's).
var burstPods = map[bool]int{false: 500, true: 150}[raceEnabled]

// A burst of new pods on one node, each with two containers asking for
// credentials at the same moment, while STS throttles: every one gets
// credentials, the agent makes exactly one upstream call per pod (not one
// per request), podid server one AssumeRole per pod plus one retry per
// throttle, which it counts. The p99 to first credentials is a figure
// (-v), not a target.
func TestBurstOfNewPods(t *testing.T) {
	n := startNodeWithAgent(t)
	role := createRole(t, "burst", awsemu.PodidTrust(serverARN))
	w := newWorkload(t, role, nil)

	pods := make([]*corev1.Pod, burstPods)
	tokens := make([]string, burstPods)
	var g errgroup.Group
	g.SetLimit(16)
	for i := range pods {
		g.Go(func() error {
			pod, err := createPod(t.Context(), w.ns, fmt.Sprintf("cron-%03d", i), w.sa, "node-a")
			if err != nil {
				return err
			}
			pods[i] = pod
			tokens[i], err = requestToken(t.Context(), pod, "pods.eks.amazonaws.com", 3600)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}

	// STS throttles the start of the burst: podid server retries those
	// calls with backoff, and no pod notices.
	const throttles = 40
	throttledBefore := testutil.ToFloat64(stsThrottled)
	emu.InjectFault("AssumeRole", "Throttling", throttles)
	upstreamBefore, assumeBefore := n.upstream.calls.Load(), len(emu.AssumeRoleCalls())
	latencies := make([]time.Duration, 2*burstPods)
	failures := make([]string, 0)
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 2 * burstPods {
		wg.Go(func() {
			<-start
			began := time.Now()
			status, body := n.fetch(tokens[i%burstPods])
			latencies[i] = time.Since(began)
			if status != http.StatusOK {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("%d %s", status, body))
				mu.Unlock()
			}
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(began)

	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed, e.g. %s", len(failures), 2*burstPods, failures[0])
	}
	if got := int(n.upstream.calls.Load() - upstreamBefore); got != burstPods {
		t.Errorf("the agent made %d upstream calls for %d new pods; want one each", got, burstPods)
	}
	if got := len(emu.AssumeRoleCalls()) - assumeBefore; got != burstPods+throttles {
		t.Errorf("podid server made %d AssumeRole calls for %d new pods, %d of them throttled; want one each and a retry per throttle", got, burstPods, throttles)
	}
	if got := testutil.ToFloat64(stsThrottled) - throttledBefore; got != throttles {
		t.Errorf("podid_sts_throttled_total grew by %v; want %d", got, throttles)
	}
	slices.Sort(latencies)
	t.Logf("figure: a burst of %d new pods (2 requests each, at once) on one node, STS throttling %d calls: all served in %s, p50 %s, p99 %s to first credentials; %d upstream calls, %d AssumeRole",
		burstPods, throttles, elapsed.Round(time.Millisecond), latencies[len(latencies)/2].Round(time.Millisecond), latencies[len(latencies)*99/100].Round(time.Millisecond),
		n.upstream.calls.Load()-upstreamBefore, len(emu.AssumeRoleCalls())-assumeBefore)
}

// fetch asks the node's agent for credentials as an SDK does.
func (n *nodeWithAgent) fetch(token string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, "http://169.254.170.23/v1/credentials", nil)
	req.Header.Set("Authorization", token)
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode, string(body)
}
