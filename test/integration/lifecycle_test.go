package integration

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/test/emu/awsemu"
)

// TestAssociationOutlivesItsNamespace follows EKS's lifecycle, as Terraform
// and JFrog's guide use it: the association is created before its namespace
// exists, takes effect when the namespace and ServiceAccount appear, survives
// the namespace's deletion, and serves a new pod when the namespace is
// created again — with nothing done by anyone in between.
func TestAssociationOutlivesItsNamespace(t *testing.T) {
	ctx := t.Context()
	n := startNodeWithAgent(t)
	workloadBin, err := buildWorkload()
	if err != nil {
		t.Fatal(err)
	}
	role := createRole(t, "later-app", awsemu.PodidTrust(serverARN))
	ns := "later-" + rand.String(5)
	t.Cleanup(func() { deleteClusterAssociations(t, ns) })

	c := eksClient(eksAdminKey)
	created, err := c.CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{
		ClusterName: eksCluster, Namespace: aws.String(ns), ServiceAccount: aws.String("app"), RoleArn: aws.String(role),
		Tags: map[string]string{"owner": "platform"}})
	if err != nil {
		t.Fatalf("creating the association before its namespace: %v", err)
	}
	id := *created.Association.AssociationId
	view := newAssociation(ns, "app", role)

	// Described and listed by its ID at every stage.
	stillThere := func(stage string) {
		t.Helper()
		d, err := c.DescribePodIdentityAssociation(ctx, &eks.DescribePodIdentityAssociationInput{ClusterName: eksCluster, AssociationId: aws.String(id)})
		if err != nil {
			t.Fatalf("%s: describe: %v", stage, err)
		}
		if a := d.Association; *a.Namespace != ns || *a.ServiceAccount != "app" || *a.RoleArn != role || a.Tags["owner"] != "platform" {
			t.Fatalf("%s: described %+v", stage, a)
		}
		l, err := c.ListPodIdentityAssociations(ctx, &eks.ListPodIdentityAssociationsInput{ClusterName: eksCluster, Namespace: aws.String(ns)})
		if err != nil || len(l.Associations) != 1 || *l.Associations[0].AssociationId != id {
			t.Fatalf("%s: listed %+v, %v", stage, l, err)
		}
	}
	stillThere("before the namespace")
	waitForStatus(t, view, v1alpha1.ReasonNamespaceNotFound)

	credentialsFor := func(pod string) {
		t.Helper()
		w := &workload{ns: ns, sa: "app"}
		_, tokenFile := w.podWithToken(t, pod)
		got := n.runWorkload(t, tokenFile, workloadBin, "once")
		if !strings.HasPrefix(got.ARN, "arn:aws:sts::"+identity.AccountID+":assumed-role/later-app/eks-"+identity.ClusterName+"-"+pod+"-") {
			t.Fatalf("pod %s's SDK is %s", pod, got.ARN)
		}
	}
	createNamespace := func() {
		t.Helper()
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
		if err := k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}}); err != nil {
			t.Fatal(err)
		}
		waitForStatus(t, view, v1alpha1.ReasonAssociated)
	}

	createNamespace()
	credentialsFor("app-0")

	deleteNamespace(t, ns)
	waitForStatus(t, view, v1alpha1.ReasonNamespaceNotFound)
	stillThere("after the namespace's deletion")

	createNamespace()
	credentialsFor("app-1")
	stillThere("with the namespace created again")
}

// deleteNamespace deletes a namespace as the namespace controller would
// (envtest runs none): its ServiceAccounts, pods and associations, then the
// namespace's finalizer.
func deleteNamespace(t *testing.T, name string) {
	t.Helper()
	ctx := t.Context()
	var ns corev1.Namespace
	if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &ns); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(ctx, &ns); err != nil {
		t.Fatal(err)
	}
	for _, obj := range []client.Object{&corev1.Pod{}, &corev1.ServiceAccount{}, &v1alpha1.PodIdentityAssociation{}} {
		if err := k8s.DeleteAllOf(ctx, obj, client.InNamespace(name), client.GracePeriodSeconds(0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &ns); err != nil {
		t.Fatal(err)
	}
	ns.Spec.Finalizers = slices.DeleteFunc(ns.Spec.Finalizers, func(f corev1.FinalizerName) bool { return f == corev1.FinalizerKubernetes })
	if _, err := clientset().CoreV1().Namespaces().Finalize(ctx, &ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "namespace "+name+" to be gone", func(ctx context.Context) (bool, error) {
		err := k8s.Get(ctx, client.ObjectKey{Name: name}, &corev1.Namespace{})
		return apierrors.IsNotFound(err), nil
	})
}

// A namespace's own association cannot displace the platform team's: where a
// ClusterPodIdentityAssociation names the ServiceAccount, it is in force and
// the namespace's is reported superseded; the EKS API will not create a
// second association for a ServiceAccount that has either kind.
func TestClusterAssociationSupersedesTheNamespaces(t *testing.T) {
	ctx := t.Context()
	w := newWorkload(t, "", nil)
	platform := createRole(t, "superseding-platform", awsemu.PodidTrust(serverARN))
	tenant := createRole(t, "superseding-tenant", awsemu.PodidTrust(serverARN))

	c := eksClient(eksAdminKey)
	created, err := c.CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{ClusterName: eksCluster,
		Namespace: aws.String(w.ns), ServiceAccount: aws.String(w.sa), RoleArn: aws.String(platform)})
	if err != nil {
		t.Fatal(err)
	}
	// The namespace's own, as a tenant with kubectl would write it (the
	// API server cannot refuse it: it is another kind's name).
	own := newAssociation(w.ns, w.sa, tenant)
	if err := k8s.Create(ctx, own); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the namespace's association to be reported superseded", func(ctx context.Context) (bool, error) {
		var got v1alpha1.PodIdentityAssociation
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(own), &got); err != nil {
			return false, err
		}
		for _, cond := range got.Status.Conditions {
			if cond.Type == v1alpha1.ConditionReady && cond.Reason == v1alpha1.ReasonSuperseded && cond.Status == metav1.ConditionFalse &&
				strings.Contains(cond.Message, *created.Association.AssociationId) {
				return true, nil
			}
		}
		return false, nil
	})
	out, err := exchange(t, agentClient("node-a"), w.token(t, w.pod))
	if err != nil {
		t.Fatal(err)
	}
	if *out.PodIdentityAssociation.AssociationId != *created.Association.AssociationId || !strings.Contains(*out.AssumedRoleUser.Arn, "/superseding-platform/") {
		t.Fatalf("the pod got %s through %s; want the platform's role through the cluster association", *out.AssumedRoleUser.Arn, *out.PodIdentityAssociation.AssociationId)
	}
	_, err = c.CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{ClusterName: eksCluster,
		Namespace: aws.String(w.ns), ServiceAccount: aws.String(w.sa), RoleArn: aws.String(platform)})
	if errorCode(err) != "ResourceInUseException" {
		t.Fatalf("a second association for the ServiceAccount: %v", err)
	}
}
