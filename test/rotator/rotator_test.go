package rotator

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/rotator"
	"github.com/podid/podid/test/emu/registryemu"
)

// The seed's JFrog manifest, apiVersion changed, under podid's Pod
// Identity variables: both secrets, a docker login that pulls from
// Artifactory, one token for everything, a lifetime from the role's
// MaxSessionDuration found through a role path, and metadata kept in sync.
func TestJFrogSeedManifest(t *testing.T) {
	t.Parallel()
	namespace(t, "jfrog-operator", nil)
	caSecret(t, "jfrog-operator", "artifactory-ca", e.artCA)
	digest, err := registryemu.Push(t.Context(), e.artHost+"/docker-local/app:1.0", "admin", "art-admin", false, tlsTransport(t, e.artCA))
	if err != nil {
		t.Fatal(err)
	}
	callsBefore := e.art.TokenCalls()

	create(t, seed(t))
	rot := waitReady(t, "secretrotator", v1alpha1.ReasonRotated)

	docker := waitSecret(t, "jfrog-operator", "token-imagepull-secret", true)
	generic := waitSecret(t, "jfrog-operator", "token-generic-secret", true)
	user, password := dockerLogin(t, docker, e.artHost)
	if user != "ci-puller" {
		t.Errorf("docker login user %q, want the JFrog user mapped to the role", user)
	}
	if got, err := registryemu.ManifestDigest(t.Context(), e.artHost+"/docker-local/app:1.0", user, password, false, tlsTransport(t, e.artCA)); err != nil || got != digest {
		t.Fatalf("pulling with the docker secret: %s, %v", got, err)
	}
	if generic.Type != corev1.SecretTypeOpaque || string(generic.Data["user"]) != user || string(generic.Data["token"]) != password {
		t.Errorf("generic secret: type %s, user %q; want Opaque with the same login", generic.Type, generic.Data["user"])
	}
	for _, s := range []*corev1.Secret{docker, generic} {
		if s.Labels["labelName"] != "labelValue" || s.Annotations["annotationKey"] != "annotationValue" || s.Labels[rotator.LabelRotator] != "secretrotator" {
			t.Errorf("secret %s metadata: labels %v annotations %v", s.Name, s.Labels, s.Annotations)
		}
	}

	st := rot.Status
	if st.AuthType != "podIdentity" || st.Provider != "jfrog" || !strings.Contains(st.Identity, ":assumed-role/registry-puller/") {
		t.Errorf("status: authType %q provider %q identity %q", st.AuthType, st.Provider, st.Identity)
	}
	if d := st.TokenExpiresAt.Sub(st.LastRotationTime.Time); d < 7190*time.Second || d > 7210*time.Second {
		t.Errorf("token lifetime %s, want the role's MaxSessionDuration of 2h (the role has a path)", d)
	}
	if len(st.ProvisionedNamespaces) != 1 || st.ProvisionedNamespaces[0] != "jfrog-operator" || st.NamespaceCount != 1 ||
		strings.Join(st.SecretManagedByNamespaces["jfrog-operator"], ",") != "token-generic-secret,token-imagepull-secret" || st.ObservedGeneration != rot.Generation {
		t.Errorf("status: %+v", st)
	}
	// Artifactory is shared by the tests running in parallel: it saw the
	// exchange, and the rotator's own count says it was the only one.
	if n := e.art.TokenCalls() - callsBefore; n < 1 {
		t.Errorf("Artifactory saw %d token exchanges, want the rotator's", n)
	}
	if v, _ := metric(t, "podid_rotator_rotations_total", map[string]string{"rotator": "secretrotator", "provider": "jfrog"}); v != 1 {
		t.Errorf("podid_rotator_rotations_total = %v for two secrets, want 1", v)
	}
	if v, ok := metric(t, "podid_rotator_token_expiry_seconds", map[string]string{"rotator": "secretrotator"}); !ok || v < 7000 || v > 7200 {
		t.Errorf("podid_rotator_token_expiry_seconds = %v (%v), want about 7200", v, ok)
	}

	// Metadata follows the spec after creation too; what others add stays.
	patch := client.MergeFrom(docker.DeepCopy())
	docker.Labels["owner"] = "someone-else"
	if err := e.k8s.Patch(t.Context(), docker, patch); err != nil {
		t.Fatal(err)
	}
	rot = get(t, "secretrotator")
	p := client.MergeFrom(rot.DeepCopy())
	rot.Spec.SecretMetadata = v1alpha1.SecretMetadata{Labels: map[string]string{"labelName": "changed", "team": "registry"}, Annotations: map[string]string{"rotated-by": "podid"}}
	if err := e.k8s.Patch(t.Context(), rot, p); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "secretMetadata applied to existing secrets", func() (bool, string) {
		s, _ := secret(t, "jfrog-operator", "token-imagepull-secret")
		_, oldAnnotation := s.Annotations["annotationKey"]
		ok := s.Labels["labelName"] == "changed" && s.Labels["team"] == "registry" && s.Annotations["rotated-by"] == "podid" && !oldAnnotation && s.Labels["owner"] == "someone-else"
		return ok, "labels " + mapString(s.Labels) + " annotations " + mapString(s.Annotations)
	})
	if v, _ := metric(t, "podid_rotator_rotations_total", map[string]string{"rotator": "secretrotator", "provider": "jfrog"}); v != 1 {
		t.Errorf("a metadata change made %v token exchanges in all, want still 1", v)
	}

	// Removing an entry removes its secret, and only it.
	rot = get(t, "secretrotator")
	p = client.MergeFrom(rot.DeepCopy())
	rot.Spec.GeneratedSecrets = rot.Spec.GeneratedSecrets[:1]
	if err := e.k8s.Patch(t.Context(), rot, p); err != nil {
		t.Fatal(err)
	}
	waitSecret(t, "jfrog-operator", "token-generic-secret", false)
	if _, ok := secret(t, "jfrog-operator", "token-imagepull-secret"); !ok {
		t.Fatal("the remaining entry's secret went too")
	}
}

