package integration

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eksauth"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/go-jose/go-jose/v4"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/podid/podid/internal/accesskey"
	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/internal/sigv4"
	"github.com/podid/podid/internal/sts"
	"github.com/podid/podid/test/emu/awsemu"
)

// The exchange's world: the STS emulator, podid server's own AWS user, two
// nodes each with a podid agent pod, and access keys for SigV4 callers.
var (
	emu               *awsemu.Emulator
	emuEndpoint       string
	emuAdmin          = awsemu.User{Name: "admin", AccessKeyID: "AKIAINTEGRATIONADMIN", SecretAccessKey: "integration-admin-secret"}
	otherAccountAdmin = awsemu.User{Account: "444455556666", Name: "admin", AccessKeyID: "AKIAINTEGRATIONOTHER", SecretAccessKey: "integration-other-secret"}
	serverUser        = awsemu.User{Name: "podid-server", AccessKeyID: "AKIAINTEGRATIONPODID", SecretAccessKey: "integration-podid-secret"}
	serverARN         = "arn:aws:iam::" + identity.AccountID + ":user/podid-server"
	// stsThrottled counts the throttling podid server's STS client met.
	stsThrottled = sts.ThrottledCounter()

	stockKey = sigv4.Key{AccessKeyID: "AKIASTOCKAGENT000001", SecretAccessKey: "stock-agent-secret-0123456789", Principal: accesskey.Entry{Name: "stock-agent"}}
	// eksAdminKey acts in Kubernetes as a cluster administrator; nobodyKey as
	// a user RBAC grants nothing.
	eksAdminKey = sigv4.Key{AccessKeyID: "AKIAEKSADMIN00000001", SecretAccessKey: "eks-admin-secret-0123456789", Principal: accesskey.Entry{Name: "eks-admin", User: "eks-admin", Groups: []string{"system:masters"}}}
	// passRoleKey acts as user passrole-admin, whom a test makes a
	// namespace's association admin.
	passRoleKey = sigv4.Key{AccessKeyID: "AKIAPASSROLEADMIN001", SecretAccessKey: "passrole-admin-secret-0123456789", Principal: accesskey.Entry{Name: "passrole-admin", User: "passrole-admin"}}
	// clusterPassRoleKey acts as a user given cluster associations (and, later, roles) cluster-wide.
	clusterPassRoleKey = sigv4.Key{AccessKeyID: "AKIACLUSTERPASSROLE1", SecretAccessKey: "cluster-passrole-secret-0123456789", Principal: accesskey.Entry{Name: "cluster-passrole-admin", User: "cluster-passrole-admin"}}
	nobodyKey          = sigv4.Key{AccessKeyID: "AKIAEKSNOBODY0000001", SecretAccessKey: "eks-nobody-secret-0123456789", Principal: accesskey.Entry{Name: "nobody"}}
	nodeBoundKey       = sigv4.Key{AccessKeyID: "AKIASTOCKAGENTNODEB1", SecretAccessKey: "stock-agent-node-b-secret-0123", Principal: accesskey.Entry{Name: "stock-agent-node-b", Node: "node-b"}}

	agentNamespace = "podid-system"
	agentTokens    = map[string]string{} // node → the agent's own token

	// apiClock is the clock the exchange checks tokens and signatures with;
	// tests shift it to see expiry without waiting.
	apiClock = &shiftedClock{}
)

// associationLimit is low enough for a test to reach it.
const associationLimit = 400

type shiftedClock struct {
	mu    sync.Mutex
	shift time.Duration
}

func (c *shiftedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.shift)
}

// Shift moves the exchange's clock until the test ends.
func (c *shiftedClock) Shift(t *testing.T, d time.Duration) {
	c.mu.Lock()
	c.shift = d
	c.mu.Unlock()
	t.Cleanup(func() { c.mu.Lock(); c.shift = 0; c.mu.Unlock() })
}

func startEmulator(ctx context.Context) error {
	emu = awsemu.New(awsemu.Options{AccountID: identity.AccountID, Users: []awsemu.User{emuAdmin, otherAccountAdmin, serverUser}})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	emuEndpoint = "http://" + l.Addr().String()
	go emu.Serve(ctx, l)
	return nil
}

func awsConfig(k awsemu.User) aws.Config {
	return aws.Config{
		Region:           identity.Region,
		Credentials:      credentials.NewStaticCredentialsProvider(k.AccessKeyID, k.SecretAccessKey, ""),
		BaseEndpoint:     aws.String(emuEndpoint),
		RetryMaxAttempts: 1,
	}
}

func apiOptions() server.APIOptions {
	return server.APIOptions{
		Addr:                 "127.0.0.1:0",
		InsecureHTTP:         true,
		AgentServiceAccounts: []string{agentNamespace + "/podid-agent"},
		AccessKeys:           []sigv4.Key{stockKey, nodeBoundKey, eksAdminKey, nobodyKey, passRoleKey, clusterPassRoleKey},
		AssociationLimit:     associationLimit,
		// podid server's own retry policy, with short backoffs.
		STS: awssts.NewFromConfig(awsConfig(serverUser), func(o *awssts.Options) {
			o.RetryMaxAttempts = 0
			o.Retryer = sts.NewRetryer(stsThrottled, 20*time.Millisecond)()
		}),
		IAM:               iam.NewFromConfig(awsConfig(serverUser)),
		IdentityNamespace: agentNamespace,
		Now:               apiClock.Now,
	}
}

