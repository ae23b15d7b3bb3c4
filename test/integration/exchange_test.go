package integration

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eksauth"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/sigv4"
	"github.com/podid/podid/internal/sts"
	"github.com/podid/podid/test/emu/awsemu"
)

// workload is a namespace with a ServiceAccount, its association, and a pod
// on node-a.
type workload struct {
	ns, sa string
	pod    *corev1.Pod
	pia    *v1alpha1.PodIdentityAssociation
}

// newWorkload creates everything a pod needs to get credentials for role,
// and waits until every replica's index knows the association.
func newWorkload(t *testing.T, role string, edit func(*v1alpha1.PodIdentityAssociation)) *workload {
	t.Helper()
	ctx := t.Context()
	w := &workload{ns: newNamespace(t), sa: "app"}
	if err := k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: w.sa}}); err != nil {
		t.Fatal(err)
	}
	if role != "" {
		w.pia = newAssociation(w.ns, w.sa, role)
		if edit != nil {
			edit(w.pia)
		}
		if err := k8s.Create(ctx, w.pia); err != nil {
			t.Fatal(err)
		}
		w.pia = waitForStatus(t, w.pia, v1alpha1.ReasonAssociated)
		eventually(t, "the index to hold the association", func(context.Context) (bool, error) {
			a, ok := srv.Index.Lookup(w.ns, w.sa)
			return ok && a.Generation == w.pia.Generation, nil
		})
	}
	w.pod = w.newPod(t, "app-0", "node-a")
	return w
}

