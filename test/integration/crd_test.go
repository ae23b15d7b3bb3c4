package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
)

const roleA = "arn:aws:iam::111122223333:role/app-a"

func TestAssociationCRUD(t *testing.T) {
	ctx := t.Context()
	ns := newNamespace(t)

	pia := newAssociation(ns, "billing", roleA)
	pia.Spec.Tags = map[string]string{"team": "payments"}
	if err := k8s.Create(ctx, pia); err != nil {
		t.Fatalf("create: %v", err)
	}

	var got v1alpha1.PodIdentityAssociation
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(pia), &got); err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.Spec.RoleARN != roleA || got.Spec.Tags["team"] != "payments" {
		t.Errorf("get returned spec %+v", got.Spec)
	}

	// The controller writes status meanwhile, so update as any client must:
	// re-read and retry on conflict.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(pia), &got); err != nil {
			return err
		}
		got.Spec.RoleARN = "arn:aws:iam::111122223333:role/app-b"
		got.Spec.TargetRoleARN = "arn:aws:iam::444455556666:role/target"
		got.Spec.DisableSessionTags = true
		got.Spec.Policy = `{"Version":"2012-10-17","Statement":[]}`
		return k8s.Update(ctx, &got)
	})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	var list v1alpha1.PodIdentityAssociationList
	if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(list.Items) != 1 || list.Items[0].Spec.TargetRoleARN != "arn:aws:iam::444455556666:role/target" || !list.Items[0].Spec.DisableSessionTags {
		t.Fatalf("list after update = %+v", list.Items)
	}

	if err := k8s.Delete(ctx, &got); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(pia), &got); !apierrors.IsNotFound(err) {
		t.Fatalf("get after delete: want NotFound, got %v", err)
	}
}

func TestDuplicateAssociationIsRefused(t *testing.T) {
	ns := newNamespace(t)
	if err := k8s.Create(t.Context(), newAssociation(ns, "web", roleA)); err != nil {
		t.Fatal(err)
	}
	err := k8s.Create(t.Context(), newAssociation(ns, "web", "arn:aws:iam::111122223333:role/other"))
	if !apierrors.IsAlreadyExists(err) {
		t.Fatalf("second association for one ServiceAccount: want AlreadyExists, got %v", err)
	}
	if !strings.Contains(err.Error(), `"web" already exists`) {
		t.Errorf("error does not name the ServiceAccount: %v", err)
	}
}

// Twenty clients race to create an association for one ServiceAccount: the
// API server must keep exactly one, and tell the others it exists.
func TestConcurrentCreatesYieldOneAssociation(t *testing.T) {
	ns := newNamespace(t)
	const racers = 20
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		errs    = make([]error, racers)
		created = make([]string, racers)
	)
	for i := range racers {
		wg.Go(func() {
			pia := newAssociation(ns, "racer", fmt.Sprintf("arn:aws:iam::111122223333:role/r%d", i))
			<-start
			errs[i] = k8s.Create(t.Context(), pia)
			created[i] = pia.Spec.RoleARN
		})
	}
	close(start)
	wg.Wait()

	var winners []string
	for i, err := range errs {
		switch {
		case err == nil:
			winners = append(winners, created[i])
		case !apierrors.IsAlreadyExists(err):
			t.Errorf("racer %d: want AlreadyExists, got %v", i, err)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d creates succeeded, want exactly 1", len(winners))
	}
	var list v1alpha1.PodIdentityAssociationList
	if err := k8s.List(t.Context(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Spec.RoleARN != winners[0] {
		t.Fatalf("stored %d associations (%+v), want the winner's only (%s)", len(list.Items), list.Items, winners[0])
	}
}

func TestServiceAccountCannotChange(t *testing.T) {
	ns := newNamespace(t)
	pia := newAssociation(ns, "fixed", roleA)
	if err := k8s.Create(t.Context(), pia); err != nil {
		t.Fatal(err)
	}
	err := updateLatest(t, pia, func() { pia.Spec.ServiceAccount = "other" })
	if !apierrors.IsInvalid(err) {
		t.Fatalf("changing serviceAccount: want Invalid, got %v", err)
	}
	for _, want := range []string{"serviceAccount cannot be changed", "metadata.name must equal spec.serviceAccount"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// Every admission rule rejects a bad association with a readable message. The
// messages the API server returns are kept in testdata/validation.golden, so a
// change to any of them shows in review.
func TestValidationRules(t *testing.T) {
	ns := newNamespace(t)
	long := func(n int) string { return strings.Repeat("x", n) }
	manyTags := func(n int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("k%d", i)] = "v"
		}
		return m
	}
	policyOfLength := func(n int) string {
		p := `{"Version":"2012-10-17","Statement":[],"Id":"`
		return p + strings.Repeat("p", n-len(p)-2) + `"}`
	}

	cases := []struct {
		name   string
		mutate func(*v1alpha1.PodIdentityAssociation)
		valid  bool
	}{
		{"name differs from serviceAccount", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.ServiceAccount = "other" }, false},
		{"serviceAccount not a name", func(p *v1alpha1.PodIdentityAssociation) { p.Name = "sa"; p.Spec.ServiceAccount = "-sa" }, false},
		{"roleArn missing", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.RoleARN = "" }, false},
		{"roleArn a bare name", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.RoleARN = "my-role" }, false},
		{"roleArn short account", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.RoleARN = "arn:aws:iam::1234:role/x" }, false},
		{"roleArn of a user", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.RoleARN = "arn:aws:iam::111122223333:user/x" }, false},
		{"roleArn name too long", func(p *v1alpha1.PodIdentityAssociation) {
			p.Spec.RoleARN = "arn:aws:iam::111122223333:role/" + long(65)
		}, false},
		{"roleArn with path", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.RoleARN = "arn:aws:iam::111122223333:role/team/a/app" }, true},
		{"roleArn in aws-cn", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.RoleARN = "arn:aws-cn:iam::111122223333:role/app" }, true},
		{"targetRoleArn bad", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.TargetRoleARN = "arn:aws:sts::111122223333:role/x" }, false},
		{"policy an array", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.Policy = `[{"Effect":"Allow"}]` }, false},
		{"policy plain text", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.Policy = "allow everything" }, false},
		{"policy with a control character", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.Policy = "{\"Id\":\"\x01\"}" }, false},
		{"policy of 2049 characters", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.Policy = policyOfLength(2049) }, false},
		{"policy of 2048 characters", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.Policy = policyOfLength(2048) }, true},
		{"tags 51", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.Tags = manyTags(51) }, false},
		{"tags 50", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.Tags = manyTags(50) }, true},
		{"tag key empty", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.Tags = map[string]string{"": "v"} }, false},
		{"tag key 129", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.Tags = map[string]string{long(129): "v"} }, false},
		{"tag key 128", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.Tags = map[string]string{long(128): "v"} }, true},
		{"tag key aws prefix", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.Tags = map[string]string{"aws:owner": "v"} }, false},
		{"tag value 257", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.Tags = map[string]string{"k": long(257)} }, false},
		{"tag value 256", func(p *v1alpha1.PodIdentityAssociation) { p.Spec.Tags = map[string]string{"k": long(256)} }, true},
	}

	var golden strings.Builder
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pia := newAssociation(ns, fmt.Sprintf("sa-%d", i), roleA)
			tc.mutate(pia)
			err := k8s.Create(t.Context(), pia)
			if tc.valid {
				if err != nil {
					t.Fatalf("valid association refused: %v", err)
				}
				return
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want Invalid, got %v", err)
			}
			var status apierrors.APIStatus
			if !errors.As(err, &status) {
				t.Fatalf("error is not an API status: %v", err)
			}
			fmt.Fprintf(&golden, "## %s\n", tc.name)
			for _, cause := range status.Status().Details.Causes {
				fmt.Fprintf(&golden, "%s: %s\n", cause.Field, cause.Message)
			}
		})
	}
	checkGolden(t, "validation.golden", golden.String())
}

