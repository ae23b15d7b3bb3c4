package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/emu/awsemu/awsemutest"
)

// BenchmarkInvocation is what the kubelet pays per plugin run, minus the
// network: the built binary started with a request on stdin, asking a
// stand-in agent for the pod's credentials and the emulator's ECR for a
// password, both on loopback.
//
//	go test -run '^$' -bench Invocation ./cmd/podid-credential-provider
func BenchmarkInvocation(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "podid-credential-provider")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	emu := awsemutest.Start(b, awsemu.Options{AccountID: "111122223333"})
	role, err := iam.NewFromConfig(emu.AdminConfig()).CreateRole(context.Background(), &iam.CreateRoleInput{RoleName: aws.String("puller"),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/admin"},"Action":"sts:AssumeRole"}]}`)})
	if err != nil {
		b.Fatal(err)
	}
	agent := httptest.NewServer(awsemutest.CredentialsEndpoint(emu.AdminConfig(), *role.Role.Arn, "pod-token"))
	defer agent.Close()
	request := `{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"111122223333.dkr.ecr.us-east-1.amazonaws.com/app:1","serviceAccountToken":"pod-token"}`
	for _, c := range []struct{ name, token, wantOut string }{
		{"answered", "pod-token", `"cacheKeyType":"Registry"`},
		{"refused", "no-such-pod", ""},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				cmd := exec.Command(bin, "--agent-url="+agent.URL+"/v1/credentials")
				cmd.Stdin = strings.NewReader(strings.Replace(request, "pod-token", c.token, 1))
				cmd.Env = append(os.Environ(), "AWS_ENDPOINT_URL="+emu.Endpoint, "AWS_EC2_METADATA_DISABLED=true")
				var out, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &stderr
				err := cmd.Run()
				if c.wantOut != "" && (err != nil || !strings.Contains(out.String(), c.wantOut)) {
					b.Fatalf("%v: %s%s", err, out.String(), stderr.String())
				}
				if c.wantOut == "" && err == nil {
					b.Fatalf("a request with an unknown token was answered: %s", out.String())
				}
			}
			if fi, err := os.Stat(bin); err == nil {
				b.ReportMetric(float64(fi.Size())/(1<<20), "binary-MB")
			}
		})
	}
}
