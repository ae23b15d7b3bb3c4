package rotator

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/credsource"
	"github.com/podid/podid/internal/kube"
)

// LeaderElectionID names the Lease the rotator's replicas elect a leader with.
const LeaderElectionID = "podid-rotator"

// Options configure `podid rotator`.
type Options struct {
	// Namespace is podid's namespace: the Lease, and a cluster-scoped
	// rotator's default security.secretNamespace.
	Namespace      string
	LeaderElection bool
	MetricsAddr    string
	ProbeAddr      string
	// Workers bounds concurrent secret writes per rotator.
	Workers int
	// Timeout bounds each registry and AWS call.
	Timeout time.Duration
	// Backoff overrides DefaultBackoff (tests).
	Backoff Backoff
	// Registerer receives the metrics; nil means controller-runtime's.
	Registerer prometheus.Registerer
	// AWS is the base SDK configuration; nil loads it from the environment
	// (AWS_REGION, AWS_ENDPOINT_URL_*), without its credentials.
	AWS *aws.Config
	// Getenv is the environment credsource reads (Pod Identity and IRSA
	// variables); nil means os.Getenv.
	Getenv func(string) string
	// Reach bounds the Artifactory hosts and ServiceAccounts rotators may
	// name.
	Reach Reach
}

// New assembles the controller against the API server cfg points at.
func New(ctx context.Context, cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        kube.NewScheme(),
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:        opts.ProbeAddr,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       opts.Namespace,
		LeaderElectionReleaseOnCancel: true,
		Cache:                         CacheOptions(),
	})
	if err != nil {
		return nil, fmt.Errorf("creating the controller manager: %w", err)
	}
	namespaced, err := IsNamespaced(mgr.GetRESTMapper())
	if err != nil {
		return nil, fmt.Errorf("finding the SecretRotator CRD (is it installed?): %w", err)
	}
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	// The region and endpoint overrides (AWS_REGION, AWS_ENDPOINT_URL_*)
	// come from the environment; credentials never do: each rotator's
	// identity is resolved by credsource.
	var base aws.Config
	if opts.AWS != nil {
		base = opts.AWS.Copy()
	} else if base, err = awsconfig.LoadDefaultConfig(ctx); err != nil {
		return nil, fmt.Errorf("loading the AWS configuration: %w", err)
	}
	base.Credentials = nil
	factory := &ExchangerFactory{AWS: base, Reader: mgr.GetAPIReader(), Namespace: opts.Namespace, Timeout: opts.Timeout, Getenv: opts.Getenv}
	r := &Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Resolver: func(rot *v1alpha1.SecretRotator) *credsource.Resolver {
			return &credsource.Resolver{AWS: factory.AWSConfig(rot), Kube: clientset, Getenv: opts.Getenv}
		},
		Exchangers: factory.Exchanger,
		Recorder:   mgr.GetEventRecorder("podid-rotator"),
		Namespaced: namespaced,
		Reach:      opts.Reach,
		Workers:    opts.Workers,
		Backoff:    opts.Backoff,
	}
	reg := opts.Registerer
	if reg == nil {
		reg = ctrlmetrics.Registry // served by the manager's metrics endpoint
	}
	if err := r.SetupWithManager(mgr, reg); err != nil {
		return nil, fmt.Errorf("setting up the SecretRotator controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}
