// Package identitycert keeps the certificate podid server presents to IAM
// Roles Anywhere when podid is its own CA: a CA of its own (Secret
// podid-identity-ca; not the webhook's, and its key never leaves podid's
// namespace) and a short-lived client certificate (Secret
// podid-aws-identity, kubernetes.io/tls, the shape cert-manager writes, so
// that the reader is the same either way), renewed when a third of its
// lifetime is left. The CA certificate is published in ConfigMap
// podid-identity-ca: `podid roles-anywhere setup` registers it as the trust
// anchor.
//
// Every replica runs a Manager, as webhookcert's: the API server's
// optimistic concurrency makes one replica's write win and the others adopt
// it. The CA is not renewed by itself: a new CA is of no use until the
// trust anchor holds it, which takes AWS rights podid does not have; doctor
// warns a year ahead.
package identitycert

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/pki"
	"github.com/podid/podid/internal/rolesanywhere"
)

// Names of the objects, in podid's namespace, and their keys.
const (
	CASecretName = "podid-identity-ca"
	SecretName   = "podid-aws-identity"
	CAConfigMap  = "podid-identity-ca"
	KeyCA        = "ca.crt"
	KeyCAKey     = "ca.key"
)

// DefaultLifetime is the certificate's, renewed with a third left.
const DefaultLifetime = 24 * time.Hour

const (
	organization     = "podid"
	commonNamePrefix = "podid-server."
	// caValidity: the trust anchor holds the CA, so it lasts.
	caValidity = 10 * 365 * 24 * time.Hour
)

// CommonName is the subject CN of cluster's certificate: a role's trust
// conditions on it (aws:PrincipalTag/x509Subject/CN), so that a certificate
// of one cluster cannot act as another's even under a shared CA.
func CommonName(cluster string) string { return commonNamePrefix + cluster }

// Options configure a Manager.
type Options struct {
	// Client reads and writes past any cache.
	Client    client.Client
	Namespace string
	// CommonName of the certificate (CommonName(cluster)).
	CommonName string
	// Lifetime of the certificate (default 24h), renewed with a third left.
	Lifetime time.Duration
	// Interval between checks; default a minute, or a tenth of Lifetime if
	// shorter.
	Interval time.Duration
	Now      func() time.Time
	Log      *slog.Logger
}

// Manager keeps the CA and the certificate.
type Manager struct{ opts Options }