func mapString(m map[string]string) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

// ECR, namespaces chosen by matchExpressions: late namespaces, label
// removal, a foreign same-named secret, and deletion.
func TestECRNamespacesAndOwnership(t *testing.T) {
	t.Parallel()
	for ns, team := range map[string]string{"ecr-a": "a", "ecr-b": "b", "ecr-c": "c"} {
		namespace(t, ns, map[string]string{"team": team})
	}
	digest, err := registryemu.Push(t.Context(), e.ecrHost+"/app:1", "admin", "ecr-push", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	callsBefore := e.emu.ECRTokenCalls()
	rot := &v1alpha1.SecretRotator{
		ObjectMeta: metav1.ObjectMeta{Name: "ecr"},
		Spec: v1alpha1.SecretRotatorSpec{
			Provider:          "ecr",
			ECR:               &v1alpha1.ECRConfig{Region: "eu-west-1"},
			NamespaceSelector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}},
			GeneratedSecrets:  []v1alpha1.GeneratedSecret{{SecretName: "ecr-pull"}},
		},
	}
	create(t, rot)
	waitReady(t, "ecr", v1alpha1.ReasonRotated)
	registryHost := "111122223333.dkr.ecr.eu-west-1.amazonaws.com"
	for _, ns := range []string{"ecr-a", "ecr-b"} {
		s := waitSecret(t, ns, "ecr-pull", true)
		user, password := dockerLogin(t, s, registryHost)
		if got, err := registryemu.ManifestDigest(t.Context(), e.ecrHost+"/app:1", user, password, true, nil); err != nil || got != digest {
			t.Fatalf("%s: pulling with the ECR secret: %s, %v", ns, got, err)
		}
	}
	if _, ok := secret(t, "ecr-c", "ecr-pull"); ok {
		t.Fatal("ecr-c does not match the selector but got the secret")
	}
	if st := get(t, "ecr").Status; st.AuthType != "podIdentity" || st.Provider != "ecr" {
		t.Errorf("status authType %q provider %q", st.AuthType, st.Provider)
	}

	t.Run("a namespace that starts matching", func(t *testing.T) {
		start := time.Now()
		namespace(t, "ecr-late", map[string]string{"team": "b"})
		waitSecret(t, "ecr-late", "ecr-pull", true)
		t.Logf("a new matching namespace had its secret after %s", time.Since(start).Round(time.Millisecond))
		start = time.Now()
		relabel(t, "ecr-c", map[string]string{"team": "a"})
		waitSecret(t, "ecr-c", "ecr-pull", true)
		t.Logf("a relabelled namespace had its secret after %s", time.Since(start).Round(time.Millisecond))
	})
	t.Run("a namespace that stops matching", func(t *testing.T) {
		relabel(t, "ecr-a", map[string]string{"team": "z"})
		waitSecret(t, "ecr-a", "ecr-pull", false)
	})
	t.Run("a foreign secret of the same name", func(t *testing.T) {
		namespace(t, "ecr-foreign", nil)
		foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ecr-foreign", Name: "ecr-pull"}, StringData: map[string]string{"mine": "yes"}}
		if err := e.k8s.Create(t.Context(), foreign); err != nil {
			t.Fatal(err)
		}
		relabel(t, "ecr-foreign", map[string]string{"team": "b"})
		eventually(t, 20*time.Second, "the foreign secret reported", func() (bool, string) {
			st := get(t, "ecr").Status
			for _, f := range st.FailedNamespaces {
				if f.Namespace == "ecr-foreign" && strings.Contains(f.Reason, "was not created by this SecretRotator") {
					return ready(get(t, "ecr")).Reason == v1alpha1.ReasonPartiallyProvisioned, "reported, Ready " + ready(get(t, "ecr")).Reason
				}
			}
			return false, "failedNamespaces " + strings.TrimSpace(stringOf(st.FailedNamespaces))
		})
		s, _ := secret(t, "ecr-foreign", "ecr-pull")
		if string(s.Data["mine"]) != "yes" || s.Type != corev1.SecretTypeOpaque || s.Labels[rotator.LabelRotator] != "" {
			t.Fatalf("the foreign secret was touched: %+v", s)
		}
	})
	t.Run("rotator deleted", func(t *testing.T) {
		if err := e.k8s.Delete(t.Context(), get(t, "ecr")); err != nil {
			t.Fatal(err)
		}
		for _, ns := range []string{"ecr-b", "ecr-c", "ecr-late"} {
			waitSecret(t, ns, "ecr-pull", false)
		}
		if s, ok := secret(t, "ecr-foreign", "ecr-pull"); !ok || string(s.Data["mine"]) != "yes" {
			t.Fatal("deleting the rotator removed a secret it did not create")
		}
	})
	if n := e.emu.ECRTokenCalls() - callsBefore; n != 1 {
		t.Errorf("%d GetAuthorizationToken calls, want 1 for every namespace", n)
	}
}

