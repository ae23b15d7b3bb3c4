// Package upgrade tests an upgrade of podid over an installation of the
// previous release: the associations it made remain, unchanged, with the
// same IDs, and the new server refuses to start, saying what to do, until
// the new CRDs are applied (Helm installs CRDs but never upgrades them).
package upgrade

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/config/crd"
	"github.com/podid/podid/internal/accesskey"
	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/eksapi"
	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/internal/sigv4"
	"github.com/podid/podid/test/harness/localcluster"
)

var (
	identity = association.Identity{Partition: "aws", Region: "eu-west-1", AccountID: "111122223333", ClusterName: "upgrade"}
	adminKey = sigv4.Key{AccessKeyID: "AKIAUPGRADEADMIN0001", SecretAccessKey: "upgrade-admin-secret-0123456789",
		Principal: accesskey.Entry{Name: "admin", User: "admin", Groups: []string{"system:masters"}}}
)

// previous are associations as release 0.1.0 made them: namespaced objects,
// one from its EKS API (with the SDK's idempotency token), one from kubectl.
func previous() []*v1alpha1.PodIdentityAssociation {
	return []*v1alpha1.PodIdentityAssociation{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "billing", Annotations: map[string]string{eksapi.CreateTokenAnnotation: "tf-0001"}},
			Spec: v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "billing", RoleARN: "arn:aws:iam::111122223333:role/billing",
				TargetRoleARN: "arn:aws:iam::444455556666:role/ledger", Tags: map[string]string{"team": "payments"},
				Policy: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Labels: map[string]string{"app": "web"}},
			Spec:       v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "web", RoleARN: "arn:aws:iam::111122223333:role/web", DisableSessionTags: true},
		},
	}
}