// New returns a Manager; Start runs it.
func New(opts Options) *Manager {
	if opts.Lifetime == 0 {
		opts.Lifetime = DefaultLifetime
	}
	if opts.Interval == 0 {
		opts.Interval = min(time.Minute, opts.Lifetime/10)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Manager{opts: opts}
}

// NeedLeaderElection is false: any replica may renew.
func (m *Manager) NeedLeaderElection() bool { return false }

// Start reconciles now and every Interval until ctx ends.
func (m *Manager) Start(ctx context.Context) error {
	t := time.NewTicker(m.opts.Interval)
	defer t.Stop()
	for {
		if err := m.Reconcile(ctx); err != nil {
			m.opts.Log.Error("keeping podid's Roles Anywhere certificate failed; retrying", "secret", m.opts.Namespace+"/"+SecretName, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Reconcile makes the CA, the certificate and the published CA exist and
// the certificate fresh.
func (m *Manager) Reconcile(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := m.reconcile(ctx)
		if (apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)) && attempt < 3 {
			continue // another replica wrote first: adopt what it wrote
		}
		return err
	}
}

func (m *Manager) reconcile(ctx context.Context) error {
	now := m.opts.Now()
	caSecret, caExists, err := m.get(ctx, CASecretName)
	if err != nil {
		return err
	}
	ca := pki.Parse(caSecret.Data[KeyCA], caSecret.Data[KeyCAKey])
	if ca == nil {
		if caExists {
			// Never replace a CA that exists: the trust anchor holds it.
			return fmt.Errorf("Secret %s/%s does not hold a readable CA (%s, %s): restore it, or delete it to have podid make a new CA, then run `podid roles-anywhere setup` again to register it", m.opts.Namespace, CASecretName, KeyCA, KeyCAKey)
		}
		if ca, err = pki.Issue(&x509.Certificate{
			Subject:               pkix.Name{CommonName: "podid-identity-ca", Organization: []string{organization}},
			NotBefore:             now.Add(-pki.Backdate),
			NotAfter:              now.Add(caValidity),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLenZero:        true,
		}, nil); err != nil {
			return err
		}
		caSecret.Data = map[string][]byte{KeyCA: ca.CertPEM, KeyCAKey: ca.KeyPEM}
		if err := m.write(ctx, caSecret, false, corev1.SecretTypeOpaque); err != nil {
			return err
		}
		m.opts.Log.Info("made podid's Roles Anywhere CA", "secret", m.opts.Namespace+"/"+CASecretName, "not_after", ca.Cert.NotAfter.UTC())
	}
	if err := m.publish(ctx, ca.CertPEM); err != nil {
		return err
	}
	secret, exists, err := m.get(ctx, SecretName)
	if err != nil {
		return err
	}
	leaf := pki.Parse(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey])
	if leaf != nil && leaf.SignedBy(ca) && !leaf.RenewDue(now, m.opts.Lifetime/3) && leaf.Cert.Subject.CommonName == m.opts.CommonName {
		return nil
	}
	if leaf, err = pki.Issue(&x509.Certificate{
		Subject:   pkix.Name{CommonName: m.opts.CommonName, Organization: []string{organization}},
		NotBefore: now.Add(-5 * time.Minute),
		NotAfter:  now.Add(m.opts.Lifetime),
		KeyUsage:  x509.KeyUsageDigitalSignature,
		// Roles Anywhere asks for nothing more; client auth says what it is for.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca); err != nil {
		return err
	}
	secret.Data = map[string][]byte{corev1.TLSCertKey: leaf.CertPEM, corev1.TLSPrivateKeyKey: leaf.KeyPEM, KeyCA: ca.CertPEM}
	if err := m.write(ctx, secret, exists, corev1.SecretTypeTLS); err != nil {
		return err
	}
	m.opts.Log.Info("renewed podid's Roles Anywhere certificate", "secret", m.opts.Namespace+"/"+SecretName, "subject", leaf.Cert.Subject.String(), "serial", leaf.Cert.SerialNumber.Text(16), "not_after", leaf.Cert.NotAfter.UTC())
	return nil
}

func (m *Manager) get(ctx context.Context, name string) (*corev1.Secret, bool, error) {
	s := &corev1.Secret{}
	err := m.opts.Client.Get(ctx, types.NamespacedName{Namespace: m.opts.Namespace, Name: name}, s)
	switch {
	case apierrors.IsNotFound(err):
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: m.opts.Namespace, Name: name}}, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("reading Secret %s/%s: %w", m.opts.Namespace, name, err)
	}
	return s, true, nil
}

func (m *Manager) write(ctx context.Context, s *corev1.Secret, exists bool, typ corev1.SecretType) error {
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	s.Labels["app.kubernetes.io/managed-by"] = "podid"
	var err error
	if exists {
		err = m.opts.Client.Update(ctx, s)
	} else {
		s.Type = typ
		err = m.opts.Client.Create(ctx, s)
	}
	if err != nil {
		return fmt.Errorf("writing Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

// publish keeps the CA certificate in the ConfigMap.
func (m *Manager) publish(ctx context.Context, caPEM []byte) error {
	cm := &corev1.ConfigMap{}
	err := m.opts.Client.Get(ctx, types.NamespacedName{Namespace: m.opts.Namespace, Name: CAConfigMap}, cm)
	switch {
	case apierrors.IsNotFound(err):
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: m.opts.Namespace, Name: CAConfigMap,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "podid"}}, Data: map[string]string{KeyCA: string(caPEM)}}
		err = m.opts.Client.Create(ctx, cm)
	case err == nil && !bytes.Equal([]byte(cm.Data[KeyCA]), caPEM):
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[KeyCA] = string(caPEM)
		err = m.opts.Client.Update(ctx, cm)
	}
	if err != nil {
		return fmt.Errorf("publishing the Roles Anywhere CA in ConfigMap %s/%s: %w", m.opts.Namespace, CAConfigMap, err)
	}
	return nil
}

// SecretSource reads the certificate from a kubernetes.io/tls Secret
// (tls.crt with its intermediates, tls.key) through reader at each call:
// podid's own (SecretName) or cert-manager's.
func SecretSource(reader client.Reader, key types.NamespacedName) rolesanywhere.Source {
	return rolesanywhere.SourceFunc(func(ctx context.Context) (*rolesanywhere.Identity, error) {
		s := &corev1.Secret{}
		if err := reader.Get(ctx, key, s); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("Secret %s, which holds podid's Roles Anywhere certificate, does not exist yet: podid's own CA writes it within a minute of start; with cert-manager, check the Certificate that names it (kubectl describe certificate -n %s)", key, key.Namespace)
			}
			return nil, fmt.Errorf("reading Secret %s, which holds podid's Roles Anywhere certificate: %w", key, err)
		}
		id, err := rolesanywhere.ParseIdentity(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
		if err != nil {
			return nil, fmt.Errorf("Secret %s: %w", key, err)
		}
		return id, nil
	})
}
