package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/kube"
	"github.com/podid/podid/internal/webhook"
	"github.com/podid/podid/internal/webhookcert"
)

// The webhook keeps its certificate's caBundle in its configuration; the Helm
// chart narrows this to the one configuration by resourceNames, and grants the
// Secret in podid's own namespace with a Role.
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;update
// +kubebuilder:rbac:groups="",namespace=podid-system,resources=secrets;configmaps,verbs=get;create;update

// WebhookOptions configure the mutating webhook.
type WebhookOptions struct {
	// Addr is host:port of the webhook's HTTPS server; "" or "0" turns the
	// webhook off.
	Addr string
	// Inject is what pods get.
	Inject webhook.Config
	// CertDir holds tls.crt and tls.key issued by someone else (cert-manager);
	// when empty podid manages the certificate itself in Secret.
	CertDir string
	// Secret holds the self-managed CA and certificate.
	Secret types.NamespacedName
	// ConfigurationName is the MutatingWebhookConfiguration whose caBundle
	// podid keeps (self-managed certificates only).
	ConfigurationName string
	// Hosts are the serving certificate's DNS names and IP addresses.
	Hosts []string
	// CAConfigMap names a ConfigMap (in the Secret's namespace) kept holding
	// the CA bundle, for agents to trust the credential API when it is served
	// with the same certificate.
	CAConfigMap string
	// CertManager is the certificate manager to use, for tests that drive
	// its clock; nil builds one from the fields above.
	CertManager *webhookcert.Manager
}

// DefaultWebhookSecret is the Secret name podid keeps its webhook
// certificate in, in its own namespace.
const DefaultWebhookSecret = "podid-tls"

// webhookServer returns the manager's webhook server, or nil when the webhook
// is off.
func webhookServer(cfg *rest.Config, opts *WebhookOptions) (crwebhook.Server, error) {
	if opts.Addr == "" || opts.Addr == "0" {
		return nil, nil
	}
	if err := opts.Inject.Validate(); err != nil {
		return nil, fmt.Errorf("webhook injection settings: %w", err)
	}
	host, portText, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("--webhook-bind-address %q: %w", opts.Addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("--webhook-bind-address %q: the port is not a number", opts.Addr)
	}
	wo := crwebhook.Options{Host: host, Port: port}
	if opts.CertDir != "" {
		wo.CertDir = opts.CertDir // certwatcher reloads tls.crt/tls.key
	} else {
		if opts.Secret.Name == "" {
			opts.Secret.Name = DefaultWebhookSecret
		}
		if opts.Secret.Namespace == "" {
			opts.Secret.Namespace = ownNamespace()
		}
		if opts.Secret.Namespace == "" {
			return nil, fmt.Errorf("the webhook's certificate Secret needs a namespace: set --webhook-secret-namespace or POD_NAMESPACE")
		}
		if len(opts.Hosts) == 0 {
			return nil, fmt.Errorf("the webhook's certificate needs the names the API server calls it by: set --webhook-host (e.g. podid.%s.svc, the Service the chart creates)", opts.Secret.Namespace)
		}
		if opts.CertManager == nil {
			// The certificate is read and written live: caching Secrets
			// would mean watching every Secret in the namespace.
			live, err := client.New(cfg, client.Options{Scheme: kube.NewScheme()})
			if err != nil {
				return nil, err
			}
			var caConfigMap types.NamespacedName
			if opts.CAConfigMap != "" {
				caConfigMap = types.NamespacedName{Namespace: opts.Secret.Namespace, Name: opts.CAConfigMap}
			}
			opts.CertManager = webhookcert.New(webhookcert.Options{
				Client: live, Secret: opts.Secret, WebhookConfiguration: opts.ConfigurationName, CAConfigMap: caConfigMap,
				DNSNames: dnsNames(opts.Hosts), IPs: ips(opts.Hosts),
				Log: slog.Default().With("logger", "webhook-cert"),
			})
		}
		certs := opts.CertManager
		wo.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.GetCertificate = certs.GetCertificate }}
	}
	return crwebhook.NewServer(wo), nil
}

// addWebhook registers the pod mutator and, when podid manages the
// certificate, its manager.
func addWebhook(ctx context.Context, mgr manager.Manager, index *association.Index, opts WebhookOptions) error {
	if opts.Addr == "" || opts.Addr == "0" {
		return nil
	}
	if opts.Inject.IRSA {
		// IRSA reads ServiceAccounts' annotations from the metadata-only
		// informer the association controller keeps; wait for it before
		// calling the webhook ready.
		sa := &metav1.PartialObjectMetadata{}
		sa.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ServiceAccount"))
		sas, err := mgr.GetCache().GetInformer(ctx, sa)
		if err != nil {
			return fmt.Errorf("watching ServiceAccounts: %w", err)
		}
		if err := mgr.AddReadyzCheck("serviceaccounts", func(*http.Request) error {
			if !sas.HasSynced() {
				return fmt.Errorf("the ServiceAccount cache has not synced yet")
			}
			return nil
		}); err != nil {
			return err
		}
	}
	handler := webhook.NewHandler(webhook.Options{
		Config: opts.Inject, Index: index,
		Cache: mgr.GetClient(), Live: mgr.GetAPIReader(),
		Log:     slog.Default().With("logger", "webhook"),
		Metrics: webhook.NewMetrics(metrics.Registry),
	}, admission.NewDecoder(mgr.GetScheme()))
	mgr.GetWebhookServer().Register(webhook.Path, &admission.Webhook{Handler: handler})
	if opts.CertManager != nil {
		if err := mgr.Add(opts.CertManager); err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("webhook-certificate", func(*http.Request) error { return opts.CertManager.Ready() }); err != nil {
			return err
		}
	}
	return nil
}

// ownNamespace is the namespace podid runs in: $POD_NAMESPACE (downward
// API), or the ServiceAccount's mounted namespace file.
func ownNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if data, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		return strings.TrimSpace(string(data))
	}
	return ""
}

func dnsNames(hosts []string) []string {
	var out []string
	for _, h := range hosts {
		if net.ParseIP(h) == nil {
			out = append(out, h)
		}
	}
	return out
}

func ips(hosts []string) []net.IP {
	var out []net.IP
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			out = append(out, ip)
		}
	}
	return out
}