func TestUpgradeKeepsAssociations(t *testing.T) {
	ctx := t.Context()
	cluster, err := localcluster.Start(localcluster.Options{CRDPaths: []string{"testdata/v0.1.0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Stop() })
	k8s := cluster.Client

	// What the previous release left: its objects, with the status its
	// controller wrote.
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "billing"}}); err != nil {
		t.Fatal(err)
	}
	before := map[string]v1alpha1.PodIdentityAssociation{}
	for _, pia := range previous() {
		if err := k8s.Create(ctx, pia); err != nil {
			t.Fatal(err)
		}
		id := association.IDFor(pia.UID)
		pia.Status = v1alpha1.PodIdentityAssociationStatus{AssociationID: id, AssociationARN: identity.AssociationARN(id),
			ExternalID: association.ExternalIDFor(pia.UID), CreatedAt: &pia.CreationTimestamp, ModifiedAt: &pia.CreationTimestamp, ObservedGeneration: 1}
		if err := k8s.Status().Update(ctx, pia); err != nil {
			t.Fatal(err)
		}
		before[id] = *pia
	}

	// The new server over the old CRDs: refused, saying what to do.
	opts := server.Options{
		Identity: identity, MetricsAddr: "0", ProbeAddr: "0",
		API: server.APIOptions{Addr: "127.0.0.1:0", InsecureHTTP: true, AccessKeys: []sigv4.Key{adminKey}},
	}
	newCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := server.New(newCtx, cluster.Config, opts); err == nil || !strings.Contains(err.Error(), "kubectl apply --server-side -f charts/podid/crds/") {
		t.Fatalf("the new server over the previous release's CRDs: %v; want a refusal saying to apply the new CRDs", err)
	}

	// The upgrade: the new CRDs applied, the new server started.
	crds, err := crd.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envtest.InstallCRDs(cluster.Config, envtest.CRDInstallOptions{CRDs: crds}); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(ctx, cluster.Config, opts)
	if err != nil {
		t.Fatal(err)
	}
	serverCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Start(serverCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	poll(t, "the index to hold the previous release's associations", func(context.Context) (bool, error) { return srv.Index.Len() == len(before), nil })

	// Unchanged: the objects (spec, identity, annotations, labels), their
	// IDs, and what the EKS API says of them.
	for id, old := range before {
		var now v1alpha1.PodIdentityAssociation
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(&old), &now); err != nil {
			t.Fatalf("%s/%s after the upgrade: %v", old.Namespace, old.Name, err)
		}
		if now.UID != old.UID || !equality.Semantic.DeepEqual(now.Spec, old.Spec) || !equality.Semantic.DeepEqual(now.Annotations, old.Annotations) ||
			!equality.Semantic.DeepEqual(now.Labels, old.Labels) || now.Generation != old.Generation || now.Status.AssociationID != id {
			t.Errorf("%s/%s changed:\nbefore %s\nafter  %s", old.Namespace, old.Name, dump(old), dump(now))
		}
		if a, ok := srv.Index.Lookup(old.Namespace, old.Spec.ServiceAccount); !ok || a.ID != id || a.Cluster {
			t.Errorf("index holds %+v for %s/%s", a, old.Namespace, old.Name)
		}
	}
	c := eks.New(eks.Options{Region: identity.Region, BaseEndpoint: aws.String(srv.APIURL), HTTPClient: http.DefaultClient, RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(adminKey.AccessKeyID, adminKey.SecretAccessKey, "")})
	list, err := c.ListPodIdentityAssociations(ctx, &eks.ListPodIdentityAssociationsInput{ClusterName: aws.String(identity.ClusterName)})
	if err != nil || len(list.Associations) != len(before) {
		t.Fatalf("EKS API list after the upgrade: %+v, %v", list, err)
	}
	for _, s := range list.Associations {
		old, ok := before[*s.AssociationId]
		if !ok {
			t.Fatalf("listed %s, which the previous release did not make", *s.AssociationId)
		}
		d, err := c.DescribePodIdentityAssociation(ctx, &eks.DescribePodIdentityAssociationInput{ClusterName: aws.String(identity.ClusterName), AssociationId: s.AssociationId})
		if err != nil {
			t.Fatal(err)
		}
		if a := d.Association; *a.RoleArn != old.Spec.RoleARN || aws.ToString(a.TargetRoleArn) != old.Spec.TargetRoleARN || !equality.Semantic.DeepEqual(a.Tags, old.Spec.Tags) ||
			*a.ExternalId != old.Status.ExternalID || !a.CreatedAt.Equal(old.CreationTimestamp.Time) {
			t.Errorf("described %s as %+v", *s.AssociationId, a)
		}
	}
	// A retry of the previous release's create (same token) is answered
	// with the association it made, not a second one.
	again, err := c.CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{ClusterName: aws.String(identity.ClusterName),
		Namespace: aws.String("shop"), ServiceAccount: aws.String("billing"), RoleArn: aws.String("arn:aws:iam::111122223333:role/billing"), ClientRequestToken: aws.String("tf-0001")})
	if err != nil || before[*again.Association.AssociationId].Name != "billing" {
		t.Errorf("the previous release's create, retried: %+v, %v", again, err)
	}
	// The previous release's objects take the new operations.
	var billing v1alpha1.PodIdentityAssociation
	for id, old := range before {
		if old.Name == "billing" {
			billing = old
			if _, err := c.TagResource(ctx, &eks.TagResourceInput{ResourceArn: aws.String(identity.AssociationARN(id)), Tags: map[string]string{"env": "prod"}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var tagged v1alpha1.PodIdentityAssociation
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(&billing), &tagged); err != nil || tagged.Spec.Tags["env"] != "prod" || tagged.Spec.Tags["team"] != "payments" {
		t.Errorf("tagging the previous release's association: %v %v", tagged.Spec.Tags, err)
	}
}

func poll(t *testing.T, what string, cond wait.ConditionWithContextFunc) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func dump(pia v1alpha1.PodIdentityAssociation) string {
	b, _ := json.Marshal(struct {
		UID         string
		Generation  int64
		Labels      map[string]string
		Annotations map[string]string
		Spec        v1alpha1.PodIdentityAssociationSpec
		ID          string
	}{string(pia.UID), pia.Generation, pia.Labels, pia.Annotations, pia.Spec, pia.Status.AssociationID})
	return string(b)
}