func stringOf(f []v1alpha1.NamespaceFailure) string {
	var b strings.Builder
	for _, x := range f {
		b.WriteString(x.Namespace + ": " + x.Reason + "; ")
	}
	return b.String()
}

// IRSA: authType webIdentity from the rotator's own variables, and from a
// named ServiceAccount's annotation through TokenRequest.
func TestWebIdentity(t *testing.T) {
	t.Parallel()
	namespace(t, "irsa-target", map[string]string{"irsa": "yes"})
	caSecret(t, "podid-system", "irsa-artifactory-ca", e.artCA)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "podid-system", Name: "build-bot", Annotations: map[string]string{"eks.amazonaws.com/role-arn": e.irsaRole}}}
	if err := e.k8s.Create(t.Context(), sa); err != nil {
		t.Fatal(err)
	}
	for name, ref := range map[string]*v1alpha1.ServiceAccountReference{"irsa-env": nil, "irsa-sa": {Namespace: "podid-system", Name: "build-bot"}} {
		t.Run(name, func(t *testing.T) {
			create(t, &v1alpha1.SecretRotator{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: v1alpha1.SecretRotatorSpec{
					AuthType:          "webIdentity",
					ServiceAccount:    ref,
					ArtifactoryURL:    "https://" + e.artHost,
					NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"irsa": "yes"}},
					SecretName:        name,
					Security:          v1alpha1.SecurityConfig{Enabled: true, CertificateSecretName: "irsa-artifactory-ca"},
				},
			})
			rot := waitReady(t, name, v1alpha1.ReasonRotated)
			if rot.Status.AuthType != "webIdentity" || !strings.Contains(rot.Status.Identity, ":assumed-role/irsa-puller/") {
				t.Fatalf("status authType %q identity %q", rot.Status.AuthType, rot.Status.Identity)
			}
			user, _ := dockerLogin(t, waitSecret(t, "irsa-target", name, true), e.artHost)
			if user != "irsa-puller" {
				t.Fatalf("user %q", user)
			}
		})
	}
}

