package rolesanywhere_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	ra "github.com/aws/aws-sdk-go-v2/service/rolesanywhere"
	ratypes "github.com/aws/aws-sdk-go-v2/service/rolesanywhere/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podid/podid/internal/pki"
	"github.com/podid/podid/internal/rolesanywhere"
	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/emu/awsemu/awsemutest"
)

// env is an emulator with podid's Roles Anywhere identity set up by
// PlanSetup/Apply through the real SDK clients.
type env struct {
	emu   *awsemutest.Emulator
	ca    *pki.KeyPair
	setup *rolesanywhere.Setup
	ra    *ra.Client
}

const cluster, commonName = "lab", "podid-server.lab"

func newEnv(t *testing.T) *env {
	t.Helper()
	emu := awsemutest.Start(t, awsemu.Options{})
	ca := newCA(t, "podid-identity-ca", nil)
	cfg := emu.AdminConfig()
	raClient, iamClient := ra.NewFromConfig(cfg), iam.NewFromConfig(cfg)
	req := rolesanywhere.SetupRequest{Cluster: cluster, CommonName: commonName, CABundle: ca.CertPEM, RoleName: "podid-server"}
	plan, err := rolesanywhere.PlanSetup(context.Background(), req, raClient, iamClient)
	if err != nil {
		t.Fatal(err)
	}
	if got := changes(plan); got != "create trust anchor podid-lab|create role podid-server|create profile podid-lab" {
		t.Fatalf("plan = %s", got)
	}
	if err := plan.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	again, err := rolesanywhere.PlanSetup(context.Background(), req, raClient, iamClient)
	if err != nil {
		t.Fatal(err)
	}
	if again.Pending() {
		t.Fatalf("a second setup would write: %s", changes(again))
	}
	return &env{emu: emu, ca: ca, setup: plan, ra: raClient}
}

func changes(s *rolesanywhere.Setup) string {
	var out []string
	for _, c := range s.Changes {
		out = append(out, c.Op+" "+c.Resource)
	}
	return strings.Join(out, "|")
}

