// Package server assembles `podid server`, podid's control plane: a
// controller-runtime manager whose cache feeds the association Index on every
// replica, and whose leader runs the association and PodIdentityCheck
// controllers (internal/associationcontroller, internal/podcheck). Every replica
// also serves the credential exchange and EKS-compatible APIs (internal/auth,
// internal/eksapi) and the mutating webhook for pods (internal/webhook, with
// its certificate kept by internal/webhookcert).
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/associationcontroller"
	"github.com/podid/podid/internal/auth"
	"github.com/podid/podid/internal/kube"
	"github.com/podid/podid/internal/podcheck"
)

// Options configure a Server. Flags in package cli fill them.
type Options struct {
	// Identity names the cluster in association IDs and ARNs.
	Identity association.Identity
	// LeaderElection makes only one replica run controllers.
	LeaderElection bool
	// LeaderElectionNamespace holds the Lease; empty means the namespace
	// podid runs in (in a cluster).
	LeaderElectionNamespace string
	// MetricsAddr serves Prometheus metrics; "0" turns them off.
	MetricsAddr string
	// ProbeAddr serves /healthz and /readyz; "0" turns them off.
	ProbeAddr string
	// Clock is the time source; nil means the real clock.
	Clock clock.PassiveClock
	// API is the credential exchange API.
	API APIOptions
	// Webhook is the mutating webhook for pods.
	Webhook WebhookOptions
}

// LeaderElectionID names the Lease the replicas compete for.
const LeaderElectionID = "podid-server.podid.io"

// Server is an assembled, not yet started, podid server.
type Server struct {
	Manager ctrl.Manager
	// Index answers association lookups once the cache has synced.
	Index *association.Index
	// APIURL is where the credential API listens ("" when it is off).
	APIURL string
}

// New assembles a server against the API server cfg points at.
func New(ctx context.Context, cfg *rest.Config, opts Options) (*Server, error) {
	if err := opts.Identity.Validate(); err != nil {
		return nil, err
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	webhooks, err := webhookServer(cfg, &opts.Webhook)
	if err != nil {
		return nil, err
	}
	if opts.API.TLSCertFile == "" && opts.Webhook.CertManager != nil {
		// One certificate for both: the Service name the agents call and
		// the webhook's are the same.
		opts.API.GetCertificate = opts.Webhook.CertManager.GetCertificate
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		WebhookServer:                 webhooks,
		Scheme:                        kube.NewScheme(),
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:        opts.ProbeAddr,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		// managedFields are most of an object's size and podid never reads them.
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			// The exchange only asks whether a pod exists, with which UID, on
			// which node: keep nothing else of a cluster's pods in memory.
			ByObject: map[client.Object]cache.ByObject{&corev1.Pod{}: {Transform: auth.StripPod}},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the controller manager: %w", err)
	}

	index := association.NewIndex(opts.Identity)
	informer, err := mgr.GetCache().GetInformer(ctx, &v1alpha1.PodIdentityAssociation{})
	if err != nil {
		return nil, fmt.Errorf("watching PodIdentityAssociations (are podid's CRDs installed?): %w", err)
	}
	if _, err := informer.AddEventHandler(index.Handler()); err != nil {
		return nil, fmt.Errorf("feeding the association index: %w", err)
	}
	clusterInformer, err := mgr.GetCache().GetInformer(ctx, &v1alpha1.ClusterPodIdentityAssociation{})
	if err != nil {
		// The one CRD an upgrade from 0.1 adds: Helm installs CRDs but never upgrades them.
		return nil, fmt.Errorf("watching ClusterPodIdentityAssociations: %w; Helm does not upgrade CRDs: apply the chart's crds/ directory first (kubectl apply --server-side -f charts/podid/crds/)", err)
	}
	if _, err := clusterInformer.AddEventHandler(index.Handler()); err != nil {
		return nil, fmt.Errorf("feeding the association index: %w", err)
	}

	pods, err := mgr.GetCache().GetInformer(ctx, &corev1.Pod{})
	if err != nil {
		return nil, fmt.Errorf("watching pods: %w", err)
	}
	api, err := newAPI(ctx, mgr, cfg, opts.Identity, index, opts.API)
	if err != nil {
		return nil, err
	}

	if err := addWebhook(ctx, mgr, index, opts.Webhook); err != nil {
		return nil, err
	}

	reconciler := &associationcontroller.Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Identity:  opts.Identity,
		Recorder:  mgr.GetEventRecorder("podid-server"),
		Clock:     opts.Clock,
	}
	if err := reconciler.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the association controller: %w", err)
	}
	if err := (associationcontroller.ClusterReconciler{Reconciler: reconciler}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the cluster association controller: %w", err)
	}
	if api != nil {
		// PodIdentityChecks (podid doctor's live check) are answered by
		// the same exchange, minus the token and the credentials.
		replica, _ := os.Hostname()
		checks := &podcheck.Reconciler{Client: mgr.GetClient(), Checker: api.exchange, STS: api.callerIdentity, Server: replica,
			RequesterBound: opts.API.CheckRequesterBound, Log: slog.Default().With("logger", "pod-identity-check")}
		if err := checks.SetupWithManager(mgr); err != nil {
			return nil, fmt.Errorf("setting up the PodIdentityCheck controller: %w", err)
		}
	}

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("associations", func(*http.Request) error {
		if !informer.HasSynced() || !clusterInformer.HasSynced() {
			return errors.New("the association index has not synced yet")
		}
		if !pods.HasSynced() {
			return errors.New("the pod cache has not synced yet")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	srv := &Server{Manager: mgr, Index: index}
	if api != nil {
		srv.APIURL = api.url
	}
	return srv, nil
}

// Start runs the server until ctx is cancelled.
func (s *Server) Start(ctx context.Context) error {
	return s.Manager.Start(ctx)
}
