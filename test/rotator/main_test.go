// Package rotator tests `podid rotator` against a real etcd and
// kube-apiserver, with the AWS emulator (STS, IAM, ECR, web identity), the
// emulated Artifactory (its passwordless exchange replayed to the STS
// emulator, over TLS) and emulated registries that admit only the tokens
// those issue. Everything is reached through real clients.
package rotator

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/internal/rotator"
	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/emu/awsemu/awsemutest"
	"github.com/podid/podid/test/emu/registryemu"
	"github.com/podid/podid/test/harness/localcluster"
)

const (
	account  = "111122223333"
	adminKey = "AKIAPODIDROTATORADM1"
	adminSec = "rotator-admin-secret"
)

// env is everything the tests share.
type env struct {
	cluster   *localcluster.Cluster
	k8s       client.Client
	clientset kubernetes.Interface
	emu       *awsemu.Emulator
	emuURL    string
	// art is the Artifactory the seed manifest names, over TLS.
	art     *registryemu.Artifactory
	artHost string
	artCA   []byte
	// ecrReg is account's ECR registry; ecrHost its local address.
	ecrReg  *registryemu.Registry
	ecrHost string
	// podRole is the Pod Identity role (with a path), irsaRole the IRSA one.
	podRole, irsaRole string
	// agentURL and agentTokenFile are the Pod Identity variables' values.
	agentURL, agentTokenFile string
	// metrics is the rotator's registry.
	metrics *prometheus.Registry
	dir     string
	mu      sync.Mutex
	servers []*httptest.Server
}

// serve remembers srv to close it when the tests end.
func (e *env) serve(srv *httptest.Server) *httptest.Server {
	e.mu.Lock()
	e.servers = append(e.servers, srv)
	e.mu.Unlock()
	return srv
}

var e *env

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var err error
	e, err = setup(ctx)
	if e != nil && e.cluster != nil {
		defer e.cluster.Stop()
	}
	if e != nil {
		defer os.RemoveAll(e.dir)
		defer func() {
			for _, s := range e.servers {
				s.Close()
			}
		}()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rotator tests:", err)
		return 1
	}
	return m.Run()
}

