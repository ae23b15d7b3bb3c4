package rolesanywhere

import (
	"crypto/x509"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the provider's: CreateSession outcomes, and when the
// certificate and the session expire (the chart's alerts watch both).
type Metrics struct {
	sessions          *prometheus.CounterVec
	certificateExpiry prometheus.Gauge
	sessionExpiry     prometheus.Gauge
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podid_roles_anywhere_sessions_total",
			Help: "IAM Roles Anywhere CreateSession calls by result: granted, refused (by AWS, or a certificate not valid now), error (unreachable, throttled after retries).",
		}, []string{"result"}),
		certificateExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podid_roles_anywhere_certificate_expiry_timestamp_seconds",
			Help: "When the certificate podid uses for IAM Roles Anywhere expires (Unix time).",
		}),
		sessionExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podid_roles_anywhere_session_expiry_timestamp_seconds",
			Help: "When podid's current IAM Roles Anywhere session expires (Unix time).",
		}),
	}
	for _, r := range []string{"granted", "refused", "error"} {
		m.sessions.WithLabelValues(r)
	}
	reg.MustRegister(m.sessions, m.certificateExpiry, m.sessionExpiry)
	return m
}

func (m *Metrics) result(r string) {
	if m != nil {
		m.sessions.WithLabelValues(r).Inc()
	}
}

func (m *Metrics) certificate(c *x509.Certificate) {
	if m != nil {
		m.certificateExpiry.Set(float64(c.NotAfter.Unix()))
	}
}

func (m *Metrics) session(expires time.Time) {
	if m != nil {
		m.sessionExpiry.Set(float64(expires.Unix()))
	}
}
