package integration

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/cli"
	"github.com/podid/podid/internal/eksapi"
	"github.com/podid/podid/internal/sigv4"
)

// eksClient is the unmodified aws-sdk-go-v2 EKS client, endpoint overridden.
func eksClient(k sigv4.Key) *eks.Client {
	return eks.New(eks.Options{
		Region:           identity.Region,
		BaseEndpoint:     aws.String(srv.APIURL),
		Credentials:      credentials.NewStaticCredentialsProvider(k.AccessKeyID, k.SecretAccessKey, ""),
		HTTPClient:       http.DefaultClient,
		RetryMaxAttempts: 1,
	})
}

var eksCluster = aws.String(identity.ClusterName)

func TestEKSAPILifecycle(t *testing.T) {
	ctx := t.Context()
	c := eksClient(eksAdminKey)
	ns := newNamespace(t)
	before := time.Now().Add(-time.Second)

	created, err := c.CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{
		ClusterName: eksCluster, Namespace: aws.String(ns), ServiceAccount: aws.String("billing"),
		RoleArn: aws.String("arn:aws:iam::111122223333:role/billing"), Tags: map[string]string{"team": "payments"},
		TargetRoleArn: aws.String("arn:aws:iam::444455556666:role/ledger"), DisableSessionTags: aws.Bool(true),
		Policy: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	a := created.Association
	id := *a.AssociationId
	if !association.IsID(id) || *a.AssociationArn != identity.AssociationARN(id) || *a.ClusterName != identity.ClusterName ||
		*a.Namespace != ns || *a.ServiceAccount != "billing" || a.Tags["team"] != "payments" || !*a.DisableSessionTags ||
		*a.TargetRoleArn != "arn:aws:iam::444455556666:role/ledger" || *a.ExternalId == "" || a.CreatedAt.Before(before) || a.ModifiedAt.Before(before) {
		t.Fatalf("created = %+v", a)
	}

	// The same object through kubectl's eyes: a cluster association, as
	// the admin may create those.
	var cpia v1alpha1.ClusterPodIdentityAssociation
	if err := k8s.Get(ctx, client.ObjectKey{Name: ns + ".billing"}, &cpia); err != nil {
		t.Fatal(err)
	}
	pia := *cpia.AsAssociation()
	if association.IDFor(pia.UID) != id || pia.Spec.RoleARN != *a.RoleArn || pia.Spec.Policy != *a.Policy || pia.Spec.Tags["team"] != "payments" {
		t.Fatalf("object = %+v", pia.Spec)
	}
	waitForStatus(t, &pia, v1alpha1.ReasonServiceAccountNotFound)

	described, err := c.DescribePodIdentityAssociation(ctx, &eks.DescribePodIdentityAssociationInput{ClusterName: eksCluster, AssociationId: &id})
	if err != nil || *described.Association.AssociationId != id || *described.Association.ExternalId != *a.ExternalId {
		t.Fatalf("describe = %+v, %v", described, err)
	}

	updated, err := c.UpdatePodIdentityAssociation(ctx, &eks.UpdatePodIdentityAssociationInput{
		ClusterName: eksCluster, AssociationId: &id, RoleArn: aws.String("arn:aws:iam::111122223333:role/billing-v2"),
		DisableSessionTags: aws.Bool(false), TargetRoleArn: aws.String(""), Policy: aws.String(""),
	})
	if err != nil {
		t.Fatal(err)
	}
	u := updated.Association
	if *u.RoleArn != "arn:aws:iam::111122223333:role/billing-v2" || *u.DisableSessionTags || aws.ToString(u.TargetRoleArn) != "" || aws.ToString(u.Policy) != "" || u.Tags["team"] != "payments" {
		t.Fatalf("updated = %+v", u)
	}
	if got := getAssociation(t, ns, "billing"); got.Spec.RoleARN != *u.RoleArn || got.Spec.TargetRoleARN != "" {
		t.Fatalf("object after update = %+v", got.Spec)
	}

	deleted, err := c.DeletePodIdentityAssociation(ctx, &eks.DeletePodIdentityAssociationInput{ClusterName: eksCluster, AssociationId: &id})
	if err != nil || *deleted.Association.AssociationId != id || *deleted.Association.RoleArn != *u.RoleArn {
		t.Fatalf("delete = %+v, %v", deleted, err)
	}
	if _, err := c.DescribePodIdentityAssociation(ctx, &eks.DescribePodIdentityAssociationInput{ClusterName: eksCluster, AssociationId: &id}); errorCode(err) != "ResourceNotFoundException" || statusOf(err) != 404 {
		t.Fatalf("describe after delete: %v", err)
	}
}

func TestEKSAPISeesKubectlObjects(t *testing.T) {
	ctx := t.Context()
	ns := newNamespace(t)
	pia := newAssociation(ns, "from-kubectl", "arn:aws:iam::111122223333:role/k")
	pia.Spec.Tags = map[string]string{"made-by": "kubectl"}
	if err := k8s.Create(ctx, pia); err != nil {
		t.Fatal(err)
	}
	id := association.IDFor(pia.UID)
	// Immediately, before the index may have seen it.
	out, err := eksClient(eksAdminKey).DescribePodIdentityAssociation(ctx, &eks.DescribePodIdentityAssociationInput{ClusterName: eksCluster, AssociationId: &id})
	if err != nil || *out.Association.RoleArn != pia.Spec.RoleARN || out.Association.Tags["made-by"] != "kubectl" {
		t.Fatalf("describe of a kubectl-made association = %+v, %v", out, err)
	}
	list, err := eksClient(eksAdminKey).ListPodIdentityAssociations(ctx, &eks.ListPodIdentityAssociationsInput{ClusterName: eksCluster, Namespace: aws.String(ns)})
	if err != nil || len(list.Associations) != 1 || *list.Associations[0].AssociationId != id {
		t.Fatalf("list = %+v, %v", list, err)
	}
}

func TestEKSAPIIdempotencyAndConflicts(t *testing.T) {
	ctx := t.Context()
	c := eksClient(eksAdminKey)
	ns := newNamespace(t)
	in := &eks.CreatePodIdentityAssociationInput{ClusterName: eksCluster, Namespace: aws.String(ns), ServiceAccount: aws.String("app"),
		RoleArn: aws.String("arn:aws:iam::111122223333:role/app"), ClientRequestToken: aws.String("token-1")}
	first, err := c.CreatePodIdentityAssociation(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.CreatePodIdentityAssociation(ctx, in)
	if err != nil || *again.Association.AssociationId != *first.Association.AssociationId {
		t.Fatalf("a retried create (same clientRequestToken) = %v, %v", again, err)
	}
	in.ClientRequestToken = aws.String("token-2")
	if _, err := c.CreatePodIdentityAssociation(ctx, in); errorCode(err) != "ResourceInUseException" || statusOf(err) != 409 {
		t.Fatalf("a second association for the SA: %v", err)
	}
	id := first.Association.AssociationId
	up := &eks.UpdatePodIdentityAssociationInput{ClusterName: eksCluster, AssociationId: id, RoleArn: aws.String("arn:aws:iam::111122223333:role/v2"), ClientRequestToken: aws.String("u-1")}
	if _, err := c.UpdatePodIdentityAssociation(ctx, up); err != nil {
		t.Fatal(err)
	}
	generation := func() int64 { return getAssociation(t, ns, "app").Generation }
	// A retry of the update (same clientRequestToken) changes nothing.
	g := generation()
	replay, err := c.UpdatePodIdentityAssociation(ctx, up)
	if err != nil || *replay.Association.RoleArn != "arn:aws:iam::111122223333:role/v2" || generation() != g {
		t.Fatalf("a replayed update: %v, generation %d → %d", err, g, generation())
	}

	// Twenty clients race to create one association: exactly one wins.
	var wg sync.WaitGroup
	codes := make(chan string, 20)
	for i := range 20 {
		wg.Go(func() {
			_, err := c.CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{ClusterName: eksCluster, Namespace: aws.String(ns), ServiceAccount: aws.String("raced"),
				RoleArn: aws.String("arn:aws:iam::111122223333:role/raced"), ClientRequestToken: aws.String(fmt.Sprintf("race-%d", i))})
			codes <- errorCode(err)
		})
	}
	wg.Wait()
	close(codes)
	count := map[string]int{}
	for code := range codes {
		count[code]++
	}
	if count[""] != 1 || count["ResourceInUseException"] != 19 {
		t.Fatalf("racing creates: %v", count)
	}
}

func TestEKSAPIErrors(t *testing.T) {
	ctx := t.Context()
	admin := eksClient(eksAdminKey)
	ns := newNamespace(t)
	valid := func() *eks.CreatePodIdentityAssociationInput {
		return &eks.CreatePodIdentityAssociationInput{ClusterName: eksCluster, Namespace: aws.String(ns), ServiceAccount: aws.String("app"), RoleArn: aws.String("arn:aws:iam::111122223333:role/app")}
	}
	tooManyTags := map[string]string{}
	for i := range 51 {
		tooManyTags[fmt.Sprintf("k%d", i)] = "v"
	}
	missing := "a-00000000000000000"
	cases := []struct {
		name   string
		call   func() error
		code   string
		status int
		names  string // a word the message must contain (the field)
	}{
		{"bad role ARN", func() error {
			in := valid()
			in.RoleArn = aws.String("not-an-arn")
			_, err := admin.CreatePodIdentityAssociation(ctx, in)
			return err
		}, "InvalidParameterException", 400, "roleArn"},
		{"too many tags", func() error {
			in := valid()
			in.Tags = tooManyTags
			_, err := admin.CreatePodIdentityAssociation(ctx, in)
			return err
		}, "InvalidParameterException", 400, "tags"},
		{"policy not JSON", func() error {
			in := valid()
			in.Policy = aws.String("{nope}")
			_, err := admin.CreatePodIdentityAssociation(ctx, in)
			return err
		}, "InvalidParameterException", 400, "policy"},
		{"bad namespace name", func() error {
			in := valid()
			in.Namespace = aws.String("Not_A_Namespace")
			_, err := admin.CreatePodIdentityAssociation(ctx, in)
			return err
		}, "InvalidParameterException", 400, ""},
		{"namespace missing, for a key whose rights stop at namespaces", func() error {
			in := valid()
			in.Namespace = aws.String("no-such-namespace")
			_, err := eksClient(passRoleKey).CreatePodIdentityAssociation(ctx, in)
			return err
		}, "AccessDeniedException", 403, "neither clusterpodidentityassociations nor podidentityassociations in namespace no-such-namespace"},
		{"unknown association", func() error {
			_, err := admin.DescribePodIdentityAssociation(ctx, &eks.DescribePodIdentityAssociationInput{ClusterName: eksCluster, AssociationId: &missing})
			return err
		}, "ResourceNotFoundException", 404, ""},
		{"malformed association id", func() error {
			_, err := admin.DeletePodIdentityAssociation(ctx, &eks.DeletePodIdentityAssociationInput{ClusterName: eksCluster, AssociationId: aws.String("nope")})
			return err
		}, "InvalidParameterException", 400, ""},
		{"other cluster", func() error {
			_, err := admin.ListPodIdentityAssociations(ctx, &eks.ListPodIdentityAssociationsInput{ClusterName: aws.String("elsewhere")})
			return err
		}, "ResourceNotFoundException", 404, ""},
		{"maxResults out of range", func() error {
			_, err := admin.ListPodIdentityAssociations(ctx, &eks.ListPodIdentityAssociationsInput{ClusterName: eksCluster, MaxResults: aws.Int32(101)})
			return err
		}, "InvalidParameterException", 400, ""},
		{"garbage nextToken", func() error {
			_, err := admin.ListPodIdentityAssociations(ctx, &eks.ListPodIdentityAssociationsInput{ClusterName: eksCluster, NextToken: aws.String("garbage")})
			return err
		}, "InvalidParameterException", 400, ""},
		{"RBAC forbids the key's user", func() error {
			_, err := eksClient(nobodyKey).CreatePodIdentityAssociation(ctx, valid())
			return err
		}, "AccessDeniedException", 403, ""},
		{"wrong secret", func() error {
			_, err := eksClient(sigv4.Key{AccessKeyID: eksAdminKey.AccessKeyID, SecretAccessKey: "wrong"}).ListPodIdentityAssociations(ctx, &eks.ListPodIdentityAssociationsInput{ClusterName: eksCluster})
			return err
		}, "InvalidSignatureException", 403, ""},
		{"unknown key", func() error {
			_, err := eksClient(sigv4.Key{AccessKeyID: "AKIANOBODYATALL00001", SecretAccessKey: "x"}).ListPodIdentityAssociations(ctx, &eks.ListPodIdentityAssociationsInput{ClusterName: eksCluster})
			return err
		}, "UnrecognizedClientException", 403, ""},
		{"unsigned", func() error {
			c := eks.New(eks.Options{Region: identity.Region, BaseEndpoint: aws.String(srv.APIURL), Credentials: aws.AnonymousCredentials{}, RetryMaxAttempts: 1})
			_, err := c.ListPodIdentityAssociations(ctx, &eks.ListPodIdentityAssociationsInput{ClusterName: eksCluster})
			return err
		}, "MissingAuthenticationTokenException", 403, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			if errorCode(err) != c.code || statusOf(err) != c.status {
				t.Fatalf("got %s %d (%v), want %s %d", errorCode(err), statusOf(err), err, c.code, c.status)
			}
			if c.names != "" && !strings.Contains(err.Error(), c.names) {
				t.Fatalf("the message does not name %s: %v", c.names, err)
			}
		})
	}
	if list, _ := admin.ListPodIdentityAssociations(ctx, &eks.ListPodIdentityAssociationsInput{ClusterName: eksCluster, Namespace: aws.String(ns)}); len(list.Associations) != 0 {
		t.Fatalf("refused creates left associations behind: %+v", list.Associations)
	}
}

