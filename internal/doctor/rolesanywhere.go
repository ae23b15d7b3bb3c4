package doctor

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	ra "github.com/aws/aws-sdk-go-v2/service/rolesanywhere"
	ratypes "github.com/aws/aws-sdk-go-v2/service/rolesanywhere/types"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/identitycert"
	"github.com/podid/podid/internal/rolesanywhere"
	"github.com/podid/podid/internal/serveridentity"
)

// TrustAnchorReader is the Roles Anywhere call doctor makes, with the
// user's credentials: the trust anchor podid's certificate must chain to.
type TrustAnchorReader interface {
	GetTrustAnchor(ctx context.Context, in *ra.GetTrustAnchorInput, optFns ...func(*ra.Options)) (*ra.GetTrustAnchorOutput, error)
}

// rolesAnywhereState is what doctor reads of podid's Roles Anywhere
// identity: the certificate's Secret, podid's CA and the trust anchor.
type rolesAnywhereState struct {
	// secretName is the certificate's Secret, as podid server published it.
	secretName string
	secret     *corev1.Secret
	secretErr  error
	ca         *corev1.ConfigMap
	caErr      error
	anchor     *ratypes.TrustAnchorDetail
	anchorErr  error
}

func (d *Doctor) readRolesAnywhere(ctx context.Context, id *serveridentity.Identity) *rolesAnywhereState {
	st := &rolesAnywhereState{secretName: id.Details[serveridentity.KeyCertificateSecret], secret: &corev1.Secret{}, ca: &corev1.ConfigMap{}}
	if st.secretName == "" {
		st.secretName = identitycert.SecretName
	}
	st.secretErr = d.Kube.Get(ctx, objectKey(d.Namespace, st.secretName), st.secret)
	st.caErr = d.Kube.Get(ctx, objectKey(d.Namespace, identitycert.CAConfigMap), st.ca)
	if d.RolesAnywhere != nil {
		anchorARN := id.Details[serveridentity.KeyTrustAnchorARN]
		a, err := arn.Parse(anchorARN)
		if err != nil {
			st.anchorErr = fmt.Errorf("podid server published trust anchor %q, not an ARN", anchorARN)
			return st
		}
		out, err := d.RolesAnywhere.GetTrustAnchor(ctx, &ra.GetTrustAnchorInput{TrustAnchorId: aws.String(strings.TrimPrefix(a.Resource, "trust-anchor/"))}, func(o *ra.Options) { o.Region = a.Region })
		if err != nil {
			st.anchorErr = err
		} else {
			st.anchor = out.TrustAnchor
		}
	}
	return st
}

