// Package webhookcert keeps podid's admission webhook served with a
// certificate the API server trusts, without cert-manager: a CA and a serving
// certificate kept in one Secret, the CA patched into the webhook
// configuration's caBundle, both renewed well before they expire.
//
// Every replica runs a Manager. Each reads the Secret (once a minute), serves
// the certificate from memory, and, when the Secret is missing or due for
// renewal, writes a new one; the API server's optimistic concurrency makes
// one replica's write win and the others adopt it. Nothing is mounted, so a
// renewal takes effect within a minute and without a restart, and a renewed
// CA is added to the caBundle beside the old one until the old one expires,
// so that no replica ever serves a certificate the API server does not
// trust. (open-policy-agent/cert-controller was the alternative: it relies on
// the kubelet syncing the Secret into a volume, a minute or more, and on
// restarts, and it replaces the caBundle outright when the CA is renewed.)
package webhookcert

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Keys of the Secret, a kubernetes.io/tls Secret with the CA beside it.
const (
	KeyCABundle = "ca.crt" // the CAs to trust: the current one, and the previous until it expires
	KeyCAKey    = "ca.key" // the current CA's key
)

// Options configure a Manager.
type Options struct {
	// Client reads and writes the Secret and the webhook configuration; it
	// should read from the API server, not a cache.
	Client client.Client
	Secret types.NamespacedName
	// WebhookConfiguration is the MutatingWebhookConfiguration whose
	// caBundle is kept; "" leaves it to someone else.
	WebhookConfiguration string
	// CAConfigMap, when named, is kept holding the CA bundle under ca.crt,
	// for clients of the other APIs served with this certificate (podid
	// agents mount it to trust the credential exchange API).
	CAConfigMap types.NamespacedName
	// DNSNames and IPs the serving certificate is for.
	DNSNames []string
	IPs      []net.IP
	// CAValidity defaults to 5 years, renewed with a year left;
	// CertValidity to 90 days, renewed with 30 left.
	CAValidity, CertValidity time.Duration
	// Interval between checks; default 1 min.
	Interval time.Duration
	Now      func() time.Time
	Log      *slog.Logger
}

// Manager serves the webhook's certificate and keeps it renewed.
type Manager struct {
	opts Options
	cert atomic.Pointer[tls.Certificate]
}

// New returns a Manager; Start runs it.
func New(opts Options) *Manager {
	if opts.CAValidity == 0 {
		opts.CAValidity = 5 * 365 * 24 * time.Hour
	}
	if opts.CertValidity == 0 {
		opts.CertValidity = 90 * 24 * time.Hour
	}
	if opts.Interval == 0 {
		opts.Interval = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Manager{opts: opts}
}

// GetCertificate serves the current certificate (tls.Config.GetCertificate).
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := m.cert.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("the webhook's certificate is not ready yet")
}

// Ready is a readiness check: nil once a certificate is served.
func (m *Manager) Ready() error {
	if m.cert.Load() == nil {
		return errors.New("the webhook's certificate is not ready yet")
	}
	return nil
}

// NeedLeaderElection is false: every replica serves the webhook.
func (m *Manager) NeedLeaderElection() bool { return false }

// Start reconciles now and every Interval until ctx ends. A failure is
// logged and retried; the manager keeps serving the last good certificate.
func (m *Manager) Start(ctx context.Context) error {
	t := time.NewTicker(m.opts.Interval)
	defer t.Stop()
	delay := time.Second
	for {
		err := m.Reconcile(ctx)
		wait := t.C
		if err != nil {
			m.opts.Log.Error("keeping the webhook's certificate failed; retrying", "secret", m.opts.Secret.String(), "error", err.Error())
			// Retry sooner than the interval while nothing is served.
			if m.cert.Load() == nil {
				timer := time.NewTimer(delay)
				delay = min(2*delay, m.opts.Interval)
				select {
				case <-ctx.Done():
					timer.Stop()
					return nil
				case <-timer.C:
				}
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wait:
		}
	}
}

// Reconcile makes the Secret hold a valid CA and serving certificate,
// serves them, and makes the webhook configuration trust them.
func (m *Manager) Reconcile(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		bundle, err := m.reconcileSecret(ctx)
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			if attempt < 3 {
				continue // another replica wrote first: adopt its Secret
			}
		}
		if err != nil {
			return err
		}
		if err := m.reconcileCABundle(ctx, bundle); err != nil {
			return err
		}
		return m.reconcileConfigMap(ctx, bundle)
	}
}

// reconcileConfigMap publishes bundle in the CA ConfigMap.
func (m *Manager) reconcileConfigMap(ctx context.Context, bundle []byte) error {
	if m.opts.CAConfigMap.Name == "" {
		return nil
	}
	cm := &corev1.ConfigMap{}
	err := m.opts.Client.Get(ctx, m.opts.CAConfigMap, cm)
	switch {
	case apierrors.IsNotFound(err):
		cm.Name, cm.Namespace = m.opts.CAConfigMap.Name, m.opts.CAConfigMap.Namespace
		cm.Labels = map[string]string{"app.kubernetes.io/managed-by": "podid"}
		cm.Data = map[string]string{KeyCABundle: string(bundle)}
		err = m.opts.Client.Create(ctx, cm)
	case err == nil && cm.Data[KeyCABundle] != string(bundle):
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[KeyCABundle] = string(bundle)
		err = m.opts.Client.Update(ctx, cm)
	}
	if err != nil && !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("publishing the CA in ConfigMap %s: %w", m.opts.CAConfigMap, err)
	}
	return nil // a conflict is another replica's write of the same bundle, or is retried next time
}

func (m *Manager) reconcileSecret(ctx context.Context) ([]byte, error) {
	now := m.opts.Now()
	secret := &corev1.Secret{}
	err := m.opts.Client.Get(ctx, m.opts.Secret, secret)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading Secret %s: %w", m.opts.Secret, err)
	}
	st := parseSecret(secret.Data)
	changed := false
	if st.ca == nil || st.ca.RenewDue(now, m.opts.CAValidity/5) {
		ca, err := newCA(now, m.opts.CAValidity)
		if err != nil {
			return nil, err
		}
		if st.ca != nil {
			m.opts.Log.Info("renewing the webhook's CA", "secret", m.opts.Secret.String(), "notAfter", st.ca.Cert.NotAfter)
		}
		st.bundle = append([]*keyPair{ca}, st.stillValid(now)...)
		st.ca, st.serving, changed = ca, nil, true
	}
	if st.serving == nil || st.serving.RenewDue(now, m.opts.CertValidity/3) || !st.serving.SignedBy(st.ca) || !covers(st.serving, m.opts.DNSNames, m.opts.IPs) {
		serving, err := newServing(st.ca, now, m.opts.CertValidity, m.opts.DNSNames, m.opts.IPs)
		if err != nil {
			return nil, err
		}
		st.serving, changed = serving, true
	}
	if pruned := st.stillValid(now); len(pruned) != len(st.bundle) {
		st.bundle, changed = pruned, true
	}
	if changed {
		secret.Name, secret.Namespace, secret.Type = m.opts.Secret.Name, m.opts.Secret.Namespace, corev1.SecretTypeTLS
		if secret.Labels == nil {
			secret.Labels = map[string]string{}
		}
		secret.Labels["app.kubernetes.io/managed-by"] = "podid"
		secret.Data = st.data()
		if exists {
			err = m.opts.Client.Update(ctx, secret)
		} else {
			err = m.opts.Client.Create(ctx, secret)
		}
		if err != nil {
			return nil, fmt.Errorf("writing Secret %s: %w", m.opts.Secret, err)
		}
		m.opts.Log.Info("wrote the webhook's certificate", "secret", m.opts.Secret.String(), "notAfter", st.serving.Cert.NotAfter)
	}
	cert, err := tls.X509KeyPair(st.serving.CertPEM, st.serving.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading the webhook's certificate: %w", err)
	}
	m.cert.Store(&cert)
	return st.bundlePEM(), nil
}

// reconcileCABundle puts bundle in every webhook of the configuration.
func (m *Manager) reconcileCABundle(ctx context.Context, bundle []byte) error {
	if m.opts.WebhookConfiguration == "" {
		return nil
	}
	for attempt := 0; ; attempt++ {
		cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := m.opts.Client.Get(ctx, types.NamespacedName{Name: m.opts.WebhookConfiguration}, cfg); err != nil {
			return fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", m.opts.WebhookConfiguration, err)
		}
		changed := false
		for i := range cfg.Webhooks {
			if !bytes.Equal(cfg.Webhooks[i].ClientConfig.CABundle, bundle) {
				cfg.Webhooks[i].ClientConfig.CABundle = bundle
				changed = true
			}
		}
		if !changed {
			return nil
		}
		err := m.opts.Client.Update(ctx, cfg)
		if apierrors.IsConflict(err) && attempt < 3 {
			continue
		}
		if err != nil {
			return fmt.Errorf("updating the caBundle of MutatingWebhookConfiguration %s: %w", m.opts.WebhookConfiguration, err)
		}
		m.opts.Log.Info("updated the webhook configuration's caBundle", "configuration", m.opts.WebhookConfiguration)
		return nil
	}
}