func newCA(t testing.TB, cn string, parent *pki.KeyPair) *pki.KeyPair {
	t.Helper()
	ca, err := pki.Issue(&x509.Certificate{
		Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}, parent)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func leaf(t testing.TB, ca *pki.KeyPair, cn string, notAfter time.Time) *pki.KeyPair {
	t.Helper()
	k, err := pki.Issue(&x509.Certificate{
		Subject: pkix.Name{CommonName: cn, Organization: []string{"podid"}}, NotBefore: time.Now().Add(-time.Minute), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// source is a certificate a test can replace, as a renewal does.
type source struct {
	mu  sync.Mutex
	pem []byte
	key []byte
}

func (s *source) set(certPEM, keyPEM []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pem, s.key = certPEM, keyPEM
}

func (s *source) Load(context.Context) (*rolesanywhere.Identity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return rolesanywhere.ParseIdentity(s.pem, s.key)
}

func (e *env) provider(t testing.TB, src rolesanywhere.Source, now func() time.Time) *rolesanywhere.Provider {
	t.Helper()
	p, err := rolesanywhere.New(rolesanywhere.Config{
		TrustAnchorARN: e.setup.TrustAnchorARN, ProfileARN: e.setup.ProfileARN, RoleARN: e.setup.RoleARN,
		Source: src, Endpoint: e.emu.Endpoint, Reload: time.Nanosecond, Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// whoAmI calls STS with the provider's credentials: the emulator's STS
// accepts what its Roles Anywhere issued.
func (e *env) whoAmI(t testing.TB, p aws.CredentialsProvider) string {
	t.Helper()
	cfg := e.emu.AdminConfig()
	cfg.Credentials = p
	out, err := sts.NewFromConfig(cfg).GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.Arn)
}

func TestSessionFromCertificate(t *testing.T) {
	e := newEnv(t)
	t.Run("ECDSA certificate of podid's CA", func(t *testing.T) {
		l := leaf(t, e.ca, commonName, time.Now().Add(time.Hour))
		p := e.provider(t, &source{pem: l.CertPEM, key: l.KeyPEM}, nil)
		if got, want := e.whoAmI(t, p), "assumed-role/podid-server/"+l.Cert.SerialNumber.Text(16); !strings.HasSuffix(got, want) {
			t.Fatalf("caller = %s, want …%s", got, want)
		}
	})
	t.Run("RSA certificate through an intermediate", func(t *testing.T) {
		inter := newCA(t, "podid-intermediate", e.ca)
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(424242), Subject: pkix.Name{CommonName: commonName},
			NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, inter.Cert, &key.PublicKey, inter.Key)
		if err != nil {
			t.Fatal(err)
		}
		chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), inter.CertPEM...)
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
		p := e.provider(t, &source{pem: chain, key: keyPEM}, nil)
		if got := e.whoAmI(t, p); !strings.HasSuffix(got, "/67932") { // 424242 in hex
			t.Fatalf("caller = %s", got)
		}
	})
}

func TestSessionRefusals(t *testing.T) {
	e := newEnv(t)
	other := newCA(t, "someone-elses-ca", nil)
	expiring := leaf(t, e.ca, commonName, time.Now().Add(time.Second))
	for _, tc := range []struct {
		name string
		cert *pki.KeyPair
		now  func() time.Time
		want string
	}{
		{"another cluster's certificate", leaf(t, e.ca, "podid-server.other", time.Now().Add(time.Hour)), nil, "trust policy does not allow"},
		{"a certificate of another CA", leaf(t, other, commonName, time.Now().Add(time.Hour)), nil, "Untrusted Signing Certificate"},
		{"expired, seen by podid", leaf(t, e.ca, commonName, time.Now().Add(-time.Second)), nil, "expired at"},
		// podid's clock a little behind: AWS refuses it.
		{"expired, seen by Roles Anywhere", expiring, func() time.Time { return time.Now().Add(-30 * time.Second) }, "Certificate expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cert == expiring {
				time.Sleep(time.Until(expiring.Cert.NotAfter) + 100*time.Millisecond)
			}
			p := e.provider(t, &source{pem: tc.cert.CertPEM, key: tc.cert.KeyPEM}, tc.now)
			_, err := p.Retrieve(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if p.Status().Err == nil {
				t.Error("Status().Err is nil after a refusal")
			}
		})
	}

	t.Run("revoked by an imported CRL", func(t *testing.T) {
		l := leaf(t, e.ca, commonName, time.Now().Add(time.Hour))
		crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour),
			RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: l.Cert.SerialNumber, RevocationTime: time.Now()}}}, e.ca.Cert, e.ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.ra.ImportCrl(context.Background(), &ra.ImportCrlInput{Name: aws.String("podid"), CrlData: crl, TrustAnchorArn: aws.String(e.setup.TrustAnchorARN)}); err != nil {
			t.Fatal(err)
		}
		_, err = e.provider(t, &source{pem: l.CertPEM, key: l.KeyPEM}, nil).Retrieve(context.Background())
		var rerr *rolesanywhere.Error
		if !errors.As(err, &rerr) || rerr.Code != "AccessDeniedException" || !strings.Contains(err.Error(), "revoked") || !strings.Contains(err.Error(), "renew it") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("disabled trust anchor", func(t *testing.T) {
		id := e.setup.TrustAnchorARN[strings.LastIndex(e.setup.TrustAnchorARN, "/")+1:]
		if _, err := e.ra.DisableTrustAnchor(context.Background(), &ra.DisableTrustAnchorInput{TrustAnchorId: aws.String(id)}); err != nil {
			t.Fatal(err)
		}
		defer e.ra.EnableTrustAnchor(context.Background(), &ra.EnableTrustAnchorInput{TrustAnchorId: aws.String(id)})
		l := leaf(t, e.ca, commonName, time.Now().Add(time.Hour))
		_, err := e.provider(t, &source{pem: l.CertPEM, key: l.KeyPEM}, nil).Retrieve(context.Background())
		if err == nil || !strings.Contains(err.Error(), "Trust anchor "+e.setup.TrustAnchorARN+" is disabled") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("a role the profile does not list", func(t *testing.T) {
		l := leaf(t, e.ca, commonName, time.Now().Add(time.Hour))
		p, err := rolesanywhere.New(rolesanywhere.Config{TrustAnchorARN: e.setup.TrustAnchorARN, ProfileARN: e.setup.ProfileARN,
			RoleARN: "arn:aws:iam::111122223333:role/admin", Source: &source{pem: l.CertPEM, key: l.KeyPEM}, Endpoint: e.emu.Endpoint})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Retrieve(context.Background()); err == nil || !strings.Contains(err.Error(), "not among the roles of profile") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("disabled profile", func(t *testing.T) {
		id := e.setup.ProfileARN[strings.LastIndex(e.setup.ProfileARN, "/")+1:]
		if _, err := e.ra.DisableProfile(context.Background(), &ra.DisableProfileInput{ProfileId: aws.String(id)}); err != nil {
			t.Fatal(err)
		}
		defer e.ra.EnableProfile(context.Background(), &ra.EnableProfileInput{ProfileId: aws.String(id)})
		l := leaf(t, e.ca, commonName, time.Now().Add(time.Hour))
		_, err := e.provider(t, &source{pem: l.CertPEM, key: l.KeyPEM}, nil).Retrieve(context.Background())
		if err == nil || !strings.Contains(err.Error(), "is disabled") || !strings.Contains(err.Error(), "enable-profile") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestRenewal: a renewed certificate is used from the next call on, and
// while Roles Anywhere fails the session in hand keeps being served.
func TestRenewal(t *testing.T) {
	e := newEnv(t)
	first := leaf(t, e.ca, commonName, time.Now().Add(time.Hour))
	src := &source{pem: first.CertPEM, key: first.KeyPEM}
	p := e.provider(t, src, nil)
	if got := e.whoAmI(t, p); !strings.HasSuffix(got, first.Cert.SerialNumber.Text(16)) {
		t.Fatalf("caller = %s", got)
	}
	calls := e.emu.CreateSessionCalls()
	for range 20 {
		e.whoAmI(t, p)
	}
	if n := e.emu.CreateSessionCalls() - calls; n != 0 {
		t.Fatalf("%d CreateSession calls for 20 STS calls within the session, want 0", n)
	}

	// Renewed while Roles Anywhere is down: the old session is served.
	second := leaf(t, e.ca, commonName, time.Now().Add(time.Hour))
	src.set(second.CertPEM, second.KeyPEM)
	e.emu.InjectFault("CreateSession", "InternalServerException", 3)
	before, err := p.Retrieve(context.Background())
	if err != nil {
		t.Fatalf("a failing renewal failed the caller: %v", err)
	}
	if !strings.HasSuffix(e.whoAmI(t, p), first.Cert.SerialNumber.Text(16)) {
		t.Fatal("the old session was not served while Roles Anywhere failed")
	}
	// Once it answers again, the next calls move to the new certificate.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.HasSuffix(e.whoAmI(t, p), second.Cert.SerialNumber.Text(16)) {
		if time.Now().After(deadline) {
			t.Fatalf("still on the first certificate's session (%s)", before.AccessKeyID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCreateSessionCallsPerHour: two replicas under steady load (an STS
// call every simulated 10 seconds each) for ten simulated hours with
// one-hour sessions call CreateSession once per 45 minutes each (renewal
// with a quarter of the session left), never per exchange.
func TestCreateSessionCallsPerHour(t *testing.T) {
	// The time both the emulator and the providers see.
	clock := clocktesting.NewFakeClock(time.Now())
	emu := awsemutest.Start(t, awsemu.Options{Now: clock.Now})
	ca := newCA(t, "podid-identity-ca", nil)
	cfg := emu.AdminConfig()
	plan, err := rolesanywhere.PlanSetup(t.Context(), rolesanywhere.SetupRequest{Cluster: cluster, CommonName: commonName, CABundle: ca.CertPEM, RoleName: "podid-server"}, ra.NewFromConfig(cfg), iam.NewFromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if err := plan.Apply(t.Context()); err != nil {
		t.Fatal(err)
	}
	e := &env{emu: emu, ca: ca, setup: plan}
	l := leaf(t, ca, commonName, time.Now().Add(24*time.Hour))
	const replicas, hours = 2, 10
	var providers []*rolesanywhere.Provider
	for range replicas {
		p := e.provider(t, &source{pem: l.CertPEM, key: l.KeyPEM}, clock.Now)
		providers = append(providers, p)
	}
	calls := 0
	for end := clock.Now().Add(hours * time.Hour); clock.Now().Before(end); clock.Step(10 * time.Second) {
		for _, p := range providers {
			if _, err := p.Retrieve(t.Context()); err != nil {
				t.Fatal(err)
			}
			calls++
		}
		// A background renewal signs with the time it starts at and is
		// checked against the emulator's: time must not move on (five
		// minutes of skew would expire its signature) until it is done.
		for _, p := range providers {
			waitRenewed(t, p, clock.Now())
		}
	}
	n := e.emu.CreateSessionCalls()
	perHour := float64(n) / replicas / hours
	t.Logf("figure: %d CreateSession calls for %d credential retrievals by %d replicas over %d hours of 1-hour sessions: %.2f per replica per hour", n, calls, replicas, hours, perHour)
	if perHour > 1.5 {
		t.Fatalf("%.2f CreateSession calls per replica per hour, want about 1.33 (one per 45 minutes)", perHour)
	}
}

// waitRenewed waits while p's session is due for renewal at now (a
// quarter of its hour left) and no renewal has failed: until the one in
// flight is done.
func waitRenewed(t *testing.T, p *rolesanywhere.Provider, now time.Time) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		st := p.Status()
		if st.Err != nil {
			t.Fatalf("renewing the session: %v", st.Err)
		}
		if st.SessionExpires.Sub(now) > 15*time.Minute {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the session, expiring %s, was not renewed within 10s at %s", st.SessionExpires, now)
		}
	}
}

// Setup finds podid's trust anchor and profile past the first page of an
// account that holds many (AWS pages its lists: 50 at most by default):
// re-running it plans no second anchor or profile.
func TestSetupReadsEveryPage(t *testing.T) {
	e := newEnv(t)
	other := newCA(t, "another-ca", nil)
	for i := range 60 {
		// Named before podid-lab, so that podid's come last.
		name := fmt.Sprintf("another-%02d", i)
		if _, err := e.ra.CreateTrustAnchor(t.Context(), &ra.CreateTrustAnchorInput{Name: aws.String(name), Source: &ratypes.Source{
			SourceType: ratypes.TrustAnchorTypeCertificateBundle, SourceData: &ratypes.SourceDataMemberX509CertificateData{Value: string(other.CertPEM)}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ra.CreateProfile(t.Context(), &ra.CreateProfileInput{Name: aws.String(name), RoleArns: []string{}}); err != nil {
			t.Fatal(err)
		}
	}
	req := rolesanywhere.SetupRequest{Cluster: cluster, CommonName: commonName, CABundle: e.ca.CertPEM, RoleName: "podid-server"}
	again, err := rolesanywhere.PlanSetup(t.Context(), req, e.ra, iam.NewFromConfig(e.emu.AdminConfig()))
	if err != nil {
		t.Fatal(err)
	}
	if again.Pending() {
		t.Fatalf("with 60 other trust anchors and profiles, setup would write: %s", changes(again))
	}
}
