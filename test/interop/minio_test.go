// Package interop runs podid against third-party implementations of the
// AWS APIs it calls. Here MinIO is the STS: podid server assumes "roles" as a
// MinIO user, and the credentials it hands a pod must work on MinIO's S3,
// narrowed by the association's session policy.
package interop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eksauth"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/accesskey"
	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/internal/sigv4"
	"github.com/podid/podid/test/harness/localcluster"
)

const (
	minioUser   = "podid-minio-root"
	minioSecret = "podid-minio-root-secret"
	bucket      = "interop"
)

var (
	identity = association.Identity{Partition: "aws", Region: "us-east-1", AccountID: "111122223333", ClusterName: "interop"}
	agentKey = sigv4.Key{AccessKeyID: "AKIAINTEROPAGENT0001", SecretAccessKey: "interop-agent-secret-0123456789", Principal: accesskey.Entry{Name: "interop-agent"}}

	cluster       *localcluster.Cluster
	srv           *server.Server
	minioEndpoint string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var err error
	if minioEndpoint, err = startMinIO(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 1
	}
	if cluster, err = localcluster.Start(localcluster.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 1
	}
	defer cluster.Stop()
	// The agent's key comes from a file, as a mounted Secret would give it.
	keysFile := filepath.Join(os.TempDir(), fmt.Sprintf("podid-interop-keys-%d.yaml", os.Getpid()))
	keysDoc := fmt.Sprintf("keys:\n- accessKeyId: %s\n  secretAccessKey: %s\n  name: interop-agent\n", agentKey.AccessKeyID, agentKey.SecretAccessKey)
	if err := os.WriteFile(keysFile, []byte(keysDoc), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 1
	}
	defer os.Remove(keysFile)
	srv, err = server.New(ctx, cluster.Config, server.Options{
		Identity: identity, MetricsAddr: "0", ProbeAddr: "0",
		API: server.APIOptions{
			Addr: "127.0.0.1:0", InsecureHTTP: true,
			AccessKeysFile: keysFile,
			// podid's own identity is a MinIO user; MinIO is its STS.
			STS: awssts.NewFromConfig(minioConfig(minioUser, minioSecret, "")),
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "interop: server:", err)
		return 1
	}
	return code
}

// startMinIO runs bin/minio on a free loopback port until ctx ends.
func startMinIO(ctx context.Context) (string, error) {
	dir, err := localcluster.FindAssets()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "minio")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("MinIO not found at %s: run `make tools` (hack/tools.sh minio) to build it", bin)
	}
	ports := make([]string, 2)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		ports[i] = l.Addr().String()
		l.Close()
	}
	data, err := os.MkdirTemp("", "podid-minio-")
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, bin, "server", data, "--quiet", "--address", ports[0], "--console-address", ports[1])
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+minioUser, "MINIO_ROOT_PASSWORD="+minioSecret, "MINIO_BROWSER=off")
	cmd.Cancel = func() error { return cmd.Process.Kill() }
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("starting MinIO: %w", err)
	}
	go func() { cmd.Wait(); os.RemoveAll(data) }()
	endpoint := "http://" + ports[0]
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		resp, err := http.Get(endpoint + "/minio/health/live")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return "", fmt.Errorf("MinIO did not become live at %s: %w", endpoint, err)
	}
	return endpoint, nil
}

func minioConfig(id, secret, token string) aws.Config {
	return aws.Config{
		Region: identity.Region, BaseEndpoint: aws.String(minioEndpoint), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(id, secret, token),
	}
}

func s3Client(cfg aws.Config) *s3.Client {
	return s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
}

// credentialsFor does what a pod's agent does: exchange the pod's token.
func credentialsFor(t *testing.T, pod *corev1.Pod) aws.Config {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(cluster.Config)
	tr, err := cs.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(t.Context(), pod.Spec.ServiceAccountName, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: []string{"pods.eks.amazonaws.com"}, ExpirationSeconds: ptr.To(int64(3600)),
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := eksauth.New(eksauth.Options{
		Region: identity.Region, BaseEndpoint: aws.String(srv.APIURL), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(agentKey.AccessKeyID, agentKey.SecretAccessKey, ""),
	})
	out, err := c.AssumeRoleForPodIdentity(t.Context(), &eksauth.AssumeRoleForPodIdentityInput{ClusterName: aws.String(identity.ClusterName), Token: aws.String(tr.Status.Token)})
	if err != nil {
		t.Fatal(err)
	}
	cr := out.Credentials
	if cr.Expiration.Before(time.Now().Add(50 * time.Minute)) {
		t.Fatalf("MinIO's credentials expire at %s, want about an hour", cr.Expiration)
	}
	return minioConfig(*cr.AccessKeyId, *cr.SecretAccessKey, *cr.SessionToken)
}

func TestMinIOAsSTS(t *testing.T) {
	ctx := t.Context()
	k8s := cluster.Client
	root := s3Client(minioConfig(minioUser, minioSecret, ""))
	if _, err := root.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "billing"}}
	pia := &v1alpha1.PodIdentityAssociation{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "billing"},
		Spec:       v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "billing", RoleARN: "arn:aws:iam::111122223333:role/billing"},
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "billing-0"},
		Spec:       corev1.PodSpec{ServiceAccountName: "billing", NodeName: "node-a", Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
	for _, obj := range []client.Object{ns, sa, pia, pod} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	waitForIndex(t, func(a *association.Association) bool { return a.Policy == "" })

	// Unrestricted: the pod's credentials write and read back an object.
	s3c := s3Client(credentialsFor(t, pod))
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("invoices/1"), Body: strings.NewReader("paid")}); err != nil {
		t.Fatalf("writing with podid's credentials: %v", err)
	}
	got, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("invoices/1")})
	if err != nil {
		t.Fatalf("reading with podid's credentials: %v", err)
	}
	body, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if string(body) != "paid" {
		t.Fatalf("read %q", body)
	}

	// The association's session policy narrows the same role to reading.
	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::` + bucket + `/invoices/*"]}]}`
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(pia), pia); err != nil {
		t.Fatal(err)
	}
	pia.Spec.Policy = policy
	if err := k8s.Update(ctx, pia); err != nil {
		t.Fatal(err)
	}
	waitForIndex(t, func(a *association.Association) bool { return a.Policy == policy })
	narrowed := s3Client(credentialsFor(t, pod))
	if _, err := narrowed.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("invoices/1")}); err != nil {
		t.Fatalf("reading under the session policy: %v", err)
	}
	_, err = narrowed.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("invoices/2"), Body: strings.NewReader("x")})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "AccessDenied" {
		t.Fatalf("writing under a read-only session policy: %v, want AccessDenied", err)
	}
}

func waitForIndex(t *testing.T, cond func(*association.Association) bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		a, ok := srv.Index.Lookup("shop", "billing")
		return ok && cond(a), nil
	})
	if err != nil {
		t.Fatalf("waiting for the index: %v", err)
	}
}
