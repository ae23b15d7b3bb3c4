package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/podid/podid/internal/accesskey"
	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/sigv4"
	"github.com/podid/podid/test/emu/awsemu"
)

// awsSide is the sandbox's AWS: the STS/IAM emulator, podid server's own
// user in it, and the access key SigV4 clients use, both of podid's APIs (as
// Kubernetes user sandbox-admin) and of the emulator's IAM (as its
// administrator), so that sandbox.env drives both.
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

// startAWS runs the emulator on addr (host:port) until ctx ends and creates
// the sample role, trusted by serverPrincipal, podid server's identity: its
// user's ARN when "" (the simulated node, where podid server runs in this
// process with the user's key).
func startAWS(ctx context.Context, id association.Identity, addr, serverPrincipal string) (*awsSide, error) {
	admin := awsemu.User{Name: "sandbox-admin", AccessKeyID: "AKIASANDBOXADMIN0001", SecretAccessKey: randomSecret()}
	a := &awsSide{
		identity:  id,
		admin:     admin,
		server:    awsemu.User{Name: "podid-server", AccessKeyID: "AKIASANDBOXPODID0001", SecretAccessKey: randomSecret()},
		clientKey: sigv4.Key{AccessKeyID: admin.AccessKeyID, SecretAccessKey: admin.SecretAccessKey, Principal: accesskey.Entry{Name: "sandbox-admin", User: "sandbox-admin", Groups: []string{"system:masters"}}},
	}
	a.serverARN = serverPrincipal
	if a.serverARN == "" {
		a.serverARN = fmt.Sprintf("arn:%s:iam::%s:user/%s", id.Partition, id.AccountID, a.server.Name)
	}
	a.emulator = awsemu.New(awsemu.Options{AccountID: id.AccountID, Partition: id.Partition, Users: []awsemu.User{a.admin, a.server}})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for the STS emulator: %w", err)
	}
	a.endpoint = "http://" + l.Addr().String()
	go a.emulator.Serve(ctx, l)

	out, err := iam.NewFromConfig(a.config(a.admin.AccessKeyID, a.admin.SecretAccessKey, "")).CreateRole(ctx, &iam.CreateRoleInput{
		RoleName: aws.String("demo-app"), AssumeRolePolicyDocument: aws.String(awsemu.PodidTrust(a.serverARN)),
	})
	if err != nil {
		return nil, fmt.Errorf("creating the sample role in the emulator: %w", err)
	}
	a.sampleRole = *out.Role.Arn
	return a, nil
}

// serveInside also serves the emulator on a listener inside the node, where
// the workloads run, and returns its URL.
func (a *awsSide) serveInside(ctx context.Context, l net.Listener) string {
	go a.emulator.Serve(ctx, l)
	return "http://" + l.Addr().String()
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