func (w *workload) newPod(t *testing.T, name, node string) *corev1.Pod {
	t.Helper()
	pod, err := createPod(t.Context(), w.ns, name, w.sa, node)
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

func (w *workload) token(t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	tok, err := requestToken(t.Context(), pod, "pods.eks.amazonaws.com", 3600)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func exchange(t *testing.T, c *eksauth.Client, tok string) (*eksauth.AssumeRoleForPodIdentityOutput, error) {
	return c.AssumeRoleForPodIdentity(t.Context(), &eksauth.AssumeRoleForPodIdentityInput{ClusterName: aws.String(identity.ClusterName), Token: aws.String(tok)})
}

func TestExchangeIssuesCredentials(t *testing.T) {
	role := createRole(t, "exchange-app", awsemu.PodidTrust(serverARN))
	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`
	w := newWorkload(t, role, func(p *v1alpha1.PodIdentityAssociation) { p.Spec.Policy = policy })
	tok := w.token(t, w.pod)

	for name, c := range map[string]*eksauth.Client{"podid agent": agentClient("node-a"), "SigV4 access key": keyClient(stockKey)} {
		t.Run(name, func(t *testing.T) {
			before := time.Now()
			out, err := exchange(t, c, tok)
			if err != nil {
				t.Fatal(err)
			}
			if *out.Subject.Namespace != w.ns || *out.Subject.ServiceAccount != w.sa || *out.Audience != "pods.eks.amazonaws.com" {
				t.Errorf("subject/audience = %s/%s %s", *out.Subject.Namespace, *out.Subject.ServiceAccount, *out.Audience)
			}
			if *out.PodIdentityAssociation.AssociationId != w.pia.Status.AssociationID || *out.PodIdentityAssociation.AssociationArn != w.pia.Status.AssociationARN {
				t.Errorf("association = %s %s, want %s %s", *out.PodIdentityAssociation.AssociationId, *out.PodIdentityAssociation.AssociationArn, w.pia.Status.AssociationID, w.pia.Status.AssociationARN)
			}
			creds := out.Credentials
			if exp := creds.Expiration.Sub(before); exp < 59*time.Minute || exp > 61*time.Minute {
				t.Errorf("credentials expire in %s, want an hour", exp)
			}
			session, ok := emu.Session(*creds.AccessKeyId)
			if !ok {
				t.Fatal("the emulator did not issue these credentials")
			}
			if *creds.SecretAccessKey == "" || *creds.SessionToken != session.SessionToken {
				t.Error("secret or session token missing or not the emulator's")
			}
			wantPrefix := "eks-" + identity.ClusterName + "-app-0-"
			if !strings.HasPrefix(session.SessionName, wantPrefix) || len(session.SessionName) > 64 {
				t.Errorf("session name = %q, want %s<uuid>", session.SessionName, wantPrefix)
			}
			if *out.AssumedRoleUser.Arn != session.ARN || *out.AssumedRoleUser.AssumeRoleId != session.AssumedRoleID || !strings.HasSuffix(session.AssumedRoleID, ":"+session.SessionName) {
				t.Errorf("assumedRoleUser = %s %s; session %s %s", *out.AssumedRoleUser.Arn, *out.AssumedRoleUser.AssumeRoleId, session.ARN, session.AssumedRoleID)
			}
			wantTags := map[string]string{
				"eks-cluster-arn": identity.ClusterARN(), "eks-cluster-name": identity.ClusterName,
				"kubernetes-namespace": w.ns, "kubernetes-service-account": w.sa,
				"kubernetes-pod-name": "app-0", "kubernetes-pod-uid": string(w.pod.UID),
			}
			if len(session.Tags) != len(wantTags) || len(session.Transitive) != len(wantTags) {
				t.Errorf("tags = %v transitive %v", session.Tags, session.Transitive)
			}
			for k, v := range wantTags {
				if session.Tags[k] != v {
					t.Errorf("tag %s = %q, want %q", k, session.Tags[k], v)
				}
			}
			if session.Policy != policy || session.Caller != serverARN || session.RoleARN != role {
				t.Errorf("session policy %q caller %s role %s", session.Policy, session.Caller, session.RoleARN)
			}
			// The credentials work, and are the association's role.
			who, err := awssts.NewFromConfig(aws.Config{
				Region: identity.Region, BaseEndpoint: aws.String(emuEndpoint), RetryMaxAttempts: 1,
				Credentials: credentials.NewStaticCredentialsProvider(*creds.AccessKeyId, *creds.SecretAccessKey, *creds.SessionToken),
			}).GetCallerIdentity(t.Context(), &awssts.GetCallerIdentityInput{})
			if err != nil {
				t.Fatal(err)
			}
			if *who.Arn != "arn:aws:sts::"+identity.AccountID+":assumed-role/exchange-app/"+session.SessionName {
				t.Errorf("GetCallerIdentity = %s", *who.Arn)
			}
		})
	}
}

func TestExchangeChainsIntoTargetRole(t *testing.T) {
	hop := createRole(t, "exchange-hop", awsemu.PodidTrust(serverARN))
	w := newWorkload(t, hop, func(p *v1alpha1.PodIdentityAssociation) {
		// The target role is created once the external ID is known, below;
		// any valid ARN will do until then.
		p.Spec.TargetRoleARN = "arn:aws:iam::444455556666:role/exchange-target"
	})
	externalID := w.pia.Status.ExternalID
	if externalID == "" {
		t.Fatal("the association has no externalId")
	}
	// The target lives in another account; the emulator knows it through a
	// user of that account.
	target := createRoleAs(t, otherAccountAdmin, "exchange-target", awsemu.TrustPolicy(hop, `["sts:AssumeRole","sts:TagSession"]`, `{"StringEquals":{"sts:ExternalId":"`+externalID+`"}}`))
	if target != w.pia.Spec.TargetRoleARN {
		t.Fatalf("target role %s, association names %s", target, w.pia.Spec.TargetRoleARN)
	}
	res, err := exchange(t, agentClient("node-a"), w.token(t, w.pod))
	if err != nil {
		t.Fatal(err)
	}
	session, _ := emu.Session(*res.Credentials.AccessKeyId)
	if session.RoleARN != target || session.ExternalID != externalID || session.Tags["kubernetes-namespace"] != w.ns {
		t.Fatalf("target session = role %s externalId %s tags %v", session.RoleARN, session.ExternalID, session.Tags)
	}
	if !strings.HasPrefix(session.Caller, "arn:aws:sts::"+identity.AccountID+":assumed-role/exchange-hop/") {
		t.Fatalf("target assumed by %s, want the first role's session", session.Caller)
	}
	if *res.AssumedRoleUser.Arn != session.ARN {
		t.Fatalf("assumedRoleUser %s, want the target session %s", *res.AssumedRoleUser.Arn, session.ARN)
	}
}

func TestExchangeWithoutSessionTags(t *testing.T) {
	// A role that does not allow sts:TagSession works only with tags off.
	role := createRole(t, "exchange-no-tags", awsemu.TrustPolicy(serverARN, `"sts:AssumeRole"`, ""))
	w := newWorkload(t, role, nil)
	if _, err := exchange(t, agentClient("node-a"), w.token(t, w.pod)); errorCode(err) != "AccessDeniedException" {
		t.Fatalf("with session tags: %v", err)
	}
	pia := w.pia.DeepCopy()
	if err := updateLatest(t, pia, func() { pia.Spec.DisableSessionTags = true }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the index to see disableSessionTags", func(context.Context) (bool, error) {
		a, ok := srv.Index.Lookup(w.ns, w.sa)
		return ok && a.DisableSessionTags, nil
	})
	out, err := exchange(t, agentClient("node-a"), w.token(t, w.pod))
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := emu.Session(*out.Credentials.AccessKeyId); len(s.Tags) != 0 {
		t.Fatalf("session tags = %v, want none", s.Tags)
	}
}

func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	if err == nil {
		return ""
	}
	return "not an API error: " + err.Error()
}

func statusOf(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// forge signs claims derived from pod's with the cluster's key.
func (f *forger) forge(t *testing.T, pod *corev1.Pod, mutate func(c *jwt.Claims, kube map[string]any)) string {
	t.Helper()
	now := time.Now()
	std := jwt.Claims{
		Issuer: f.issuer, Subject: "system:serviceaccount:" + pod.Namespace + ":" + pod.Spec.ServiceAccountName,
		Audience: jwt.Audience{"pods.eks.amazonaws.com"}, Expiry: jwt.NewNumericDate(now.Add(time.Hour)),
		NotBefore: jwt.NewNumericDate(now.Add(-time.Second)), IssuedAt: jwt.NewNumericDate(now.Add(-time.Second)),
	}
	kube := map[string]any{
		"namespace":      pod.Namespace,
		"pod":            map[string]string{"name": pod.Name, "uid": string(pod.UID)},
		"serviceaccount": map[string]string{"name": pod.Spec.ServiceAccountName, "uid": "sa"},
	}
	if mutate != nil {
		mutate(&std, kube)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: f.alg, Key: f.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", f.kid))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(sig).Claims(std).Claims(map[string]any{"kubernetes.io": kube}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestExchangeRefusals(t *testing.T) {
	role := createRole(t, "exchange-refusals", awsemu.PodidTrust(serverARN))
	w := newWorkload(t, role, nil)
	f := newForger(t)
	good := w.token(t, w.pod)
	other := createRole(t, "exchange-untrusted", awsemu.TrustPolicy("arn:aws:iam::"+identity.AccountID+":user/nobody", `"sts:AssumeRole"`, ""))
	untrusted := newWorkload(t, other, nil)

	// A forged token signed by an attacker's key, with the cluster's kid.
	attackerKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	badSig := func() string {
		sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: attackerKey}, (&jose.SignerOptions{}).WithHeader("kid", f.kid))
		raw, _ := jwt.Signed(sig).Claims(jwt.Claims{Issuer: f.issuer, Subject: "system:serviceaccount:" + w.ns + ":app", Audience: jwt.Audience{"pods.eks.amazonaws.com"}, Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}).Serialize()
		return raw
	}()
	// The alg:none and HS256 tricks reuse a genuine token's claims.
	payload := strings.Split(good, ".")[1]
	algNone := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"`+f.kid+`"}`)) + "." + payload + "."
	pubDER, _ := x509.MarshalPKIXPublicKey(f.key.Public())
	hmacSigner, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pubDER}, (&jose.SignerOptions{}).WithHeader("kid", f.kid))
	var claims map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	json.Unmarshal(raw, &claims)
	hs256, _ := jwt.Signed(hmacSigner).Claims(claims).Serialize()

	// A pod that is deleted after its token was issued.
	gone := w.newPod(t, "gone", "node-a")
	goneToken := w.token(t, gone)
	if err := k8s.Delete(t.Context(), gone, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	// A pod on the other node.
	onB := w.newPod(t, "on-node-b", "node-b")
	// A pod whose ServiceAccount has no association.
	unassociated := newWorkload(t, "", nil)
	// A token of the right ServiceAccount that is not bound to any pod.
	unbound, err := clientset().CoreV1().ServiceAccounts(w.ns).CreateToken(t.Context(), w.sa, unboundTokenRequest(), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	notAgentPod, err := createPod(t.Context(), agentNamespace, "impostor", "not-an-agent", "node-a")
	if err != nil {
		t.Fatal(err)
	}
	impostorToken, err := requestToken(t.Context(), notAgentPod, "podid.io/agent", 3600)
	if err != nil {
		t.Fatal(err)
	}
	wrongAudience, err := requestToken(t.Context(), w.pod, "sts.amazonaws.com", 3600)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name    string
		client  *eksauth.Client
		cluster string
		token   string
		before  func(t *testing.T)
		code    string
		status  int
	}{
		{name: "wrong audience", token: wrongAudience, code: "InvalidTokenException", status: 400},
		{name: "wrong issuer", token: f.forge(t, w.pod, func(c *jwt.Claims, _ map[string]any) { c.Issuer = "https://evil.example" }), code: "InvalidTokenException", status: 400},
		{name: "expired", token: f.forge(t, w.pod, func(c *jwt.Claims, _ map[string]any) {
			c.Expiry = jwt.NewNumericDate(time.Now().Add(-time.Hour))
			c.IssuedAt, c.NotBefore = jwt.NewNumericDate(time.Now().Add(-2*time.Hour)), jwt.NewNumericDate(time.Now().Add(-2*time.Hour))
		}), code: "ExpiredTokenException", status: 400},
		{name: "expired by the clock", token: good, before: func(t *testing.T) { apiClock.Shift(t, 2*time.Hour) }, code: "ExpiredTokenException", status: 400},
		{name: "not yet valid", token: f.forge(t, w.pod, func(c *jwt.Claims, _ map[string]any) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour)) }), code: "InvalidTokenException", status: 400},
		{name: "bad signature", token: badSig, code: "InvalidTokenException", status: 400},
		{name: "alg none", token: algNone, code: "InvalidTokenException", status: 400},
		{name: "HS256 keyed with the public key", token: hs256, code: "InvalidTokenException", status: 400},
		{name: "pod deleted", token: goneToken, before: func(t *testing.T) {
			eventually(t, "the pod to be gone", func(ctx context.Context) (bool, error) {
				err := k8s.Get(ctx, client.ObjectKeyFromObject(gone), &corev1.Pod{})
				return client.IgnoreNotFound(err) == nil && err != nil, nil
			})
		}, code: "InvalidTokenException", status: 400},
		{name: "pod recreated with the same name", token: f.forge(t, w.pod, func(_ *jwt.Claims, k map[string]any) {
			k["pod"] = map[string]string{"name": w.pod.Name, "uid": "00000000-0000-0000-0000-000000000000"}
		}), code: "InvalidTokenException", status: 400},
		{name: "pod on another node", token: w.token(t, onB), code: "AccessDeniedException", status: 400},
		{name: "node-bound key, pod elsewhere", client: keyClient(nodeBoundKey), token: good, code: "AccessDeniedException", status: 400},
		{name: "no association", token: unassociated.token(t, unassociated.pod), code: "ResourceNotFoundException", status: 404},
		{name: "wrong cluster name", cluster: "another-cluster", token: good, code: "ResourceNotFoundException", status: 404},
		{name: "invalid cluster name", cluster: "-bad", token: good, code: "InvalidParameterException", status: 400},
		{name: "token not bound to a pod", token: unbound.Status.Token, code: "InvalidTokenException", status: 400},
		{name: "unauthenticated caller", client: eksauthClient(aws.AnonymousCredentials{}, http.DefaultTransport), token: good, code: "AccessDeniedException", status: 400},
		{name: "caller is not an agent", client: eksauthClient(aws.AnonymousCredentials{}, bearerTransport{impostorToken}), token: good, code: "AccessDeniedException", status: 400},
		{name: "caller presents a pod token as agent token", client: eksauthClient(aws.AnonymousCredentials{}, bearerTransport{good}), token: good, code: "AccessDeniedException", status: 400},
		{name: "wrong secret key", client: keyClient(sigv4.Key{AccessKeyID: stockKey.AccessKeyID, SecretAccessKey: "wrong"}), token: good, code: "InvalidSignatureException", status: 403},
		{name: "unknown access key", client: keyClient(sigv4.Key{AccessKeyID: "AKIAUNKNOWNKEY000001", SecretAccessKey: "x"}), token: good, code: "UnrecognizedClientException", status: 403},
		{name: "role does not trust podid", token: untrusted.token(t, untrusted.pod), code: "AccessDeniedException", status: 400},
		{name: "STS throttles", token: good, before: func(*testing.T) { emu.InjectFault("AssumeRole", "Throttling", sts.MaxAttempts) }, code: "ThrottlingException", status: 429},
		{name: "STS fails", token: good, before: func(*testing.T) { emu.InjectFault("AssumeRole", "InternalFailure", sts.MaxAttempts) }, code: "ServiceUnavailableException", status: 503},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.before != nil {
				c.before(t)
			}
			cl := c.client
			if cl == nil {
				cl = agentClient("node-a")
			}
			cluster := c.cluster
			if cluster == "" {
				cluster = identity.ClusterName
			}
			_, err := cl.AssumeRoleForPodIdentity(t.Context(), &eksauth.AssumeRoleForPodIdentityInput{ClusterName: aws.String(cluster), Token: aws.String(c.token)})
			if got := errorCode(err); got != c.code {
				t.Fatalf("error = %q, want %q (%v)", got, c.code, err)
			}
			if got := statusOf(err); got != c.status {
				t.Fatalf("status = %d, want %d", got, c.status)
			}
			var apiErr smithy.APIError
			errors.As(err, &apiErr)
			if _, generic := apiErr.(*smithy.GenericAPIError); generic && strings.HasSuffix(c.code, "Exception") && c.status != 403 {
				t.Fatalf("the eksauth client did not get a typed error for %s", c.code)
			}
			if apiErr.ErrorMessage() == "" {
				t.Fatal("the error has no message")
			}
		})
	}
	// The good token still works after all that: refusals changed nothing.
	if _, err := exchange(t, agentClient("node-a"), good); err != nil {
		t.Fatalf("the genuine token after the refusals: %v", err)
	}
}

