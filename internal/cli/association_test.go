package cli

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/test/harness/localcluster"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var (
	cluster    *localcluster.Cluster
	kubeconfig string // an administrator's
)

// The CLI tests run the real commands against a real API server with podid
// server running, and compare what they print with transcripts in testdata/.
func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ageOf = func(time.Time) string { return "<age>" }
	if fuzzing() {
		return m.Run() // the fuzz targets are parsers: no cluster for each worker
	}
	var err error
	if cluster, err = localcluster.Start(localcluster.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, "cli tests:", err)
		return 1
	}
	defer func() { _ = cluster.Stop() }()
	dir, err := os.MkdirTemp("", "podid-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := os.WriteFile(kubeconfig, cluster.Kubeconfig, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := server.New(ctx, cluster.Config, server.Options{
		Identity:    association.Identity{Partition: "aws", Region: "eu-west-1", AccountID: "111122223333", ClusterName: "golden"},
		MetricsAddr: "0",
		ProbeAddr:   "0",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() { _ = srv.Start(ctx) }()
	return m.Run()
}

// fuzzing reports whether go test runs a fuzz target (-fuzz), in this
// process or as one of its workers.
func fuzzing() bool {
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" && f.Value.String() != "false" {
			return true
		}
	}
	return false
}

// transcript runs podid commands and records what each printed.
type transcript struct {
	t          *testing.T
	kubeconfig string
	out        strings.Builder
}

func newTranscript(t *testing.T) *transcript {
	return &transcript{t: t, kubeconfig: kubeconfig}
}

// run executes podid with args and records the command, its output and its
// error. It returns the error.
func (tr *transcript) run(args ...string) error {
	tr.t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := NewRootCommand(Streams{In: strings.NewReader(""), Out: &stdout, Err: &stderr})
	cmd.SetArgs(append(args, "--kubeconfig", tr.kubeconfig))
	err := cmd.ExecuteContext(tr.t.Context())
	fmt.Fprintf(&tr.out, "$ podid %s\n%s%s", strings.Join(quoteArgs(args), " "), stdout.String(), stderr.String())
	if err != nil {
		fmt.Fprintf(&tr.out, "podid: %v\n", err)
	}
	tr.out.WriteString("\n")
	return err
}

func (tr *transcript) mustRun(args ...string) {
	tr.t.Helper()
	if err := tr.run(args...); err != nil {
		tr.t.Fatalf("podid %s: %v", strings.Join(args, " "), err)
	}
}

func (tr *transcript) mustFail(want string, args ...string) {
	tr.t.Helper()
	err := tr.run(args...)
	if err == nil || !strings.Contains(err.Error(), want) {
		tr.t.Errorf("podid %s: want an error saying %q, got %v", strings.Join(args, " "), want, err)
	}
}

var normalizers = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`a-[a-z0-9]{17}\b`), "a-<id>"},
	{regexp.MustCompile(`PODID[A-Z2-7]{15}\b`), "PODID<key>"},
	{regexp.MustCompile(`aws_secret_access_key = \S{40}`), "aws_secret_access_key = <secret>"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`), "<time>"},
	{regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`), "<external-id>"},
}