func TestEKSAPIPaginationAndLimit(t *testing.T) {
	ctx := t.Context()
	c := eksClient(eksAdminKey)
	ns := newNamespace(t)
	const n = 250
	create := func(i int) error {
		_, err := c.CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{ClusterName: eksCluster, Namespace: aws.String(ns),
			ServiceAccount: aws.String(fmt.Sprintf("sa-%03d", i)), RoleArn: aws.String("arn:aws:iam::111122223333:role/r")})
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				if err := create(i); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	seen := map[string]bool{}
	var pages []int
	var token *string
	for {
		out, err := c.ListPodIdentityAssociations(ctx, &eks.ListPodIdentityAssociationsInput{ClusterName: eksCluster, Namespace: aws.String(ns), MaxResults: aws.Int32(100), NextToken: token})
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, len(out.Associations))
		for _, s := range out.Associations {
			if seen[*s.AssociationId] {
				t.Fatalf("%s listed twice", *s.AssociationId)
			}
			seen[*s.AssociationId] = true
			if *s.ClusterName != identity.ClusterName || *s.Namespace != ns || *s.AssociationArn != identity.AssociationARN(*s.AssociationId) {
				t.Fatalf("summary = %+v", s)
			}
		}
		if token = out.NextToken; token == nil {
			break
		}
	}
	if len(seen) != n || fmt.Sprint(pages) != "[100 100 50]" {
		t.Fatalf("listed %d in pages %v, want %d in [100 100 50]", len(seen), pages, n)
	}
	// The paginator of the SDK walks the same pages.
	p := eks.NewListPodIdentityAssociationsPaginator(c, &eks.ListPodIdentityAssociationsInput{ClusterName: eksCluster, Namespace: aws.String(ns), MaxResults: aws.Int32(70)})
	total := 0
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		total += len(page.Associations)
	}
	if total != n {
		t.Fatalf("paginator saw %d", total)
	}
	one, err := c.ListPodIdentityAssociations(ctx, &eks.ListPodIdentityAssociationsInput{ClusterName: eksCluster, ServiceAccount: aws.String("sa-007")})
	if err != nil || len(one.Associations) != 1 || *one.Associations[0].Namespace != ns {
		t.Fatalf("filter by serviceAccount = %+v, %v", one, err)
	}

	// Fill the cluster to its limit: the next create is refused.
	eventually(t, "the index to count the associations", func(context.Context) (bool, error) { return srv.Index.Len() >= n, nil })
	i := n
	for ; srv.Index.Len() < associationLimit && i < n+associationLimit; i++ {
		if err := create(i); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the index to count it", func(context.Context) (bool, error) {
			_, ok := srv.Index.Lookup(ns, fmt.Sprintf("sa-%03d", i))
			return ok, nil
		})
	}
	if err := create(i); errorCode(err) != "ResourceLimitExceededException" || statusOf(err) != 400 {
		t.Fatalf("create over the limit: %v", err)
	}
	// Leave room for the tests that follow.
	deleteClusterAssociations(t, ns)
	eventually(t, "the index to forget them", func(context.Context) (bool, error) { return srv.Index.Len() < n, nil })
}