func clientset() *kubernetes.Clientset {
	return kubernetes.NewForConfigOrDie(cluster.Config)
}

// setupNodesAndAgents creates node-a and node-b, and on each a podid agent
// pod with its own token.
func setupNodesAndAgents(ctx context.Context) error {
	cs := clientset()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: agentNamespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	for _, sa := range []string{"podid-agent", "not-an-agent"} {
		if _, err := cs.CoreV1().ServiceAccounts(agentNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	for _, node := range []string{"node-a", "node-b"} {
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		pod, err := createPod(ctx, agentNamespace, "podid-agent-"+node, "podid-agent", node)
		if err != nil {
			return err
		}
		tok, err := requestToken(ctx, pod, "podid.io/agent", 48*3600)
		if err != nil {
			return err
		}
		agentTokens[node] = tok
	}
	return nil
}

func createPod(ctx context.Context, namespace, name, serviceAccount, node string) (*corev1.Pod, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PodSpec{
			ServiceAccountName: serviceAccount,
			NodeName:           node,
			Containers:         []corev1.Container{{Name: "app", Image: "registry.example/app:1"}},
		},
	}
	return clientset().CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{})
}

// requestToken asks the TokenRequest API for a token bound to pod, as the
// kubelet does for a projected volume.
func requestToken(ctx context.Context, pod *corev1.Pod, audience string, seconds int64) (string, error) {
	tr, err := clientset().CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, pod.Spec.ServiceAccountName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         []string{audience},
			ExpirationSeconds: ptr.To(seconds),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return tr.Status.Token, nil
}

func unboundTokenRequest() *authenticationv1.TokenRequest {
	return &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"pods.eks.amazonaws.com"}, ExpirationSeconds: ptr.To(int64(3600))}}
}

// bearerTransport adds a podid agent's token, as the agent does.
type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if b.token != "" {
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// agentClient is an eksauth client speaking as the agent on node.
func agentClient(node string) *eksauth.Client {
	return eksauthClient(aws.AnonymousCredentials{}, bearerTransport{agentTokens[node]})
}

// keyClient is an eksauth client signing with key, as the stock agent does.
func keyClient(k sigv4.Key) *eksauth.Client {
	return eksauthClient(credentials.NewStaticCredentialsProvider(k.AccessKeyID, k.SecretAccessKey, ""), http.DefaultTransport)
}

func eksauthClient(creds aws.CredentialsProvider, rt http.RoundTripper) *eksauth.Client {
	return eksauth.New(eksauth.Options{
		Region:           identity.Region,
		BaseEndpoint:     aws.String(srv.APIURL),
		Credentials:      creds,
		HTTPClient:       &http.Client{Transport: rt},
		RetryMaxAttempts: 1,
	})
}

// createRole makes a role in the emulator trusted as the policy says.
func createRole(t *testing.T, name, trustPolicy string) string {
	t.Helper()
	return createRoleAs(t, emuAdmin, name, trustPolicy)
}

// createRoleAs makes the role in user's account.
func createRoleAs(t *testing.T, user awsemu.User, name, trustPolicy string) string {
	t.Helper()
	out, err := iam.NewFromConfig(awsConfig(user)).CreateRole(t.Context(), &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(trustPolicy)})
	if err != nil {
		t.Fatal(err)
	}
	return *out.Role.Arn
}

// forger signs tokens with the cluster's own ServiceAccount key, to make
// tokens the API server would never issue.
type forger struct {
	key    crypto.Signer
	alg    jose.SignatureAlgorithm
	kid    string
	issuer string
}

func newForger(t *testing.T) *forger {
	t.Helper()
	pemBytes, err := os.ReadFile(cluster.ServiceAccountSigningKeyFile())
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatal("no PEM block in the signing key file")
	}
	var key crypto.Signer
	alg := jose.RS256
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		key = k
	} else if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		key, alg = k, jose.ES256
	} else if k8, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		key = k8.(crypto.Signer)
		if _, ok := key.(*ecdsa.PrivateKey); ok {
			alg = jose.ES256
		}
	} else {
		t.Fatalf("parsing the signing key: %v", err)
	}
	httpClient, err := rest.HTTPClientFor(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string, into any) {
		req, _ := http.NewRequest("GET", strings.TrimSuffix(cluster.Config.Host, "/")+path, nil)
		req.Header.Set("Accept", "application/json, application/jwk-set+json")
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(body, into); err != nil {
			t.Fatalf("GET %s: %s: %v: %.200s", path, resp.Status, err, body)
		}
	}
	var jwks jose.JSONWebKeySet
	get("/openid/v1/jwks", &jwks)
	var disc struct {
		Issuer string `json:"issuer"`
	}
	get("/.well-known/openid-configuration", &disc)
	for _, k := range jwks.Keys {
		if pub, ok := k.Key.(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(key.Public()) {
			return &forger{key: key, alg: alg, kid: k.KeyID, issuer: disc.Issuer}
		}
	}
	t.Fatal(errors.New("the signing key is not in the cluster's JWKS"))
	return nil
}