// A typed Go client drops an empty tags map (omitempty); kubectl sends what
// the manifest says, so check the rule with the object as kubectl would send it.
func TestEmptyTagsAreRefused(t *testing.T) {
	ns := newNamespace(t)
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "PodIdentityAssociation",
		"metadata":   map[string]any{"name": "tagless", "namespace": ns},
		"spec":       map[string]any{"serviceAccount": "tagless", "roleArn": roleA, "tags": map[string]any{}},
	}}
	err := k8s.Create(t.Context(), obj)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.tags") {
		t.Fatalf("empty tags: want Invalid naming spec.tags, got %v", err)
	}
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from what the API server said (go test -update rewrites it):\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

// A ClusterPodIdentityAssociation's own rules: its name, its namespace's
// shape and immutability; the spec's other rules are the namespaced kind's.
func TestClusterAssociationValidationRules(t *testing.T) {
	valid := func() *v1alpha1.ClusterPodIdentityAssociation {
		return v1alpha1.NewClusterAssociation(newAssociation("rules", "app", roleA))
	}
	cases := []struct {
		name   string
		mutate func(*v1alpha1.ClusterPodIdentityAssociation)
	}{
		{"name not namespace.serviceAccount", func(c *v1alpha1.ClusterPodIdentityAssociation) { c.Name = "app" }},
		{"namespace not a name", func(c *v1alpha1.ClusterPodIdentityAssociation) {
			c.Spec.Namespace = "Not_A_Namespace"
			c.Name = "not-a-namespace.app"
		}},
		{"namespace with a dot", func(c *v1alpha1.ClusterPodIdentityAssociation) { c.Spec.Namespace = "a.b"; c.Name = "a.b.app" }},
		{"serviceAccount not a name", func(c *v1alpha1.ClusterPodIdentityAssociation) {
			c.Spec.ServiceAccount = "-app"
			c.Name = c.Spec.Namespace + ".-app"
		}},
		{"tag key aws prefix", func(c *v1alpha1.ClusterPodIdentityAssociation) { c.Spec.Tags = map[string]string{"aws:owner": "v"} }},
	}
	var golden strings.Builder
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mutate(c)
			err := k8s.Create(t.Context(), c)
			var status apierrors.APIStatus
			if !apierrors.IsInvalid(err) || !errors.As(err, &status) {
				t.Fatalf("want Invalid, got %v", err)
			}
			fmt.Fprintf(&golden, "## %s\n", tc.name)
			for _, cause := range status.Status().Details.Causes {
				fmt.Fprintf(&golden, "%s: %s\n", cause.Field, cause.Message)
			}
		})
	}
	checkGolden(t, "cluster-validation.golden", golden.String())

	// The namespace, like the ServiceAccount, never changes.
	c := v1alpha1.NewClusterAssociation(newAssociation("rules-"+rand.String(5), "app", roleA))
	if err := k8s.Create(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k8s.Delete(context.WithoutCancel(t.Context()), c) })
	if err := updateLatest(t, c, func() { c.Spec.Namespace = "elsewhere" }); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "namespace cannot be changed") {
		t.Fatalf("changing spec.namespace: %v", err)
	}
}