// A token is renewed before it expires.
func TestRenewalBeforeExpiry(t *testing.T) {
	t.Parallel()
	art := registryemu.NewArtifactory(e.emuURL, "short-admin")
	art.MaxExpiresIn = 8 * time.Second
	art.MapRole(e.podRole, "short-lived")
	srv := e.serve(httptest.NewTLSServer(art))
	host := strings.TrimPrefix(srv.URL, "https://")
	namespace(t, "renewal", map[string]string{"renewal": "yes"})
	caSecret(t, "podid-system", "short-ca", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	create(t, &v1alpha1.SecretRotator{
		ObjectMeta: metav1.ObjectMeta{Name: "short"},
		Spec: v1alpha1.SecretRotatorSpec{
			ArtifactoryURL:    host,
			NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"renewal": "yes"}},
			GeneratedSecrets:  []v1alpha1.GeneratedSecret{{SecretName: "short-token", SecretType: "generic"}},
			Security:          v1alpha1.SecurityConfig{Enabled: true, CertificateSecretName: "short-ca"},
		},
	})
	first := waitSecret(t, "renewal", "short-token", true)
	firstToken := string(first.Data["token"])
	eventually(t, 20*time.Second, "the token renewed", func() (bool, string) {
		s, _ := secret(t, "renewal", "short-token")
		return string(s.Data["token"]) != firstToken, "still the first token"
	})
	// The first token was still valid when its successor was written.
	if _, valid := art.Token(firstToken); !valid {
		t.Error("the token was replaced only after it expired")
	}
	if n := art.TokenCalls(); n < 2 || n > 3 {
		t.Errorf("%d token exchanges over about 6 s of 8-second tokens, want 2 or 3", n)
	}
}

// Over a minute of Artifactory failing, the rotator backs off: a handful
// of calls, not JFrog's sixty.
func TestFailingArtifactoryBacksOff(t *testing.T) {
	t.Parallel()
	art := registryemu.NewArtifactory(e.emuURL, "down-admin")
	art.MapRole(e.podRole, "down")
	art.Fail(-1)
	srv := e.serve(httptest.NewTLSServer(art))
	namespace(t, "backoff", map[string]string{"backoff": "yes"})
	create(t, &v1alpha1.SecretRotator{
		ObjectMeta: metav1.ObjectMeta{Name: "down"},
		Spec: v1alpha1.SecretRotatorSpec{
			ArtifactoryURL:    strings.TrimPrefix(srv.URL, "https://"),
			NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"backoff": "yes"}},
			SecretName:        "down-pull",
			Security:          v1alpha1.SecurityConfig{InsecureSkipVerify: true},
		},
	})
	rot := waitReady(t, "down", v1alpha1.ReasonTokenExchangeFailed)
	if c := ready(rot); c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "HTTP 503") || !strings.Contains(c.Message, "next attempt at") {
		t.Errorf("Ready: %s %s", c.Status, c.Message)
	}
	start := time.Now()
	// Namespace events must not bypass the backoff.
	for i := range 5 {
		relabel(t, "backoff", map[string]string{"backoff": "yes", "poke": string(rune('a' + i))})
		time.Sleep(time.Second)
	}
	time.Sleep(time.Until(start.Add(60 * time.Second)))
	calls := art.TokenCalls()
	t.Logf("%d token calls in the first 60 s of an outage", calls)
	// 0 s, then 10 s, 20 s, 40 s apart with ±20% jitter: 3 or 4 calls.
	if calls < 3 || calls > 4 {
		t.Fatalf("%d token calls over 60 s of failures, want 3 or 4", calls)
	}
	if _, ok := secret(t, "backoff", "down-pull"); ok {
		t.Fatal("a secret was written without a token")
	}
	// A call in flight at the 60 s mark is counted by Artifactory before
	// the rotator has its answer.
	eventually(t, 5*time.Second, "podid_rotator_failures_total equal to Artifactory's count", func() (bool, string) {
		v, _ := metric(t, "podid_rotator_failures_total", map[string]string{"rotator": "down", "reason": v1alpha1.ReasonTokenExchangeFailed})
		return int(v) == art.TokenCalls(), fmt.Sprintf("metric %v, Artifactory %d", v, art.TokenCalls())
	})
}

