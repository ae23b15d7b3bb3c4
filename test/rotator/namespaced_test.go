package rotator

import (
	"context"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/credsource"
	"github.com/podid/podid/internal/localcluster"
	"github.com/podid/podid/internal/rotator"
)

// The namespaced CRD variant (config/crd/namespaced): a rotator writes only
// into its own namespace, whatever its selector matches.
func TestNamespacedVariant(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cluster, err := localcluster.Start(localcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Stop() })
	k8s := cluster.Client

	// Swap the cluster-scoped CRD for the namespaced one, as a user would
	// install it with the chart's --skip-crds.
	crds, err := apiextensions.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := crds.ApiextensionsV1().CustomResourceDefinitions().Delete(ctx, "secretrotators.podid.io", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("../../config/crd/namespaced/podid.io_secretrotators.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(raw, &crd); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := crds.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd.DeepCopy(), metav1.CreateOptions{})
		return err == nil, nil // the old one is still going
	})
	if err != nil {
		t.Fatal("the namespaced CRD could not be installed")
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := crds.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range got.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal("the namespaced CRD is not established")
	}

	for _, ns := range []string{"team-a", "team-b"} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"registry": "yes"}}}); err != nil {
			t.Fatal(err)
		}
	}
	environ := map[string]string{credsource.EnvFullURI: e.agentURL, credsource.EnvTokenFile: e.agentTokenFile}
	awsCfg := aws.Config{Region: "eu-west-1", BaseEndpoint: aws.String(e.emuURL), RetryMaxAttempts: 1}
	mgr, err := rotator.New(ctx, cluster.Config, rotator.Options{Namespace: "default", MetricsAddr: "0", ProbeAddr: "0", Registerer: prometheus.NewRegistry(),
		AWS: &awsCfg, Getenv: func(k string) string { return environ[k] }})
	if err != nil {
		t.Fatal(err)
	}
	go mgr.Start(ctx)

	rot := &v1alpha1.SecretRotator{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "own"},
		Spec: v1alpha1.SecretRotatorSpec{
			Provider: "ecr", ECR: &v1alpha1.ECRConfig{Region: "eu-west-1"},
			NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"registry": "yes"}},
			SecretName:        "pull",
		},
	}
	if err := k8s.Create(ctx, rot); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var s corev1.Secret
		return k8s.Get(ctx, client.ObjectKey{Namespace: "team-a", Name: "pull"}, &s) == nil, nil
	})
	if err != nil {
		t.Fatal("the namespaced rotator did not write into its own namespace")
	}
	// The status follows the secrets it reports.
	var got v1alpha1.SecretRotator
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(rot), &got); err != nil {
			return false, nil
		}
		return got.Status.ObservedGeneration == got.Generation && len(got.Status.Conditions) > 0, nil
	})
	if err != nil {
		t.Fatalf("no status: %+v", got.Status)
	}
	if len(got.Status.ProvisionedNamespaces) != 1 || got.Status.ProvisionedNamespaces[0] != "team-a" {
		t.Errorf("provisionedNamespaces %v, want only team-a", got.Status.ProvisionedNamespaces)
	}
	var other corev1.Secret
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "team-b", Name: "pull"}, &other); !apierrors.IsNotFound(err) {
		t.Errorf("a namespaced rotator wrote into another namespace: %v", err)
	}
}
