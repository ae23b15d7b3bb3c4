package agent

import (
	"net/http"
	"net/http/pprof"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the agent's own: what pods asked and what upstream answered.
// They live in a registry of the agent's, not the global one.
type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	upstream *prometheus.CounterVec
}

func newMetrics(cache *Cache, restarts int) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podid_agent_requests_total",
			Help: "Credential requests from pods, by HTTP status.",
		}, []string{"status"}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podid_agent_upstream_requests_total",
			Help: "Calls to the credential exchange, by outcome (ok, or the error code).",
		}, []string{"outcome"}),
	}
	m.registry.MustRegister(m.requests, m.upstream,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "podid_agent_cached_pods", Help: "Pods whose credentials the agent holds."},
			func() float64 { return float64(cache.Len()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "podid_agent_restarts_total",
			Help: "Times the agent's serving process died (a panic, the OOM killer) and was restarted at once by the process keeping its addresses, since its container started.",
		}, func() float64 { return float64(restarts) }),
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// requestCounters are the request counter's children for the statuses the
// endpoint answers, looked up once so that a request costs an atomic add.
type requestCounters map[int]prometheus.Counter

func (m *metrics) requestCounters() requestCounters {
	c := requestCounters{}
	for _, status := range []int{200, 400, 403, 404, 405, 429, 500, 502, 503, 504} {
		c[status] = m.requests.WithLabelValues(strconv.Itoa(status))
	}
	return c
}

func (c requestCounters) inc(status int) {
	if counter, ok := c[status]; ok {
		counter.Inc()
	}
}

func (m *metrics) observeUpstream(err error) {
	outcome := "ok"
	if err != nil {
		_, outcome, _ = upstreamStatus(err)
	}
	m.upstream.WithLabelValues(outcome).Inc()
}

func (a *Agent) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.metrics.registry, promhttp.HandlerOpts{}))
	if a.opts.Profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}