// checkRolesAnywhere checks podid server's certificate (validity, its CA,
// the trust anchor holding that CA) and its session.
func (d *Doctor) checkRolesAnywhere(s *clusterState) Check {
	const name = "roles-anywhere"
	id, st, now := s.identity, s.rolesAnywhere, d.now()
	logs := fmt.Sprintf("kubectl -n %s logs deployment/%s | grep -e roles-anywhere -e identity-cert", d.Namespace, ServerDeployment)
	secretName := st.secretName
	if st.secretErr != nil {
		return warn(name, fmt.Sprintf("cannot read Secret %s/%s, which holds podid server's certificate: %v; podid server published certificate %q serial %s until %s", d.Namespace, secretName, st.secretErr,
			id.Details[serveridentity.KeyCertificateSubject], id.Details[serveridentity.KeyCertificateSerial], id.Details[serveridentity.KeyCertificateNotAfter]), "run doctor as someone who may read Secrets in "+d.Namespace)
	}
	ident, err := rolesanywhere.ParseIdentity(st.secret.Data[corev1.TLSCertKey], st.secret.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return failed(name, fmt.Sprintf("Secret %s/%s: %v", d.Namespace, secretName, err), logs)
	}
	cert := ident.Certificate
	desc := fmt.Sprintf("certificate %q serial %s", cert.Subject.CommonName, strings.ToLower(cert.SerialNumber.Text(16)))
	switch {
	case !now.Before(cert.NotAfter):
		return failed(name, fmt.Sprintf("%s expired at %s: it was not renewed, and podid server cannot start a new session with it", desc, cert.NotAfter.UTC().Format(time.RFC3339)), logs)
	case now.Before(cert.NotBefore):
		return failed(name, fmt.Sprintf("%s is not valid before %s: a clock is wrong", desc, cert.NotBefore.UTC().Format(time.RFC3339)), "check the clocks of the nodes and of the issuer")
	}
	if want := identitycert.CommonName(id.Cluster.ClusterName); cert.Subject.CommonName != want {
		return failed(name, fmt.Sprintf("%s: the role's trust requires CN %s", desc, want), "issue the certificate for CN "+want)
	}
	issuer, caWarning := "", ""
	if st.caErr == nil {
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM([]byte(st.ca.Data[identitycert.KeyCA]))
		if verified(cert, ident.Chain, roots, now) {
			issuer = "podid's own CA"
			if ca, err := rolesanywhere.ParseCABundle([]byte(st.ca.Data[identitycert.KeyCA])); err == nil && ca[0].NotAfter.Sub(now) < 365*24*time.Hour {
				caWarning = fmt.Sprintf("podid's CA expires at %s (%s left), and with it every certificate it issues", ca[0].NotAfter.UTC().Format(time.RFC3339), days(ca[0].NotAfter.Sub(now)))
			}
		}
	}
	var anchorFact string
	switch {
	case d.RolesAnywhere == nil:
		anchorFact = "trust anchor not checked (" + d.NoIAM + ")"
	case st.anchorErr != nil:
		anchorFact = fmt.Sprintf("trust anchor not checked: %v", st.anchorErr)
	default:
		anchorARN := aws.ToString(st.anchor.TrustAnchorArn)
		if !aws.ToBool(st.anchor.Enabled) {
			return failed(name, fmt.Sprintf("trust anchor %s is disabled: Roles Anywhere refuses every session", anchorARN), "aws rolesanywhere enable-trust-anchor --trust-anchor-id "+aws.ToString(st.anchor.TrustAnchorId))
		}
		roots := x509.NewCertPool()
		if data, ok := st.anchor.Source.SourceData.(*ratypes.SourceDataMemberX509CertificateData); ok {
			roots.AppendCertsFromPEM([]byte(data.Value))
		}
		if !verified(cert, ident.Chain, roots, now) {
			return failed(name, fmt.Sprintf("%s does not chain to a CA of trust anchor %s: Roles Anywhere refuses it (Untrusted Signing Certificate)", desc, anchorARN),
				fmt.Sprintf("podid roles-anywhere setup --cluster-name %s --podid-namespace %s --approve (puts podid's current CA in the trust anchor)", id.Cluster.ClusterName, d.Namespace))
		}
		anchorFact = "trust anchor " + anchorARN + " holds its CA"
	}
	if issuer != "" {
		desc += " from " + issuer
	}
	fact := fmt.Sprintf("%s, valid until %s (%s left); %s", desc, cert.NotAfter.UTC().Format(time.RFC3339), days(cert.NotAfter.Sub(now)), anchorFact)
	if exp, err := time.Parse(time.RFC3339, id.Details[serveridentity.KeySessionExpires]); err == nil {
		fact += fmt.Sprintf("; session until %s", exp.UTC().Format(time.RFC3339))
	}
	if caWarning != "" {
		return warn(name, fact+"; "+caWarning, fmt.Sprintf("kubectl -n %s delete secret %s (podid makes a new CA), then podid roles-anywhere setup --cluster-name %s --podid-namespace %s --approve", d.Namespace, identitycert.CASecretName, id.Cluster.ClusterName, d.Namespace))
	}
	return ok(name, fact)
}

func verified(cert *x509.Certificate, chain []*x509.Certificate, roots *x509.CertPool, now time.Time) bool {
	inter := x509.NewCertPool()
	for _, c := range chain {
		inter.AddCert(c)
	}
	_, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}
func objectKey(ns, name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }
