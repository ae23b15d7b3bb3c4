package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eksauth"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/podid/podid/internal/accesskey"
	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/awsemu"
	"github.com/podid/podid/internal/sigv4"
)

// awsSide is the sandbox's AWS: the STS/IAM emulator, podid server's own
// user in it, and the access key SigV4 clients of podid use.
type awsSide struct {
	endpoint   string
	admin      awsemu.User
	server     awsemu.User
	clientKey  sigv4.Key
	identity   association.Identity
	serverARN  string
	emulator   *awsemu.Emulator
	sampleRole string
}

func randomSecret() string {
	b := make([]byte, 20)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// startAWS runs the emulator on loopback until ctx ends and creates the
// sample role, trusted by podid server's user.
func startAWS(ctx context.Context, id association.Identity) (*awsSide, error) {
	a := &awsSide{
		identity:  id,
		admin:     awsemu.User{Name: "sandbox-admin", AccessKeyID: "AKIASANDBOXADMIN0001", SecretAccessKey: randomSecret()},
		server:    awsemu.User{Name: "podid-server", AccessKeyID: "AKIASANDBOXPODID0001", SecretAccessKey: randomSecret()},
		clientKey: sigv4.Key{AccessKeyID: "AKIASANDBOXCLIENT001", SecretAccessKey: randomSecret(), Principal: accesskey.Entry{Name: "sandbox-user", User: "sandbox-admin", Groups: []string{"system:masters"}}},
	}
	a.serverARN = fmt.Sprintf("arn:%s:iam::%s:user/%s", id.Partition, id.AccountID, a.server.Name)
	a.emulator = awsemu.New(awsemu.Options{AccountID: id.AccountID, Partition: id.Partition, Users: []awsemu.User{a.admin, a.server}})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the STS emulator: %w", err)
	}
	a.endpoint = "http://" + l.Addr().String()
	go a.emulator.Serve(ctx, l)

	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"` + a.serverARN + `"},"Action":["sts:AssumeRole","sts:TagSession"]}]}`
	out, err := iam.NewFromConfig(a.config(a.admin.AccessKeyID, a.admin.SecretAccessKey, "")).CreateRole(ctx, &iam.CreateRoleInput{
		RoleName: aws.String("demo-app"), AssumeRolePolicyDocument: aws.String(trust),
	})
	if err != nil {
		return nil, fmt.Errorf("creating the sample role in the emulator: %w", err)
	}
	a.sampleRole = *out.Role.Arn
	return a, nil
}

func (a *awsSide) config(id, secret, token string) aws.Config {
	return aws.Config{
		Region: a.identity.Region, BaseEndpoint: aws.String(a.endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(id, secret, token),
	}
}

// stsForServer is podid server's STS client.
func (a *awsSide) stsForServer() *awssts.Client {
	return awssts.NewFromConfig(a.config(a.server.AccessKeyID, a.server.SecretAccessKey, ""))
}

// demoExchange does, by hand, what a pod's agent will: a Pod object for the
// sample ServiceAccount, a token bound to it, the exchange, and a call with
// the credentials. It returns the lines to print.
func (a *awsSide) demoExchange(ctx context.Context, cfg *rest.Config, apiURL string) ([]string, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	pod, err := cs.CoreV1().Pods("demo").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "demo-app-0"},
		Spec: corev1.PodSpec{ServiceAccountName: "demo-app", NodeName: "sandbox-node",
			Containers: []corev1.Container{{Name: "app", Image: "demo-app"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating the sample pod: %w", err)
	}
	tr, err := cs.CoreV1().ServiceAccounts("demo").CreateToken(ctx, "demo-app", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: []string{"pods.eks.amazonaws.com"}, ExpirationSeconds: ptr.To(int64(3600)),
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("requesting the sample pod's token: %w", err)
	}
	c := eksauth.New(eksauth.Options{
		Region: a.identity.Region, BaseEndpoint: aws.String(apiURL),
		Credentials: credentials.NewStaticCredentialsProvider(a.clientKey.AccessKeyID, a.clientKey.SecretAccessKey, ""),
	})
	out, err := c.AssumeRoleForPodIdentity(ctx, &eksauth.AssumeRoleForPodIdentityInput{ClusterName: aws.String(a.identity.ClusterName), Token: aws.String(tr.Status.Token)})
	if err != nil {
		return nil, fmt.Errorf("exchanging the sample pod's token: %w", err)
	}
	cr := out.Credentials
	who, err := awssts.NewFromConfig(a.config(*cr.AccessKeyId, *cr.SecretAccessKey, *cr.SessionToken)).GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
	if err != nil {
		return nil, fmt.Errorf("using the sample pod's credentials: %w", err)
	}
	session, _ := a.emulator.Session(*cr.AccessKeyId)
	var tags []string
	for _, k := range []string{"kubernetes-namespace", "kubernetes-service-account", "kubernetes-pod-name"} {
		tags = append(tags, k+"="+session.Tags[k])
	}
	return []string{
		fmt.Sprintf("pod demo/demo-app-0 exchanged its token at %s", apiURL),
		fmt.Sprintf("credentials obtained: %s, expiring %s", *cr.AccessKeyId, cr.Expiration.UTC().Format("15:04:05 MST")),
		fmt.Sprintf("GetCallerIdentity with them: %s (session tags %s)", *who.Arn, strings.Join(tags, ", ")),
	}, nil
}