func (tr *transcript) check(name string) {
	tr.t.Helper()
	got := tr.out.String()
	for _, n := range normalizers {
		got = n.re.ReplaceAllString(got, n.repl)
	}
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			tr.t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tr.t.Fatalf("%v (go test -update creates it)", err)
	}
	if got != string(want) {
		tr.t.Errorf("output differs from %s (go test -update rewrites it):\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, ` {}"'`) {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}

func createNamespace(t *testing.T, name string) {
	t.Helper()
	if err := cluster.Client.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
}

func TestAssociationLifecycle(t *testing.T) {
	createNamespace(t, "shop")
	createNamespace(t, "web")
	if err := cluster.Client.Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "billing"}}); err != nil {
		t.Fatal(err)
	}
	tr := newTranscript(t)
	tr.mustRun("association", "create", "-n", "shop", "--service-account", "billing",
		"--role-arn", "arn:aws:iam::111122223333:role/billing", "--tags", "team=payments,env=prod")
	tr.mustRun("association", "create", "-n", "web", "--service-account", "frontend", "--scope", "namespace",
		"--role-arn", "arn:aws:iam::111122223333:role/frontend", "--disable-session-tags")
	// Kept at the cluster level, an association may precede its namespace;
	// in the namespace, it may not.
	tr.mustRun("association", "create", "-n", "later", "--service-account", "app", "--wait", "0",
		"--role-arn", "arn:aws:iam::111122223333:role/app")
	tr.mustFail("namespace later-too does not exist", "association", "create", "-n", "later-too", "--service-account", "app", "--scope", "namespace",
		"--role-arn", "arn:aws:iam::111122223333:role/app")
	tr.mustFail("already has an association", "association", "create", "-n", "web", "--service-account", "frontend",
		"--role-arn", "arn:aws:iam::111122223333:role/other")
	tr.mustFail("already has an association", "association", "create", "-n", "shop", "--service-account", "billing",
		"--role-arn", "arn:aws:iam::111122223333:role/other")
	tr.mustRun("association", "get", "-n", "shop", "--service-account", "billing")
	tr.mustRun("association", "get", "-n", "shop", "--service-account", "billing", "-o", "json")
	tr.mustRun("association", "list")
	tr.mustRun("association", "list", "-n", "web")
	tr.mustRun("association", "list", "--service-account", "billing", "-o", "yaml")
	tr.mustRun("association", "update", "-n", "shop", "--service-account", "billing",
		"--role-arn", "arn:aws:iam::111122223333:role/billing-v2",
		"--target-role-arn", "arn:aws:iam::444455556666:role/ledger",
		"--policy", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`)

	tr.mustRun("association", "update", "-n", "shop", "--service-account", "billing", "--tags", "owner=ledger,env=staging", "--remove-tags", "team")

	var pia v1alpha1.ClusterPodIdentityAssociation
	if err := cluster.Client.Get(t.Context(), client.ObjectKey{Name: "shop.billing"}, &pia); err != nil {
		t.Fatal(err)
	}
	id := association.IDFor(pia.UID)
	if pia.Spec.RoleARN != "arn:aws:iam::111122223333:role/billing-v2" || pia.Spec.TargetRoleARN == "" || pia.Spec.Policy == "" {
		t.Errorf("update did not reach the API server: %+v", pia.Spec)
	}
	if want := map[string]string{"env": "staging", "owner": "ledger"}; !maps.Equal(pia.Spec.Tags, want) {
		t.Errorf("tags = %v, want %v", pia.Spec.Tags, want)
	}
	tr.mustRun("association", "get", "--association-id", id, "-o", "yaml")
	tr.mustRun("association", "update", "--association-id", id, "--target-role-arn", "", "--policy", "")
	tr.mustRun("association", "delete", "--association-id", id)
	tr.mustFail("has no association", "association", "get", "-n", "shop", "--service-account", "billing")
	tr.mustRun("association", "delete", "-n", "web", "--service-account", "frontend", "-o", "json")
	tr.mustRun("association", "delete", "-n", "later", "--service-account", "app")
	tr.mustRun("association", "list")
	tr.check("lifecycle.golden")
}

func TestAssociationErrors(t *testing.T) {
	createNamespace(t, "errors")
	tr := newTranscript(t)
	tr.mustFail("required", "association", "create", "-n", "errors", "--service-account", "app")
	tr.mustFail("must be an IAM role ARN", "association", "create", "-n", "errors", "--service-account", "app", "--role-arn", "my-role")
	tr.mustFail("policy is not valid JSON", "association", "create", "-n", "errors", "--service-account", "app",
		"--role-arn", "arn:aws:iam::111122223333:role/app", "--policy", "{Version: 2012}")
	tr.mustFail("not a JSON array", "association", "create", "-n", "errors", "--service-account", "app",
		"--role-arn", "arn:aws:iam::111122223333:role/app", "--policy", `[]`)
	tr.mustFail("no such file", "association", "create", "-n", "errors", "--service-account", "app",
		"--role-arn", "arn:aws:iam::111122223333:role/app", "--policy", "file:///nonexistent/policy.json")
	tr.mustFail("is not key=value", "association", "create", "-n", "errors", "--service-account", "app",
		"--role-arn", "arn:aws:iam::111122223333:role/app", "--tags", "team")
	tr.mustFail("reserved for AWS", "association", "create", "-n", "errors", "--service-account", "app",
		"--role-arn", "arn:aws:iam::111122223333:role/app", "--tags", "aws:team=x")
	tr.mustFail("not both", "association", "create", "-n", "errors", "--service-account", "app",
		"--role-arn", "arn:aws:iam::111122223333:role/app", "--role-name", "app")
	tr.mustFail("need --role-name", "association", "create", "-n", "errors", "--service-account", "app",
		"--permission-policy-arns", "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")
	tr.mustFail("would make it unusable", "association", "create", "-n", "errors", "--service-account", "app",
		"--role-name", "app", "--disable-session-tags")
	tr.mustFail("has not published its AWS identity", "association", "create", "-n", "errors", "--service-account", "app",
		"--role-name", "app")
	tr.mustFail("say which association", "association", "get", "-n", "errors")
	tr.mustFail("not both", "association", "get", "--service-account", "app", "--association-id", "a-aaaaaaaaaaaaaaaaa")
	tr.mustFail("is not an association ID", "association", "get", "--association-id", "42")
	tr.mustFail("no association has ID", "association", "get", "--association-id", "a-aaaaaaaaaaaaaaaaa")
	tr.mustFail("nothing to change", "association", "update", "-n", "errors", "--service-account", "app")
	tr.mustFail("has no association", "association", "update", "-n", "errors", "--service-account", "app", "--role-arn", "arn:aws:iam::111122223333:role/app")
	tr.mustFail("is not one of table, json, yaml", "association", "list", "-o", "xml")
	tr.check("errors.golden")
}

func TestAssociationConnectionErrors(t *testing.T) {
	dir := t.TempDir()
	user, err := cluster.AddUser("alice", "developers")
	if err != nil {
		t.Fatal(err)
	}
	alice := filepath.Join(dir, "alice.kubeconfig")
	if err := os.WriteFile(alice, user.Kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	unreachable := filepath.Join(dir, "unreachable.kubeconfig")
	if err := os.WriteFile(unreachable, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}

	tr := newTranscript(t)
	tr.kubeconfig = alice
	tr.mustFail("you are not allowed", "association", "list")
	tr.mustFail("you are not allowed", "association", "create", "-n", "default", "--service-account", "app", "--role-arn", "arn:aws:iam::111122223333:role/app")
	tr.kubeconfig = unreachable
	tr.mustFail("cannot reach the Kubernetes API server at https://127.0.0.1:1", "association", "list")
	tr.check("connection-errors.golden")
}
