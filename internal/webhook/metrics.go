package webhook

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podid/podid/internal/promutil"
)

// Metrics count the webhook's decisions. A nil *Metrics counts nothing.
type Metrics struct {
	admissions   *prometheus.HistogramVec
	readThroughs *prometheus.CounterVec
}

// NewMetrics registers the webhook's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		admissions: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "podid_webhook_admission_duration_seconds",
			Help:    "Time to decide on a pod, by mode (podIdentity, irsa, none, error) and whether it was allowed.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
		}, []string{"mode", "allowed"}),
		readThroughs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podid_webhook_read_through_total",
			Help: "Objects the webhook read from the API server because its cache had not seen them yet.",
		}, []string{"kind"}),
	}
	m.admissions = promutil.Register(reg, m.admissions)
	m.readThroughs = promutil.Register(reg, m.readThroughs)
	return m
}

func (m *Metrics) observe(mode string, resp admission.Response, d time.Duration) {
	if m != nil {
		m.admissions.WithLabelValues(mode, strconv.FormatBool(resp.Allowed)).Observe(d.Seconds())
	}
}

func (m *Metrics) readThrough(kind string) {
	if m != nil {
		m.readThroughs.WithLabelValues(kind).Inc()
	}
}
