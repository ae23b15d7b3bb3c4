package auth

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podid/podid/internal/promutil"
)

// metrics of the exchange. Labels are bounded: outcome and error code only,
// never namespaces or roles, whose number the cluster decides.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podid_credential_requests_total",
			Help: "AssumeRoleForPodIdentity requests by outcome (issued, refused) and EKS Auth error code.",
		}, []string{"outcome", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "podid_credential_request_duration_seconds",
			Help:    "AssumeRoleForPodIdentity latency by outcome, STS calls included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"outcome"}),
	}
	m.requests = promutil.Register(reg, m.requests)
	m.duration = promutil.Register(reg, m.duration)
	return m
}

func (m *metrics) observe(rec *record, d time.Duration) {
	m.requests.WithLabelValues(rec.Outcome, rec.Code).Inc()
	m.duration.WithLabelValues(rec.Outcome).Observe(d.Seconds())
}