func setup(ctx context.Context) (*env, error) {
	e := &env{metrics: prometheus.NewRegistry()}
	var err error
	if e.dir, err = os.MkdirTemp("", "podid-rotator-"); err != nil {
		return nil, err
	}
	if e.cluster, err = localcluster.Start(localcluster.Options{}); err != nil {
		return e, err
	}
	e.k8s = e.cluster.Client
	if e.clientset, err = kubernetes.NewForConfig(e.cluster.Config); err != nil {
		return e, err
	}

	// AWS: the emulator, trusting the API server's ServiceAccount tokens
	// as an OIDC provider (IRSA).
	e.emu = awsemu.New(awsemu.Options{AccountID: account, Users: []awsemu.User{{Name: "admin", AccessKeyID: adminKey, SecretAccessKey: adminSec}}})
	emuSrv := e.serve(httptest.NewServer(e.emu))
	e.emuURL = emuSrv.URL
	issuer, keys, err := e.oidc(ctx)
	if err != nil {
		return e, err
	}
	e.emu.AddOIDCProvider(awsemu.OIDCProvider{Issuer: issuer, Keys: keys})

	// Artifactory over TLS; its CA goes into the seed's security Secret.
	e.art = registryemu.NewArtifactory(e.emuURL, "art-admin")
	artSrv := e.serve(httptest.NewTLSServer(e.art))
	e.artHost = strings.TrimPrefix(artSrv.URL, "https://")
	e.artCA = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: artSrv.Certificate().Raw})
	// The rotator trusts it as the system's roots too, as a real
	// Artifactory's public certificate is trusted, for manifests that
	// configure no security block (JFrog's guide). Set before anything in
	// this process loads the system roots, which Go does once.
	caFile := filepath.Join(e.dir, "system-roots.pem")
	if err := os.WriteFile(caFile, e.artCA, 0o644); err != nil {
		return e, err
	}
	os.Setenv("SSL_CERT_FILE", caFile)

	e.ecrReg = registryemu.NewECRRegistry(e.emu, account, nil)
	e.ecrReg.AdminPassword = "ecr-push"
	ecrSrv := e.serve(httptest.NewServer(e.ecrReg))
	e.ecrHost = strings.TrimPrefix(ecrSrv.URL, "http://")

	// Roles: the rotator's Pod Identity role has a path and a 2-hour
	// MaxSessionDuration, which sizes JFrog tokens.
	if e.podRole, err = e.createRole(ctx, "/registry/rotators/", "registry-puller", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::`+account+`:user/admin"},"Action":["sts:AssumeRole","sts:TagSession"]}]}`, 7200); err != nil {
		return e, err
	}
	host := strings.TrimPrefix(issuer, "https://")
	if e.irsaRole, err = e.createRole(ctx, "/", "irsa-puller", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::`+account+`:oidc-provider/`+host+`"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringLike":{"`+host+`:sub":"system:serviceaccount:podid-system:*"}}}]}`, 3600); err != nil {
		return e, err
	}
	e.art.MapRole(e.podRole, "ci-puller")
	e.art.MapRole(e.irsaRole, "irsa-puller")

	// The rotator's own environment: podid's Pod Identity variables, and
	// IRSA's beside them (authType picks).
	if e.agentURL, e.agentTokenFile, err = e.podIdentityAgent(ctx); err != nil {
		return e, err
	}
	irsaToken, err := e.irsaToken(ctx)
	if err != nil {
		return e, err
	}
	environ := map[string]string{
		podidentity.EnvCredentialsFullURI: e.agentURL, podidentity.EnvAuthorizationTokenFile: e.agentTokenFile,
		podidentity.EnvRoleARN: e.irsaRole, podidentity.EnvWebIdentityTokenFile: irsaToken,
	}
	awsCfg := aws.Config{Region: "eu-west-1", BaseEndpoint: aws.String(e.emuURL), RetryMaxAttempts: 1}
	mgr, err := rotator.New(ctx, e.cluster.Config, rotator.Options{
		Namespace: "podid-system", MetricsAddr: "0", ProbeAddr: "0", Workers: 16, Timeout: 10 * time.Second,
		Registerer: e.metrics, AWS: &awsCfg, Getenv: func(k string) string { return environ[k] },
		// Cluster-scoped rotators: any Artifactory host; one test names a
		// ServiceAccount for IRSA.
		Reach: rotator.Reach{ServiceAccountTokens: true},
	})
	if err != nil {
		return e, err
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "rotator:", err)
		}
	}()
	return e, nil
}

func (e *env) adminAWS() aws.Config {
	return aws.Config{Region: "eu-west-1", BaseEndpoint: aws.String(e.emuURL), RetryMaxAttempts: 1,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: adminKey, SecretAccessKey: adminSec}, nil
		})}
}

func (e *env) createRole(ctx context.Context, path, name, trust string, maxSession int32) (string, error) {
	out, err := iam.NewFromConfig(e.adminAWS()).CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name), Path: aws.String(path), AssumeRolePolicyDocument: aws.String(trust), MaxSessionDuration: aws.Int32(maxSession)})
	if err != nil {
		return "", fmt.Errorf("creating role %s: %w", name, err)
	}
	return *out.Role.Arn, nil
}

// oidc reads the API server's ServiceAccount token issuer and keys, as an
// IAM OIDC provider would have them.
func (e *env) oidc(ctx context.Context) (string, jose.JSONWebKeySet, error) {
	var keys jose.JSONWebKeySet
	raw, err := e.clientset.CoreV1().RESTClient().Get().AbsPath("/.well-known/openid-configuration").DoRaw(ctx)
	if err != nil {
		return "", keys, fmt.Errorf("reading the issuer: %w", err)
	}
	var discovery struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(raw, &discovery); err != nil {
		return "", keys, err
	}
	raw, err = e.clientset.CoreV1().RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(ctx)
	if err != nil {
		return "", keys, fmt.Errorf("reading the JWKS: %w", err)
	}
	return discovery.Issuer, keys, json.Unmarshal(raw, &keys)
}

// podIdentityAgent stands in for the node agent podid runs on every node
// (test/realnode runs the real one): it answers the container credentials
// endpoint with a session of the Pod Identity role, for the pod's token only.
func (e *env) podIdentityAgent(ctx context.Context) (url, tokenFile string, err error) {
	const podToken = "rotator-pod-token"
	tokenFile = filepath.Join(e.dir, "eks-pod-identity-token")
	if err := os.WriteFile(tokenFile, []byte(podToken), 0o600); err != nil {
		return "", "", err
	}
	srv := e.serve(httptest.NewServer(awsemutest.CredentialsEndpoint(e.adminAWS(), e.podRole, podToken)))
	return srv.URL + "/v1/credentials", tokenFile, nil
}

// irsaToken writes an IRSA token of podid-system/podid-rotator, as EKS's
// webhook would project it.
func (e *env) irsaToken(ctx context.Context) (string, error) {
	if _, err := e.clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "podid-system"}}, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	if _, err := e.clientset.CoreV1().ServiceAccounts("podid-system").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "podid-rotator"}}, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	tr, err := e.clientset.CoreV1().ServiceAccounts("podid-system").CreateToken(ctx, "podid-rotator", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{podidentity.IRSAAudience}, ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	path := filepath.Join(e.dir, "irsa-token")
	return path, os.WriteFile(path, []byte(tr.Status.Token), 0o600)
}
