package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure an Agent.
type Options struct {
	// Node is the name of the node the agent serves.
	Node string
	// Listen are the credential endpoint's addresses, host:port.
	Listen []string
	// Listener, when set, is used for the credential endpoint instead of
	// Listen's (tests bind inside a network namespace).
	Listeners []net.Listener
	// ProbeAddr serves /healthz and /readyz; MetricsAddr serves /metrics.
	// "" turns either off.
	ProbeAddr, MetricsAddr string
	// Profiling adds Go's /debug/pprof/ to the metrics address.
	Profiling bool
	Cache     *Cache
	Handler   HandlerOptions
	// APIServer is watched for this node's pods; nil turns the watch off
	// (tests).
	APIServer *APIServer
	Log       *slog.Logger
	// ShutdownGrace bounds the drain of in-flight requests; default 5 s.
	ShutdownGrace time.Duration
	// StartupTaint, when set, is the taint key the agent removes from its
	// node once ready (see StartupTaintKey); it needs APIServer.
	StartupTaint string
	// ReadyFile, when set, is written once the agent is ready and removed
	// when it stops (see markReady).
	ReadyFile string
}

// Agent is a running `podid agent`.
type Agent struct {
	opts    Options
	handler *Handler
	metrics *metrics
	synced  atomic.Bool
	// serving: the credential addresses are bound and served.
	serving atomic.Bool
}

// New assembles an agent.
func New(opts Options) *Agent {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.ShutdownGrace == 0 {
		opts.ShutdownGrace = 5 * time.Second
	}
	opts.Handler.Cache = opts.Cache
	if opts.Handler.Log == nil {
		opts.Handler.Log = opts.Log
	}
	if len(opts.Handler.Hosts) == 0 {
		for _, l := range opts.Listeners {
			opts.Handler.Hosts = append(opts.Handler.Hosts, l.Addr().String())
		}
		opts.Handler.Hosts = append(opts.Handler.Hosts, opts.Listen...)
	}
	a := &Agent{opts: opts, handler: NewHandler(opts.Handler), metrics: newMetrics(opts.Cache)}
	a.handler.count = a.metrics.requestCounters().inc
	opts.Cache.observe = a.metrics.observeUpstream
	return a
}

// Run serves until ctx ends, then drains in-flight requests.
func (a *Agent) Run(ctx context.Context) error {
	listeners := append([]net.Listener(nil), a.opts.Listeners...)
	for _, addr := range a.opts.Listen {
		l, err := a.bind(ctx, "credentials", addr, "chart value agent.listen, flag --listen")
		if err != nil {
			if ctx.Err() != nil {
				closeAll(listeners)
				return nil // stopped while waiting for an address
			}
			var opErr *net.OpError
			if errors.As(err, &opErr) && isIPv6(addr) {
				// A node without IPv6 serves IPv4 only.
				a.opts.Log.Warn("not serving on an IPv6 address; the node seems to have no IPv6", "address", addr, "error", err.Error())
				continue
			}
			closeAll(listeners)
			return err
		}
		listeners = append(listeners, l)
	}
	if len(listeners) == 0 {
		return errors.New("no address to serve credentials on")
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(listeners)+2)
	serve := func(name string, l net.Listener, h http.Handler) {
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 2 * time.Second,
			ReadTimeout:       5 * time.Second,
			WriteTimeout:      15 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    32 << 10, // a token is about 1 KiB
		}
		wg.Go(func() {
			<-ctx.Done()
			drain, stop := context.WithTimeout(context.Background(), a.opts.ShutdownGrace)
			defer stop()
			srv.Shutdown(drain)
		})
		wg.Go(func() {
			a.opts.Log.Info("serving", "what", name, "address", l.Addr().String())
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("%s on %s: %w", name, l.Addr(), err)
				cancel()
			}
		})
	}
	for _, l := range listeners {
		serve("credentials", l, a.handler)
	}
	a.serving.Store(true)
	wg.Go(func() { a.markReady(ctx) })
	if a.opts.ProbeAddr != "" {
		l, err := a.bind(ctx, "probes", a.opts.ProbeAddr, "chart value agent.healthPort, flag --health-probe-bind-address")
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
		serve("probes", l, a.probes())
	}
	if a.opts.MetricsAddr != "" {
		l, err := a.bind(ctx, "metrics", a.opts.MetricsAddr, "chart value agent.metricsPort, flag --metrics-bind-address")
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
		serve("metrics", l, a.metricsHandler())
	}
	wg.Go(func() { a.opts.Cache.Run(ctx, time.Second) })
	if a.opts.APIServer != nil {
		wg.Go(func() { a.watchPods(ctx) })
		if a.opts.StartupTaint != "" {
			wg.Go(func() { a.removeStartupTaint(ctx, a.opts.StartupTaint) })
		}
	} else {
		a.synced.Store(true)
	}
	<-ctx.Done()
	wg.Wait()
	close(errs)
	return <-errs
}

func (a *Agent) probes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready() {
			http.Error(w, "not serving yet: the credential addresses are not bound, or the pod watch has not synced", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	})
	return mux
}

func isIPv6(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.To4() == nil
}

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		l.Close()
	}
}
