package rotator

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podid/podid/internal/promutil"
)

type metrics struct {
	rotations *prometheus.CounterVec
	failures  *prometheus.CounterVec
	writes    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, r *Reconciler) *metrics {
	m := &metrics{
		rotations: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podid_rotator_rotations_total",
			Help: "Registry tokens obtained, by SecretRotator and provider.",
		}, []string{"rotator", "provider"})),
		failures: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podid_rotator_failures_total",
			Help: "Failed token exchanges, by SecretRotator and reason (NoAWSIdentity, TokenExchangeFailed, InvalidSpec).",
		}, []string{"rotator", "reason"})),
		writes: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podid_rotator_secret_writes_total",
			Help: "Secrets created, updated and deleted.",
		}, []string{"op"})),
	}
	promutil.Register(reg, &expiryCollector{r: r})
	return m
}

func (m *metrics) forget(rotator string) {
	m.rotations.DeletePartialMatch(prometheus.Labels{"rotator": rotator})
	m.failures.DeletePartialMatch(prometheus.Labels{"rotator": rotator})
}

// expiryCollector reports, at scrape time, how long each rotator's current
// token has left: the number to alert on (it falls below zero only when
// renewals have failed for the whole of a token's life).
type expiryCollector struct{ r *Reconciler }

var expiryDesc = prometheus.NewDesc("podid_rotator_token_expiry_seconds",
	"Seconds until the SecretRotator's current registry token expires.", []string{"rotator"}, nil)

func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- expiryDesc }

func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.r.now()
	c.r.tokens.each(func(_ string, st *tokenState) {
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.creds == nil {
			return
		}
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, st.creds.ExpiresAt.Sub(now).Seconds(), st.name)
	})
}