// TestJFrogGuideManifestVerbatim applies the SecretRotator of JFrog's EKS Pod
// Identity guide as written — an empty serviceAccount block beside
// authType: podIdentity, bare scope: entries, no security block — with only
// apiVersion changed and the guide's two placeholders filled, as kubectl
// sends it (nulls and all). Not parallel: the guide names the rotator
// secretrotator, as TestJFrogSeedManifest's does.
func TestJFrogGuideManifestVerbatim(t *testing.T) {
	raw, err := os.ReadFile("testdata/jfrog-guide-podidentity.yaml")
	if err != nil {
		t.Fatal(err)
	}
	namespace(t, "jfrog-guide", nil)
	filled := strings.NewReplacer("<NAMESPACE>", "jfrog-guide", "<JFROG_PLATFORM_URL>", e.artHost).Replace(string(raw))
	js, err := yaml.YAMLToJSON([]byte(filled))
	if err != nil {
		t.Fatal(err)
	}
	var obj unstructured.Unstructured
	if err := obj.UnmarshalJSON(js); err != nil {
		t.Fatal(err)
	}
	if err := e.k8s.Create(t.Context(), &obj); err != nil {
		t.Fatalf("the guide's manifest is refused: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.WithoutCancel(t.Context())
		e.k8s.Delete(ctx, &obj)
		wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			return apierrors.IsNotFound(e.k8s.Get(ctx, client.ObjectKey{Name: "secretrotator"}, &v1alpha1.SecretRotator{})), nil
		})
	})
	rot := waitReady(t, "secretrotator", v1alpha1.ReasonRotated)
	if rot.Status.AuthType != "podIdentity" {
		t.Errorf("status.authType = %q, want podIdentity", rot.Status.AuthType)
	}
	for _, name := range []string{"token-imagepull-secret", "token-generic-secret"} {
		s := waitSecret(t, "jfrog-guide", name, true)
		if s.Labels["labelName"] != "labelValue" || s.Annotations["annotationKey"] != "annotationValue" {
			t.Errorf("secret %s: labels %v annotations %v", name, s.Labels, s.Annotations)
		}
	}
}

// In a partition without the global STS endpoint (aws-cn here), the JFrog
// exchange is signed for the region's STS, in its partition's domain, and
// Artifactory is told which: Artifactory's replay to STS verifies it.
func TestJFrogRegionalSTS(t *testing.T) {
	t.Parallel()
	rot := seedIn(t, "jfrog-china")
	rot.Spec.AWSRegion = "cn-north-1"
	before := e.art.RegionalExchanges("cn-north-1")
	create(t, rot)
	waitReady(t, "jfrog-china", v1alpha1.ReasonRotated)
	waitSecret(t, "jfrog-china", "token-imagepull-secret", true)
	if n := e.art.RegionalExchanges("cn-north-1") - before; n < 1 {
		t.Errorf("Artifactory saw %d exchanges signed for cn-north-1's STS", n)
	}
}