// TestExchangeMalformedRequests sends what no SDK would.
func TestExchangeMalformedRequests(t *testing.T) {
	url := srv.APIURL + "/clusters/" + identity.ClusterName + "/assume-role-for-pod-identity"
	cases := []struct {
		name, method, url, body, code string
		status                        int
	}{
		{"not JSON", "POST", url, "{token:", "InvalidRequestException", 400},
		{"wrong type", "POST", url, `{"token":42}`, "InvalidRequestException", 400},
		{"trailing data", "POST", url, `{"token":"a"} {}`, "InvalidRequestException", 400},
		{"empty body", "POST", url, "", "InvalidRequestException", 400},
		{"no token", "POST", url, `{}`, "InvalidParameterException", 400},
		{"oversized", "POST", url, `{"token":"` + strings.Repeat("a", 70<<10) + `"}`, "InvalidRequestException", 400},
		{"garbage token", "POST", url, `{"token":"garbage"}`, "InvalidTokenException", 400},
		{"unknown operation", "POST", srv.APIURL + "/clusters/x/other", `{}`, "UnknownOperationException", 404},
		{"wrong method", "GET", url, "", "UnknownOperationException", 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), c.method, c.url, strings.NewReader(c.body))
			req.Header.Set("Authorization", "Bearer "+agentTokens["node-a"])
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var msg struct{ Message string }
			if resp.StatusCode != c.status || resp.Header.Get("X-Amzn-ErrorType") != c.code || json.Unmarshal(body, &msg) != nil || msg.Message == "" {
				t.Fatalf("got %d %q %s, want %d %s with a message", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), body, c.status, c.code)
			}
		})
	}
}