// TestEKSAPIRefusesReplays sends one signed request twice, as an attacker
// who captured it would.
func TestEKSAPIRefusesReplays(t *testing.T) {
	req, err := http.NewRequestWithContext(t.Context(), "GET", srv.APIURL+"/clusters/"+identity.ClusterName+"/pod-identity-associations", nil)
	if err != nil {
		t.Fatal(err)
	}
	emptySHA := "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	creds := aws.Credentials{AccessKeyID: eksAdminKey.AccessKeyID, SecretAccessKey: eksAdminKey.SecretAccessKey}
	if err := v4.NewSigner().SignHTTP(t.Context(), creds, req, emptySHA, "eks", identity.Region, time.Now()); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{200, 403} {
		resp, err := http.DefaultClient.Do(req.Clone(t.Context()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("send %d: status %d (%s), want %d", i+1, resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), want)
		}
	}
}

// TestCLIAndEKSAPIMakeTheSameObjects creates one association with `podid
// association create` and one with the EKS API, with the same parameters.
func TestCLIAndEKSAPIMakeTheSameObjects(t *testing.T) {
	ctx := t.Context()
	ns := newNamespace(t)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, cluster.Kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`
	var out, errOut bytes.Buffer
	cmd := cli.NewRootCommand(cli.Streams{In: strings.NewReader(""), Out: &out, Err: &errOut})
	cmd.SetArgs([]string{"association", "create", "--kubeconfig", kubeconfig, "-n", ns, "--service-account", "same",
		"--role-arn", "arn:aws:iam::111122223333:role/same", "--target-role-arn", "arn:aws:iam::444455556666:role/t",
		"--disable-session-tags", "--policy", policy, "--tags", "team=a,env=prod", "--wait", "0s"})
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatalf("podid association create: %v\n%s", err, errOut.String())
	}
	ns2 := newNamespace(t)
	_, err := eksClient(eksAdminKey).CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{
		ClusterName: eksCluster, Namespace: aws.String(ns2), ServiceAccount: aws.String("same"),
		RoleArn: aws.String("arn:aws:iam::111122223333:role/same"), TargetRoleArn: aws.String("arn:aws:iam::444455556666:role/t"),
		DisableSessionTags: aws.Bool(true), Policy: aws.String(policy), Tags: map[string]string{"team": "a", "env": "prod"},
	})
	if err != nil {
		t.Fatal(err)
	}
	viaCLI, viaAPI := getAssociation(t, ns, "same"), getAssociation(t, ns2, "same")
	if !reflect.DeepEqual(viaCLI.Spec, viaAPI.Spec) || !reflect.DeepEqual(viaCLI.Labels, viaAPI.Labels) {
		t.Fatalf("the CLI made %+v (labels %v), the EKS API %+v (labels %v)", viaCLI.Spec, viaCLI.Labels, viaAPI.Spec, viaAPI.Labels)
	}
	// The only difference: the API keeps the SDK's idempotency token.
	if len(viaCLI.Annotations) != 0 || viaAPI.Annotations[eksapi.CreateTokenAnnotation] == "" || len(viaAPI.Annotations) != 1 {
		t.Fatalf("annotations: CLI %v, API %v", viaCLI.Annotations, viaAPI.Annotations)
	}
}

// BenchmarkEKSAPI measures one Create and one Describe through the SDK, SigV4
// and the real API server:
// go test ./test/integration -run '^$' -bench EKSAPI -benchtime 200x
func BenchmarkEKSAPI(b *testing.B) {
	ctx := b.Context()
	c := eksClient(eksAdminKey)
	ns := strings.ToLower(fmt.Sprintf("bench-%d", time.Now().UnixNano()))
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	var creating, describing time.Duration
	for b.Loop() {
		start := time.Now()
		out, err := c.CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{ClusterName: eksCluster, Namespace: aws.String(ns),
			ServiceAccount: aws.String(fmt.Sprintf("sa-%d", i)), RoleArn: aws.String("arn:aws:iam::111122223333:role/r")})
		if err != nil {
			b.Fatal(err)
		}
		created := time.Now()
		if _, err := c.DescribePodIdentityAssociation(ctx, &eks.DescribePodIdentityAssociationInput{ClusterName: eksCluster, AssociationId: out.Association.AssociationId}); err != nil {
			b.Fatal(err)
		}
		creating += created.Sub(start)
		describing += time.Since(created)
		i++
	}
	b.StopTimer()
	b.ReportMetric(float64(creating.Microseconds())/float64(i), "create-µs/op")
	b.ReportMetric(float64(describing.Microseconds())/float64(i), "describe-µs/op")
	if err := k8s.DeleteAllOf(ctx, &v1alpha1.PodIdentityAssociation{}, client.InNamespace(ns)); err != nil {
		b.Fatal(err)
	}
}
