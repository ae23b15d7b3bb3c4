package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podid/podid/internal/socketkeeper"
)

// Options configure an Agent.
type Options struct {
	// Node is the name of the node the agent serves.
	Node string
	// Listen are the credential endpoint's addresses, host:port.
	Listen []string
	// Listeners are served as credential endpoints besides Listen's (tests
	// bind inside a network namespace).
	Listeners []net.Listener
	// Sockets, when set, are served instead of binding Listen, ProbeAddr
	// and MetricsAddr: the keeper's (see Bind).
	Sockets *Sockets
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
	// Restarts is how many times this agent's serving process was restarted
	// by the process keeping its sockets; a metric.
	Restarts int
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
		listeners := opts.Listeners
		if opts.Sockets != nil {
			listeners = append(append([]net.Listener(nil), listeners...), opts.Sockets.Credentials...)
		}
		for _, l := range listeners {
			opts.Handler.Hosts = append(opts.Handler.Hosts, l.Addr().String())
		}
		opts.Handler.Hosts = append(opts.Handler.Hosts, opts.Listen...)
	}
	a := &Agent{opts: opts, handler: NewHandler(opts.Handler), metrics: newMetrics(opts.Cache, opts.Restarts)}
	a.handler.count = a.metrics.requestCounters().inc
	opts.Cache.observe = a.metrics.observeUpstream
	return a
}

// Sockets are the agent's listening sockets: bound by Bind, or passed on
// by the process that keeps them across crashes (socketkeeper).
type Sockets struct {
	// Credentials are the credential endpoint's.
	Credentials []net.Listener
	// Probes and Metrics are nil when turned off.
	Probes, Metrics net.Listener
}

// Close closes them all.
func (s *Sockets) Close() {
	closeAll(s.Credentials)
	closeAll([]net.Listener{s.Probes, s.Metrics})
}

// Reserved are the agent's sockets bound but not yet listening: what the
// keeper holds for the agent it runs (see socketkeeper).
type Reserved struct {
	Credentials []*os.File
	// Probes and Metrics are nil when turned off.
	Probes, Metrics *os.File
}

// Close closes them all.
func (r *Reserved) Close() {
	for _, f := range append(slices.Clone(r.Credentials), r.Probes, r.Metrics) {
		if f != nil {
			f.Close()
		}
	}
}

// Reserve binds the agent's addresses (Listen, ProbeAddr, MetricsAddr),
// each with SO_REUSEPORT, without listening yet, waiting while another
// process holds one (see bind). An IPv6 credential address the node cannot
// bind is skipped. It returns nil and no error if ctx ended while waiting.
func Reserve(ctx context.Context, opts Options) (*Reserved, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	r := &Reserved{}
	for _, addr := range opts.Listen {
		f, err := bind(ctx, opts.Log, "credentials", addr, "chart value agent.listen, flag --listen")
		if err != nil {
			var opErr *net.OpError
			if ctx.Err() == nil && errors.As(err, &opErr) && isIPv6(addr) {
				// A node without IPv6 serves IPv4 only.
				opts.Log.Warn("not serving on an IPv6 address; the node seems to have no IPv6", "address", addr, "error", err.Error())
				continue
			}
			r.Close()
			return nil, ignoreEnded(ctx, err)
		}
		r.Credentials = append(r.Credentials, f)
	}
	var err error
	if opts.ProbeAddr != "" {
		if r.Probes, err = bind(ctx, opts.Log, "probes", opts.ProbeAddr, "chart value agent.healthPort, flag --health-probe-bind-address"); err != nil {
			r.Close()
			return nil, ignoreEnded(ctx, err)
		}
	}
	if opts.MetricsAddr != "" {
		if r.Metrics, err = bind(ctx, opts.Log, "metrics", opts.MetricsAddr, "chart value agent.metricsPort, flag --metrics-bind-address"); err != nil {
			r.Close()
			return nil, ignoreEnded(ctx, err)
		}
	}
	return r, nil
}

// Bind reserves the agent's addresses and listens on them (see Reserve).
func Bind(ctx context.Context, opts Options) (*Sockets, error) {
	r, err := Reserve(ctx, opts)
	if r == nil {
		return nil, err
	}
	s := &Sockets{}
	listen := func(f *os.File) net.Listener {
		if f == nil || err != nil {
			return nil
		}
		var l net.Listener
		l, err = socketkeeper.Listen(f)
		return l
	}
	for _, f := range r.Credentials {
		s.Credentials = append(s.Credentials, listen(f))
	}
	s.Probes, s.Metrics = listen(r.Probes), listen(r.Metrics)
	if err != nil {
		r.Close()
		s.Close()
		return nil, err
	}
	return s, nil
}

// ignoreEnded is err, or nil when it is only ctx ending.
func ignoreEnded(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Run serves until ctx ends, then drains in-flight requests. It serves on
// Options.Sockets, or binds its addresses (see Bind); Options.Listeners are
// served as credential endpoints besides.
func (a *Agent) Run(ctx context.Context) error {
	sockets := a.opts.Sockets
	if sockets == nil {
		var err error
		if sockets, err = Bind(ctx, a.opts); sockets == nil {
			closeAll(a.opts.Listeners)
			return err // nil if stopped while waiting for an address
		}
	}
	listeners := append(append([]net.Listener(nil), a.opts.Listeners...), sockets.Credentials...)
	if len(listeners) == 0 {
		sockets.Close()
		return errors.New("no address to serve credentials on")
	}
	// A ready file left by an agent of this pod that was killed is not
	// this one's.
	if a.opts.ReadyFile != "" {
		os.Remove(a.opts.ReadyFile)
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
	if sockets.Probes != nil {
		serve("probes", sockets.Probes, a.probes())
	}
	if sockets.Metrics != nil {
		serve("metrics", sockets.Metrics, a.metricsHandler())
	}
	a.serving.Store(true)
	wg.Go(func() { a.markReady(ctx) })
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
		if l != nil {
			l.Close()
		}
	}
}
