// Command migrate prints the figures of `podid migrate irsa` on a real API
// server with podid server running and the AWS emulator: N IRSA
// ServiceAccounts (each with its own role, a trust policy with its OIDC
// statement), planned, migrated (trust, association, OIDC statement and
// annotation removed) and rolled back, with the time each took and the
// AWS calls per ServiceAccount; then it checks every trust policy is back
// byte for byte. The CLI runs in-process, as a user would run it.
//
//	go run ./test/load/migrate -sas 500
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/cli"
	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/internal/serveridentity"
	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/harness/localcluster"
)

var (
	identity = association.Identity{Partition: "aws", Region: "eu-west-1", AccountID: "111122223333", ClusterName: "load"}
	admin    = awsemu.User{Name: "admin", AccessKeyID: "AKIAMIGRATELOADADMIN", SecretAccessKey: "load-admin"}
	podid    = awsemu.User{Name: "podid-server", AccessKeyID: "AKIAMIGRATELOADPODID", SecretAccessKey: "load-podid"}
)

func main() {
	n := flag.Int("sas", 500, "annotated ServiceAccounts")
	perNamespace := flag.Int("per-namespace", 10, "ServiceAccounts per namespace")
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	slog.SetDefault(slog.New(slog.DiscardHandler))
	if err := run(*n, *perNamespace); err != nil {
		fmt.Fprintln(os.Stderr, "migrate:", err)
		os.Exit(1)
	}
}

func run(n, perNamespace int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cluster, err := localcluster.Start(localcluster.Options{})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	k8s := cluster.Client

	emu := awsemu.New(awsemu.Options{AccountID: identity.AccountID, Users: []awsemu.User{admin, podid}})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	endpoint := "http://" + l.Addr().String()
	go emu.Serve(ctx, l)
	cfgFor := func(u awsemu.User) aws.Config {
		return aws.Config{Region: identity.Region, BaseEndpoint: aws.String(endpoint), Credentials: credentials.NewStaticCredentialsProvider(u.AccessKeyID, u.SecretAccessKey, "")}
	}
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "podid-system"}}); err != nil {
		return err
	}
	srv, err := server.New(ctx, cluster.Config, server.Options{Identity: identity, MetricsAddr: "0", ProbeAddr: "0",
		API: server.APIOptions{Addr: "127.0.0.1:0", InsecureHTTP: true, STS: awssts.NewFromConfig(cfgFor(podid)), IdentityNamespace: "podid-system"}})
	if err != nil {
		return err
	}
	go srv.Start(ctx)
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := serveridentity.Read(ctx, k8s, "podid-system")
		return err == nil, nil
	}); err != nil {
		return fmt.Errorf("podid server did not publish its identity: %w", err)
	}

	// N ServiceAccounts, each with its own role, in namespaces of
	// perNamespace.
	began := time.Now()
	iamc := iam.NewFromConfig(cfgFor(admin))
	trusts := map[string]string{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for ns := 0; ns*perNamespace < n; ns++ {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("team-%03d", ns)}}); err != nil {
			return err
		}
	}
	type sa struct{ ns, name, role string }
	var sas []sa
	for i := range n {
		s := sa{ns: fmt.Sprintf("team-%03d", i/perNamespace), name: fmt.Sprintf("app-%02d", i%perNamespace), role: fmt.Sprintf("irsa-%04d", i)}
		sas = append(sas, s)
		trusts[s.role] = fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/oidc.example"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"oidc.example:sub":"system:serviceaccount:%s:%s"}}}]}`, s.ns, s.name)
	}
	for _, s := range sas {
		g.Go(func() error {
			out, err := iamc.CreateRole(gctx, &iam.CreateRoleInput{RoleName: aws.String(s.role), Path: aws.String("/irsa/"), AssumeRolePolicyDocument: aws.String(trusts[s.role])})
			if err != nil {
				return err
			}
			return k8s.Create(gctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: s.name, Labels: map[string]string{"load": "migrate"},
				Annotations: map[string]string{"eks.amazonaws.com/role-arn": *out.Role.Arn}}})
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	fmt.Printf("setup: %d ServiceAccounts in %d namespaces, each with its own role (path /irsa/), in %.1fs\n", n, (n+perNamespace-1)/perNamespace, time.Since(began).Seconds())

	dir, err := os.MkdirTemp("", "podid-load-migrate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, cluster.Kubeconfig, 0o600); err != nil {
		return err
	}
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": admin.AccessKeyID, "AWS_SECRET_ACCESS_KEY": admin.SecretAccessKey,
		"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": identity.Region, "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull} {
		os.Setenv(k, v)
	}
	step := func(name string, args ...string) error {
		calls, writes := emu.IAMCalls(), emu.IAMWrites()
		var out, errOut bytes.Buffer
		cmd := cli.NewRootCommand(cli.Streams{In: strings.NewReader(""), Out: &out, Err: &errOut})
		// The roles trust the cluster through an IAM OIDC provider of
		// its published issuer's URL, as a self-managed cluster's IRSA does.
		cmd.SetArgs(append(args, "--kubeconfig", kubeconfig, "-A", "-l", "load=migrate", "--oidc-issuer", "https://oidc.example"))
		began := time.Now()
		err := cmd.ExecuteContext(ctx)
		took := time.Since(began)
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", name, err, tail(out.String()+errOut.String()))
		}
		fmt.Printf("%-9s %6.1fs  %5.1f ms/SA  IAM calls/SA %.2f (writes %.2f)\n", name, took.Seconds(), float64(took.Milliseconds())/float64(n),
			float64(emu.IAMCalls()-calls)/float64(n), float64(emu.IAMWrites()-writes)/float64(n))
		return nil
	}
	if err := step("plan", "migrate", "irsa"); err != nil {
		return err
	}
	if err := step("apply", "migrate", "irsa", "--approve", "--remove-oidc-trust", "--remove-annotation"); err != nil {
		return err
	}
	if err := step("re-run", "migrate", "irsa", "--approve", "--remove-oidc-trust", "--remove-annotation"); err != nil {
		return err
	}
	if err := step("rollback", "migrate", "rollback", "--approve"); err != nil {
		return err
	}
	restored := 0
	for _, s := range sas {
		out, err := iamc.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(s.role)})
		if err != nil {
			return err
		}
		if doc, _ := url.QueryUnescape(*out.Role.AssumeRolePolicyDocument); doc == trusts[s.role] {
			restored++
		}
	}
	fmt.Printf("after rollback: %d of %d trust policies byte-identical to the originals\n", restored, n)
	if restored != n {
		return fmt.Errorf("%d trust policies were not restored", n-restored)
	}
	return nil
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-10):], "\n")
}
