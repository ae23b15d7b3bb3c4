package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/internal/sts"
	"github.com/podid/podid/internal/token"
)

// These tests drive the handler in memory with fakes for the pods and STS;
// test/integration drives it on a real API server and the STS emulator.

const issuer = "https://kubernetes.default.svc"

var identity = association.Identity{Partition: "aws", Region: "us-east-1", AccountID: "111122223333", ClusterName: "unit"}

type fakePods map[string]PodInfo // "ns/name" → pod

func (f fakePods) PodByName(_ context.Context, ns, name string) (*PodInfo, error) {
	p, ok := f[ns+"/"+name]
	if !ok {
		return nil, ErrPodGone
	}
	return &p, nil
}

func (f fakePods) Pod(_ context.Context, ns, name, uid string) (*PodInfo, error) {
	p, ok := f[ns+"/"+name]
	if !ok || p.UID != uid {
		return nil, ErrPodGone
	}
	return &p, nil
}

type fakeAssumer struct {
	mu    sync.Mutex
	calls int
}

func (f *fakeAssumer) Assume(_ context.Context, a *association.Association, pod sts.Pod) (*sts.Result, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	return &sts.Result{
		Credentials:    sts.Credentials{AccessKeyID: "ASIAFAKE", SecretAccessKey: "secret", SessionToken: "token", Expiration: time.Unix(1795000000, 0)},
		AssumedRoleARN: "arn:aws:sts::111122223333:assumed-role/app/eks-unit-" + pod.Name,
		AssumedRoleID:  "AROAFAKE:eks-unit-" + pod.Name, SessionName: "eks-unit-" + pod.Name, RoleARN: a.RoleARN,
	}, nil
}

type fixture struct {
	handler *Handler
	key     *rsa.PrivateKey
	assumer *fakeAssumer
	reg     *prometheus.Registry
	agent   string
}

func newFixture(t testing.TB) *fixture {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keys := token.NewKeySet(func(context.Context) (*jose.JSONWebKeySet, error) {
		return &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}}, nil
	}, token.KeySetOptions{})
	index := association.NewIndex(identity)
	index.Upsert(&v1alpha1.PodIdentityAssociation{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "app", UID: types.UID("uid-1"), Generation: 1},
		Spec:       v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "app", RoleARN: "arn:aws:iam::111122223333:role/app"},
	})
	f := &fixture{key: key, assumer: &fakeAssumer{}, reg: prometheus.NewRegistry()}
	f.handler = NewHandler(Options{
		Identity: identity, Index: index,
		Tokens:               token.NewVerifier(token.Options{Issuer: issuer, Keys: keys}),
		AgentServiceAccounts: []string{"podid-system/podid-agent"},
		Pods: fakePods{
			"demo/app-0":                 {UID: "pod-uid", NodeName: "node-a"},
			"demo/app-b":                 {UID: "pod-b", NodeName: "node-b"},
			"podid-system/podid-agent-a": {UID: "agent-uid", NodeName: "node-a"},
		},
		Assumer:    f.assumer,
		Registerer: f.reg,
	})
	f.agent = f.sign(t, "podid-system", "podid-agent", "podid-agent-a", "agent-uid", DefaultAgentAudience)
	return f
}

