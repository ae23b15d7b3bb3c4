package promutil

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRegisterTwiceSharesTheCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "podid_test_total", Help: "test"}
	first := Register(reg, prometheus.NewCounterVec(opts, []string{"x"}))
	second := Register(reg, prometheus.NewCounterVec(opts, []string{"x"}))
	first.WithLabelValues("a").Inc()
	second.WithLabelValues("a").Inc()
	if got := testutil.ToFloat64(first.WithLabelValues("a")); got != 2 {
		t.Fatalf("counter = %v, want 2: the second registration did not share the first", got)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a conflicting registration did not panic")
		}
	}()
	Register(reg, prometheus.NewCounterVec(opts, []string{"y"}))
}
