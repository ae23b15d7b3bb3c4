// Package promutil registers podid's Prometheus collectors so that two
// instances of a component in one process (the sandbox's tests, a server
// restarted in-process) share one set of series instead of panicking on a
// duplicate registration.
package promutil

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg and returns it, or returns the collector
// already registered under the same descriptors. A nil reg registers
// nothing.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) {
			if existing, ok := already.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // conflicting descriptors: a programming error
	}
	return c
}