func (f *fixture) sign(t testing.TB, ns, sa, pod, uid, audience string) string {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: f.key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(sig).Claims(jwt.Claims{
		Issuer: issuer, Subject: "system:serviceaccount:" + ns + ":" + sa, Audience: jwt.Audience{audience},
		Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour)), IssuedAt: jwt.NewNumericDate(time.Now()),
	}).Claims(map[string]any{"kubernetes.io": map[string]any{
		"namespace": ns, "serviceaccount": map[string]string{"name": sa, "uid": "sa"}, "pod": map[string]string{"name": pod, "uid": uid},
	}}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (f *fixture) call(t testing.TB, agentToken, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", "/clusters/unit/assume-role-for-pod-identity", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+agentToken)
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	return rec
}

func TestResponseShape(t *testing.T) {
	f := newFixture(t)
	rec := f.call(t, f.agent, `{"token":"`+f.sign(t, "demo", "app", "app-0", "pod-uid", podidentity.Audience)+`"}`)
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	// expiration must be a JSON number: the Go SDK rejects a string.
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if exp, ok := got["credentials"].(map[string]any)["expiration"].(float64); !ok || exp != 1795000000 {
		t.Fatalf("expiration = %#v", got["credentials"])
	}
	for _, field := range []string{"subject", "audience", "podIdentityAssociation", "assumedRoleUser", "credentials"} {
		if _, ok := got[field]; !ok {
			t.Errorf("response lacks %s: %s", field, rec.Body)
		}
	}
	if n := testutil.ToFloat64(f.handler.metrics.requests.WithLabelValues("issued", "")); n != 1 {
		t.Fatalf("issued counter = %v", n)
	}
}

func TestRefusalsAreCountedAndNeverReachSTS(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct{ agent, body, code string }{
		{f.agent, `{"token":"` + f.sign(t, "demo", "app", "app-b", "pod-b", podidentity.Audience) + `"}`, AccessDenied},
		{f.agent, `{"token":"` + f.sign(t, "demo", "app", "app-0", "other-uid", podidentity.Audience) + `"}`, InvalidToken},
		{f.agent, `{"token":"` + f.sign(t, "demo", "nobody", "app-0", "pod-uid", podidentity.Audience) + `"}`, ResourceNotFound},
		{"not-a-token", `{"token":"x"}`, AccessDenied},
	} {
		rec := f.call(t, c.agent, c.body)
		if got := rec.Header().Get("X-Amzn-ErrorType"); got != c.code {
			t.Errorf("got %s (%s), want %s", got, rec.Body, c.code)
		}
	}
	if f.assumer.calls != 0 {
		t.Fatalf("STS was called %d times for refused requests", f.assumer.calls)
	}
	if n := testutil.ToFloat64(f.handler.metrics.requests.WithLabelValues("refused", AccessDenied)); n != 2 {
		t.Fatalf("refused AccessDenied counter = %v", n)
	}
}

// FuzzDecodeRequest: any body either decodes into a request with a token or
// is refused with an InvalidRequest/InvalidParameter error; never a panic.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{`{"token":"a.b.c"}`, `{"token":"x","eksNodeName":"n","instanceId":"i","zone":"z"}`, `{}`, `{"token":42}`, `[]`, ``, `{"token":"a"} {}`, "\x00"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodeRequest(body)
		if err != nil {
			e := toAPIError(err)
			if e.Code != InvalidRequest && e.Code != InvalidParameter {
				t.Fatalf("decode error mapped to %s", e.Code)
			}
			return
		}
		if r.Token == "" {
			t.Fatal("decoded a request without a token")
		}
	})
}

// BenchmarkVerifyAndLookup measures the server's own work per exchange:
// caller check (cached agent), pod-token signature (RS256) and claims,
// pod check, node binding and association lookup, up to where STS would be
// called (a fake answers). Figures: go test ./internal/auth -bench . -benchtime 5s
func BenchmarkVerifyAndLookup(b *testing.B) {
	f := newFixture(b)
	body := `{"token":"` + f.sign(b, "demo", "app", "app-0", "pod-uid", podidentity.Audience) + `"}`
	b.ReportAllocs()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		latencies := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			rec := f.call(b, f.agent, body)
			latencies = append(latencies, time.Since(start))
			if rec.Code != 200 {
				b.Fatalf("%d %s", rec.Code, rec.Body)
			}
		}
		report(b, latencies)
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if rec := f.call(b, f.agent, body); rec.Code != 200 {
					b.Errorf("%d", rec.Code)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
}

func report(b *testing.B, latencies []time.Duration) {
	if len(latencies) == 0 {
		return
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

var _ http.Handler = (*Handler)(nil)