// What the user should know of a token is said, not silently applied, as
// JFrog's operator does: iam:GetRole refused (the token then lasts the 3 h
// default) and a refreshTime longer than the token's life (renewed sooner)
// are in the Ready condition and Warning Events. Not parallel: the fault is
// the emulator's, for whichever GetRole comes next.
func TestJFrogTokenNotes(t *testing.T) {
	rot := seedIn(t, "jfrog-notes")
	rot.Spec.RefreshTime = &metav1.Duration{Duration: 4 * time.Hour}
	e.emu.InjectFault("GetRole", "AccessDenied", 1)
	create(t, rot)
	t.Cleanup(func() { e.k8s.Delete(context.WithoutCancel(t.Context()), rot) })
	got := waitReady(t, "jfrog-notes", v1alpha1.ReasonRotated)
	var msg string
	for _, c := range got.Status.Conditions {
		if c.Type == v1alpha1.ConditionReady {
			msg = c.Message
		}
	}
	for _, want := range []string{
		"iam:GetRole on role registry-puller was refused or failed (AccessDenied)", "the token lasts the 3h0m0s default", "allow iam:GetRole on the role itself",
		"refreshTime 4h0m0s is longer than three quarters of the token's life (3h0m0s): renewing every 2h15m0s instead",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("Ready says %q; want it to say %q", msg, want)
		}
	}
	if d := got.Status.TokenExpiresAt.Sub(got.Status.LastRotationTime.Time); d < 3*time.Hour-10*time.Second || d > 3*time.Hour+10*time.Second {
		t.Errorf("token lifetime %s, want the 3 h default", d)
	}
	reasons := map[string]bool{}
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		var list eventsv1.EventList
		if err := e.k8s.List(ctx, &list); err != nil {
			return false, err
		}
		for _, ev := range list.Items {
			if ev.Regarding.Name == "jfrog-notes" && ev.Type == corev1.EventTypeWarning {
				reasons[ev.Reason] = true
			}
		}
		return reasons[rotator.ReasonTokenLifetimeDefaulted] && reasons[rotator.ReasonRefreshTimeShortened], nil
	})
	if err != nil {
		t.Errorf("Warning events seen: %v; want %s and %s", reasons, rotator.ReasonTokenLifetimeDefaulted, rotator.ReasonRefreshTimeShortened)
	}
}

// The rotator's own assumeRoleChain, through the controller: its Pod
// Identity role, then a hop with an external ID; Artifactory maps the hop's
// role, and the secrets carry its user's token.
func TestJFrogAssumeRoleChain(t *testing.T) {
	t.Parallel()
	hop, err := e.createRole(t.Context(), "/", "registry-chain-hop", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"`+e.podRole+`"},"Action":["sts:AssumeRole","sts:TagSession"],"Condition":{"StringEquals":{"sts:ExternalId":"chain-ext"}}}]}`, 3600)
	if err != nil {
		t.Fatal(err)
	}
	e.art.MapRole(hop, "chain-puller")
	rot := seedIn(t, "jfrog-chain")
	rot.Spec.AssumeRoleChain = []v1alpha1.AssumeRoleHop{{RoleARN: hop, ExternalID: "chain-ext"}}
	create(t, rot)
	got := waitReady(t, "jfrog-chain", v1alpha1.ReasonRotated)
	if !strings.Contains(got.Status.Identity, ":assumed-role/registry-chain-hop/") {
		t.Errorf("status.identity = %q, want the hop's role", got.Status.Identity)
	}
	user, _ := dockerLogin(t, waitSecret(t, "jfrog-chain", "token-imagepull-secret", true), e.artHost)
	if user != "chain-puller" {
		t.Errorf("docker login user %q, want the hop role's JFrog user", user)
	}
}

// seedIn is the seed manifest as a rotator named name, for a namespace of
// the same name (created, with the Artifactory CA Secret) and only it.
func seedIn(t *testing.T, name string) *v1alpha1.SecretRotator {
	t.Helper()
	namespace(t, name, nil)
	caSecret(t, name, "artifactory-ca", e.artCA)
	rot := seed(t)
	rot.Name = name
	rot.Spec.NamespaceSelector.MatchLabels = map[string]string{"kubernetes.io/metadata.name": name}
	rot.Spec.Security.SecretNamespace = name
	return rot
}
