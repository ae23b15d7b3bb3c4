package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podid/podid/internal/accesskey"
	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/auth"
	"github.com/podid/podid/internal/eksapi"
	"github.com/podid/podid/internal/podevents"
	"github.com/podid/podid/internal/promutil"
	"github.com/podid/podid/internal/rolesanywhere"
	"github.com/podid/podid/internal/serveridentity"
	"github.com/podid/podid/internal/sigv4"
	"github.com/podid/podid/internal/sts"
	"github.com/podid/podid/internal/token"
)

// APIOptions configure the HTTP API the server answers agents and AWS
// clients on: EKS Auth's AssumeRoleForPodIdentity and the EKS association
// operations.
type APIOptions struct {
	// Addr to listen on; "0" turns the API off.
	Addr string
	// TLSCertFile and TLSKeyFile serve TLS, reloaded when they change.
	TLSCertFile, TLSKeyFile string
	// InsecureHTTP serves plain HTTP; only for tests and the sandbox.
	InsecureHTTP bool
	// GetCertificate serves TLS when no files are given: podid's own
	// certificate, the webhook's (see WebhookOptions).
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Audience of pod tokens (default pods.eks.amazonaws.com).
	Audience string
	// AgentAudience of podid agents' own tokens (default podid.io/agent).
	AgentAudience string
	// AgentServiceAccounts are "namespace/name" of the agents' ServiceAccounts.
	AgentServiceAccounts []string
	// TokenIssuer, when set, is an OIDC issuer URL whose discovery document
	// names the JWKS; otherwise the API server's issuer and keys are used.
	TokenIssuer string
	// AccessKeysFile admits SigV4 callers with the keys in it (see
	// internal/accesskey); AccessKeys does the same from memory.
	AccessKeysFile string
	// CheckRequesterBound: an admission policy binds PodIdentityChecks'
	// podid.io/requested-by to their creator, so the audit log may believe
	// it (see podcheck.RequesterPolicy).
	CheckRequesterBound bool
	AccessKeys          []sigv4.Key
	// STSEndpoint and STSRegion reach STS; the region defaults to the
	// cluster's. STS, when set, is used instead (tests).
	STSEndpoint, STSRegion string
	STS                    sts.API
	// RolesAnywhere, when enabled, is podid server's own AWS identity
	// instead of the SDK's chain.
	RolesAnywhere *RolesAnywhereOptions
	// IAM reads roles' MaxSessionDuration (iam:GetRole), so sessions are
	// as long as each role allows; nil with STS set: none is read (tests),
	// nil otherwise: a client of podid server's own AWS identity.
	IAM sts.RoleReader
	// IdentityNamespace is where the server publishes its AWS identity
	// (package serveridentity); default the namespace podid runs in, and
	// none outside a cluster.
	IdentityNamespace string
	// SessionDuration of issued credentials (default EKS's six hours,
	// bounded by each role's MaxSessionDuration).
	SessionDuration time.Duration
	// Now is the clock tokens and signatures are checked against; nil
	// means time.Now.
	Now func() time.Time
	// AssociationLimit caps associations created through the EKS API (zero:
	// EKS's 5,000).
	AssociationLimit int
}

// api is the credential API as assembled: where it listens, and the
// exchange and STS that the PodIdentityCheck controller answers with.
type api struct {
	url      string
	exchange *auth.Handler
	// callerIdentity is nil when the STS client (a test double) has no
	// GetCallerIdentity.
	callerIdentity serveridentity.CallerIdentityAPI
}

