package integration

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	ra "github.com/aws/aws-sdk-go-v2/service/rolesanywhere"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/doctor"
	"github.com/podid/podid/internal/identitycert"
	"github.com/podid/podid/internal/rolesanywhere"
	"github.com/podid/podid/internal/serveridentity"
)

// TestRolesAnywhereIdentity: podid's own CA on the real API server (two
// replicas' managers racing), `podid roles-anywhere setup` planning and
// making the trust anchor, role and profile in the emulator, and a
// Roles Anywhere session read from the Secret through certificate renewals
// every few seconds with no failed call; once renewals stop, the session in
// hand is served until it expires and a new replica is refused with a
// message that says what to do.
func TestRolesAnywhereIdentity(t *testing.T) {
	ns := newNamespace(t)
	ctx, stopManagers := context.WithCancel(t.Context())
	defer stopManagers()
	const lifetime = 6 * time.Second
	var managers sync.WaitGroup
	for range 2 {
		m := identitycert.New(identitycert.Options{Client: k8s, Namespace: ns, CommonName: identitycert.CommonName(identity.ClusterName), Lifetime: lifetime, Interval: 200 * time.Millisecond})
		managers.Go(func() { _ = m.Start(ctx) })
	}
	var caConfigMap corev1.ConfigMap
	eventually(t, "ConfigMap "+identitycert.CAConfigMap, func(ctx context.Context) (bool, error) {
		return k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: identitycert.CAConfigMap}, &caConfigMap) == nil, nil
	})
	caBefore := caSecret(t, ns)

	out, _, err := podid(t, "roles-anywhere", "setup", "--podid-namespace", ns, "--cluster-name", identity.ClusterName, "--region", identity.Region)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"+ trust anchor podid-podid-test: with podid's CA bundle (podid-identity-ca until", "+ role podid-server-podid-test", "+ profile podid-podid-test", "Nothing was changed"} {
		if !strings.Contains(out, want) {
			t.Fatalf("plan lacks %q:\n%s", want, out)
		}
	}
	out, _, err = podid(t, "roles-anywhere", "setup", "--podid-namespace", ns, "--cluster-name", identity.ClusterName, "--region", identity.Region, "--approve")
	if err != nil {
		t.Fatal(err)
	}
	value := func(key string) string {
		m := regexp.MustCompile(key + `: (\S+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no %s in:\n%s", key, out)
		}
		return m[1]
	}
	cfg := rolesanywhere.Config{TrustAnchorARN: value("trustAnchorArn"), ProfileARN: value("profileArn"), RoleARN: value("roleArn"),
		Source: identitycert.SecretSource(k8s, types.NamespacedName{Namespace: ns, Name: identitycert.SecretName}), Endpoint: emuEndpoint, Reload: 100 * time.Millisecond}
	again, _, err := podid(t, "roles-anywhere", "setup", "--podid-namespace", ns, "--cluster-name", identity.ClusterName, "--region", identity.Region)
	if err != nil || strings.Contains(again, "+ ") || strings.Contains(again, "~ ") {
		t.Fatalf("a second setup plans changes (%v):\n%s", err, again)
	}

	provider, err := rolesanywhere.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stsCfg := awsConfig(emuAdmin)
	stsCfg.Credentials = provider
	stsClient := awssts.NewFromConfig(stsCfg)
	serials := map[string]bool{}
	calls, failed := 0, 0
	for end := time.Now().Add(3 * lifetime); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		calls++
		got, err := stsClient.GetCallerIdentity(t.Context(), &awssts.GetCallerIdentityInput{})
		if err != nil {
			failed++
			t.Logf("call %d: %v", calls, err)
			continue
		}
		arn := aws.ToString(got.Arn)
		if !strings.Contains(arn, ":assumed-role/podid-server-podid-test/") {
			t.Fatalf("acting as %s", arn)
		}
		serials[arn[strings.LastIndex(arn, "/")+1:]] = true
	}
	t.Logf("%d STS calls through Roles Anywhere sessions of %d certificates, %d failed", calls, len(serials), failed)
	if failed != 0 || len(serials) < 3 {
		t.Fatalf("%d of %d calls failed, sessions of %d certificates (want 0 failed, 3 or more certificates)", failed, calls, len(serials))
	}
	if caAfter := caSecret(t, ns); caAfter != caBefore {
		t.Fatal("the CA changed during certificate renewals: the trust anchor would no longer hold it")
	}

	// podid server publishes how it is doing (as it does, through
	// serveridentity.RolesAnywhereSource); doctor reads it, the
	// certificate, podid's CA and the trust anchor.
	publisher := &serveridentity.Publisher{Client: k8s, Reader: k8s, Namespace: ns, STS: stsClient, Cluster: identity, Refresh: 200 * time.Millisecond,
		Log: slog.New(slog.DiscardHandler), Source: serveridentity.RolesAnywhereSource(provider, cfg.TrustAnchorARN, cfg.ProfileARN, cfg.RoleARN, identitycert.SecretName)}
	go publisher.Start(ctx)
	d := &doctor.Doctor{Kube: k8s, Namespace: ns, IAM: iam.NewFromConfig(awsConfig(emuAdmin)), RolesAnywhere: ra.NewFromConfig(awsConfig(emuAdmin))}
	doctorSays := func(name string, status doctor.Status, want ...string) {
		t.Helper()
		eventually(t, "doctor's "+name+" check to be "+string(status), func(ctx context.Context) (bool, error) {
			c := checkNamed(d.Cluster(ctx), name)
			if c.Status != status {
				return false, nil
			}
			for _, w := range want {
				if !strings.Contains(c.Fact+" | "+c.Fix, w) {
					t.Fatalf("doctor's %s check: %s | %s; want %q", name, c.Fact, c.Fix, w)
				}
			}
			return true, nil
		})
	}
	doctorSays("aws-identity", doctor.OK, "through IAM Roles Anywhere", "role/podid-server-podid-test")
	doctorSays("roles-anywhere", doctor.OK, "from podid's own CA", "trust anchor "+cfg.TrustAnchorARN+" holds its CA")

	// The CA is compromised: delete it. podid makes a new one and a
	// certificate from it, which the trust anchor does not hold: the
	// session in hand keeps serving, doctor says what to run, and running
	// it restores the identity.
	if err := k8s.Delete(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: identitycert.CASecretName}}); err != nil {
		t.Fatal(err)
	}
	doctorSays("aws-identity", doctor.Fail, "Untrusted Signing Certificate", "podid roles-anywhere setup")
	doctorSays("roles-anywhere", doctor.Fail, "does not chain to a CA of trust anchor", "podid roles-anywhere setup --cluster-name podid-test --podid-namespace "+ns+" --approve")
	if _, err := stsClient.GetCallerIdentity(t.Context(), &awssts.GetCallerIdentityInput{}); err != nil {
		t.Fatalf("the session in hand is not served while its renewal is refused: %v", err)
	}
	out, _, err = podid(t, "roles-anywhere", "setup", "--podid-namespace", ns, "--cluster-name", identity.ClusterName, "--region", identity.Region, "--approve")
	if err != nil || !strings.Contains(out, "~ trust anchor podid-podid-test: its CA bundle becomes podid's") {
		t.Fatalf("setup after the CA changed (%v):\n%s", err, out)
	}
	doctorSays("aws-identity", doctor.OK, "through IAM Roles Anywhere")
	doctorSays("roles-anywhere", doctor.OK, "holds its CA")

	// Renewals stop (podid's managers are gone): the certificate expires.
	stopManagers()
	managers.Wait()
	time.Sleep(lifetime)
	if _, err := stsClient.GetCallerIdentity(t.Context(), &awssts.GetCallerIdentityInput{}); err != nil {
		t.Fatalf("the session in hand is no longer served after its certificate expired: %v", err)
	}
	fresh, err := rolesanywhere.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fresh.Retrieve(t.Context())
	var certErr *rolesanywhere.CertificateError
	if !errors.As(err, &certErr) || !strings.Contains(err.Error(), "was not renewed in time; run `podid doctor`") {
		t.Fatalf("a new replica with an expired certificate: %v", err)
	}
}

func checkNamed(r *doctor.Report, name string) doctor.Check {
	for _, s := range r.Sections {
		for _, c := range s.Checks {
			if c.Name == name {
				return c
			}
		}
	}
	return doctor.Check{Name: name, Status: "absent"}
}

func caSecret(t *testing.T, ns string) string {
	t.Helper()
	var s corev1.Secret
	if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: identitycert.CASecretName}, &s); err != nil {
		t.Fatal(err)
	}
	return string(s.Data[identitycert.KeyCA])
}