// newAPI builds the EKS Auth handler and adds its listener to the manager.
// It returns nil when the API is off.
func newAPI(ctx context.Context, mgr manager.Manager, cfg *rest.Config, identity association.Identity, index *association.Index, opts APIOptions) (*api, error) {
	if opts.Addr == "0" || opts.Addr == "" {
		return nil, nil
	}
	if !opts.InsecureHTTP && (opts.TLSCertFile == "" || opts.TLSKeyFile == "") && opts.GetCertificate == nil {
		return nil, errors.New("the credential API needs --tls-cert-file and --tls-key-file, or podid's own certificate (the webhook's, with --webhook-host naming the API's Service too), or --insecure-http for tests only")
	}
	if d := opts.SessionDuration; d != 0 && (d < 15*time.Minute || d > 12*time.Hour) {
		return nil, fmt.Errorf("--session-duration %s is outside what STS allows (15m to 12h)", d)
	}
	verifier, err := clusterTokenVerifier(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	slog.Default().Info("verifying ServiceAccount tokens", "issuer", verifier.Issuer())
	stsClient, iamClient := opts.STS, opts.IAM
	var rolesAnywhere *rolesanywhere.Provider
	if stsClient == nil {
		awsCfg, provider, err := serverAWSConfig(ctx, mgr, cfg, identity, opts)
		if err != nil {
			return nil, err
		}
		rolesAnywhere = provider
		if iamClient == nil {
			iamClient = iam.NewFromConfig(awsCfg)
		}
		// Throttling in a burst of new pods is retried with backoff, and counted.
		throttled := promutil.Register(ctrlmetrics.Registry, sts.ThrottledCounter())
		stsClient = awssts.NewFromConfig(awsCfg, func(o *awssts.Options) {
			o.Retryer = sts.NewRetryer(throttled, 0)()
			if opts.STSEndpoint != "" {
				o.BaseEndpoint = aws.String(opts.STSEndpoint)
			}
		})
	}
	limits := &sts.RoleLimits{IAM: iamClient, Now: opts.Now}
	// The identity publisher and the PodIdentityChecks without a pod call
	// sts:GetCallerIdentity, which test doubles of STS may not have.
	ci, _ := stsClient.(serveridentity.CallerIdentityAPI)
	if ci != nil {
		ns := opts.IdentityNamespace
		if ns == "" {
			ns = ownNamespace()
		}
		if ns != "" {
			publisher := &serveridentity.Publisher{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: ns, STS: ci,
				Cluster: identity, Log: slog.Default().With("logger", "server-identity")}
			if rolesAnywhere != nil {
				// Often, so that doctor sees a failing renewal within a minute.
				ra := opts.RolesAnywhere
				secret := ra.Secret
				if ra.CertificateFile != "" {
					secret = "" // read from files
				}
				publisher.Source = serveridentity.RolesAnywhereSource(rolesAnywhere, ra.TrustAnchorARN, ra.ProfileARN, ra.RoleARN, secret)
				publisher.Refresh = time.Minute
			}
			if err := mgr.Add(publisher); err != nil {
				return nil, err
			}
			// Every replica, the leader too, says whether its own identity
			// works (its own session, its own SDK credentials).
			if replica, _ := os.Hostname(); replica != "" {
				if err := mgr.Add(publisher.ReplicaReporter(replica)); err != nil {
					return nil, err
				}
			}
		}
	}
	var keyStore sigv4.KeyStore
	if opts.AccessKeysFile != "" || len(opts.AccessKeys) > 0 {
		static := sigv4.NewStaticKeys(opts.AccessKeys...)
		keyStore = static
		if opts.AccessKeysFile != "" {
			watcher, fromFile, err := accesskey.Watch(opts.AccessKeysFile, ctrlmetrics.Registry)
			if err != nil {
				return nil, err
			}
			// The file's keys join the in-memory ones, now and on every change:
			// rotating a key is editing the Secret, no restart.
			reload := func(fromFile []sigv4.Key) {
				static.Replace(append(append([]sigv4.Key(nil), opts.AccessKeys...), fromFile...)...)
			}
			reload(fromFile)
			if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
				watcher.Run(ctx, 10*time.Second, reload, slog.Default().With("logger", "access-keys"))
				return nil
			})); err != nil {
				return nil, err
			}
		}
	}
	log := slog.Default().With("logger", "eks-auth")
	handler := auth.NewHandler(auth.Options{
		Identity:             identity,
		Index:                index,
		Tokens:               verifier,
		Audience:             opts.Audience,
		AgentAudience:        opts.AgentAudience,
		AgentServiceAccounts: opts.AgentServiceAccounts,
		AccessKeys:           keyStore,
		Pods:                 &auth.KubePods{Cache: mgr.GetClient(), Live: mgr.GetAPIReader()},
		Events:               podevents.New(mgr.GetClient(), slog.Default().With("logger", "pod-events"), 10, opts.Now),
		Assumer:              &sts.Assumer{Client: stsClient, Identity: identity, Duration: opts.SessionDuration, Limits: limits, Chained: rolesAnywhere != nil},
		Log:                  log,
		Audit:                slog.Default().With("logger", "audit"),
		Registerer:           ctrlmetrics.Registry,
		Now:                  opts.Now,
	})

	eks := eksapi.NewHandler(eksapi.Options{
		Identity: identity, Index: index, Config: cfg,
		Keys: keyStore, Limit: opts.AssociationLimit, Now: opts.Now,
		Log: slog.Default().With("logger", "eks-api"),
	})
	// Both APIs share the listener, as EKS and EKS Auth share nothing but
	// the path prefix; each verifies its own SigV4 service name.
	mux := http.NewServeMux()
	mux.Handle("/clusters/{clusterName}/assume-role-for-pod-identity", handler)
	mux.Handle("/clusters/{clusterName}/pod-identity-associations", eks)
	mux.Handle("/clusters/{clusterName}/pod-identity-associations/", eks)
	mux.Handle("/tags/", eks) // EKS's tagging operations, on association ARNs
	mux.Handle("/", handler)

	l, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("listening for the credential API on %s: %w", opts.Addr, err)
	}
	url := "http://" + l.Addr().String()
	if !opts.InsecureHTTP {
		getCertificate := opts.GetCertificate
		if opts.TLSCertFile != "" {
			watcher, err := certwatcher.New(opts.TLSCertFile, opts.TLSKeyFile)
			if err != nil {
				l.Close()
				return nil, fmt.Errorf("loading the credential API's TLS certificate: %w", err)
			}
			if err := mgr.Add(watcher); err != nil {
				l.Close()
				return nil, err
			}
			getCertificate = watcher.GetCertificate
		}
		l = tls.NewListener(l, &tls.Config{GetCertificate: getCertificate, MinVersion: tls.VersionTLS12})
		promutil.Register(ctrlmetrics.Registry, certificateExpiry(getCertificate))
		url = "https://" + strings.TrimPrefix(url, "http://")
	}
	shutdown := 10 * time.Second
	if err := mgr.Add(&manager.Server{
		Name: "eks-auth",
		Server: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       15 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       90 * time.Second,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		Listener:        l,
		ShutdownTimeout: &shutdown,
	}); err != nil {
		l.Close()
		return nil, err
	}
	return &api{url: url, exchange: handler, callerIdentity: ci}, nil
}

// clusterTokenVerifier verifies the cluster's ServiceAccount tokens with the
// API server's keys, or an external issuer's when --token-issuer is set.
func clusterTokenVerifier(ctx context.Context, cfg *rest.Config, opts APIOptions) (*token.Verifier, error) {
	if opts.TokenIssuer != "" {
		return token.ForIssuer(ctx, http.DefaultClient, opts.TokenIssuer, opts.Now)
	}
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("building a client for the API server: %w", err)
	}
	return token.ForAPIServer(ctx, client, cfg.Host, opts.Now)
}

// certificateExpiry is when the certificate the API serves expires (podid's
// own, the webhook's too, or the files'), read at each scrape, so that an
// alert sees a renewal that did not happen; 0 when there is none.
func certificateExpiry(get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "podid_serving_certificate_expiry_timestamp_seconds",
		Help: "When the TLS certificate podid server's API serves expires (Unix time); 0 when it has none.",
	}, func() float64 {
		c, err := get(nil)
		if err != nil || c == nil || len(c.Certificate) == 0 {
			return 0
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			return 0
		}
		return float64(leaf.NotAfter.Unix())
	})
}
