package rotator

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/passrole"
	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/internal/rotator"
	"github.com/podid/podid/test/harness/localcluster"
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
	environ := map[string]string{podidentity.EnvCredentialsFullURI: e.agentURL, podidentity.EnvAuthorizationTokenFile: e.agentTokenFile}
	awsCfg := aws.Config{Region: "eu-west-1", BaseEndpoint: aws.String(e.emuURL), RetryMaxAttempts: 1}
	// The administrator allows one Artifactory, and IRSA ServiceAccounts:
	// what a namespaced rotator may still not reach is its namespace's
	// business alone.
	mgr, err := rotator.New(ctx, cluster.Config, rotator.Options{Namespace: "default", MetricsAddr: "0", ProbeAddr: "0", Registerer: prometheus.NewRegistry(),
		AWS: &awsCfg, Getenv: func(k string) string { return environ[k] },
		Reach: rotator.Reach{ArtifactoryHosts: []string{e.artHost}, ServiceAccountTokens: true}})
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

	t.Run("a tenant's rotator reaches nothing outside its namespace", func(t *testing.T) { namespacedTenancy(t, cluster) })
}

// namespacedTenancy: a namespace's editor, allowed to create SecretRotators
// there, tries to make the rotator mint another team's IRSA token, read
// another team's Secret, send its signed request without TLS checks or to
// a host the administrator did not list, and assume a role it was never
// given. The API server refuses each (podid's admission policy), and where
// the policy is off the rotator refuses them itself, calling nothing.
func namespacedTenancy(t *testing.T, cluster *localcluster.Cluster) {
	ctx := t.Context()
	k8s := cluster.Client
	for _, ns := range []string{"tenant", "victim"} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "victim", Name: "irsa-bot",
		Annotations: map[string]string{podidentity.AnnotationRoleARN: e.irsaRole}}}); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "victim", Name: "victim-cert"}, Data: map[string][]byte{"ca.crt": e.artCA}}); err != nil {
		t.Fatal(err)
	}
	// mallory edits namespace tenant (the roles `edit` aggregates, since no
	// controller-manager aggregates it here) and may manage its
	// SecretRotators; robot may only create SecretRotators there.
	rotators := rbacv1.PolicyRule{APIGroups: []string{"podid.io"}, Resources: []string{"secretrotators"}, Verbs: []string{"create", "get", "update", "delete"}}
	mallory := tenant(t, cluster, "mallory", []string{"system:aggregate-to-edit", "system:aggregate-to-view"}, rotators)
	robot := tenant(t, cluster, "robot", nil, rotators)

	policy, binding := passrole.RotatorPolicy("default"), passrole.RotatorBinding()
	for _, obj := range []client.Object{policy, binding} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	jfrog := func(name string, mutate func(*v1alpha1.SecretRotatorSpec)) *v1alpha1.SecretRotator {
		rot := &v1alpha1.SecretRotator{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant", Name: name}, Spec: v1alpha1.SecretRotatorSpec{
			ArtifactoryURL: e.artHost, SecretName: "pull", NamespaceSelector: metav1.LabelSelector{}}}
		mutate(&rot.Spec)
		return rot
	}
	adminRole := "arn:aws:iam::" + account + ":role/cluster-admins"
	attacks := []struct {
		name string
		as   client.Client
		rot  *v1alpha1.SecretRotator
		want string
	}{
		{"another team's IRSA ServiceAccount", mallory, jfrog("irsa", func(s *v1alpha1.SecretRotatorSpec) {
			s.AuthType, s.ServiceAccount = "webIdentity", &v1alpha1.ServiceAccountReference{Namespace: "victim", Name: "irsa-bot"}
		}), "may name a ServiceAccount of its own namespace only, not victim/irsa-bot"},
		{"another team's Secret", mallory, jfrog("cert", func(s *v1alpha1.SecretRotatorSpec) {
			s.Security = v1alpha1.SecurityConfig{Enabled: true, CertificateSecretName: "victim-cert", SecretNamespace: "victim"}
		}), "may read a certificate Secret of its own namespace only, not of victim"},
		{"no TLS verification", mallory, jfrog("insecure", func(s *v1alpha1.SecretRotatorSpec) { s.Security.InsecureSkipVerify = true }),
			"may not turn off TLS verification"},
		{"a role never given", mallory, jfrog("chain", func(s *v1alpha1.SecretRotatorSpec) {
			s.AssumeRoleChain = []v1alpha1.AssumeRoleHop{{RoleARN: adminRole}}
		}), "mallory may not use every IAM role of assumeRoleChain (" + adminRole + ") in namespace tenant"},
		{"tokens of a ServiceAccount it may not mint", robot, jfrog("own-sa", func(s *v1alpha1.SecretRotatorSpec) {
			s.AuthType, s.ServiceAccount = "webIdentity", &v1alpha1.ServiceAccountReference{Namespace: "tenant", Name: "default"}
		}), "robot may not create tokens for ServiceAccount tenant/default"},
		{"a Secret it may not read", robot, jfrog("own-cert", func(s *v1alpha1.SecretRotatorSpec) {
			s.Security = v1alpha1.SecurityConfig{Enabled: true, CertificateSecretName: "any"}
		}), "robot may not read Secret tenant/any"},
	}
	for i, a := range attacks {
		if i == 0 {
			// The policy takes a moment to reach the API server's admission.
			err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
				err := a.as.Create(ctx, a.rot.DeepCopy())
				if err == nil {
					k8s.Delete(ctx, a.rot.DeepCopy())
				}
				return err != nil && strings.Contains(err.Error(), a.want), nil
			})
			if err != nil {
				t.Fatalf("%s: the policy does not refuse it", a.name)
			}
			continue
		}
		if err := a.as.Create(ctx, a.rot.DeepCopy()); err == nil || !strings.Contains(err.Error(), a.want) {
			t.Errorf("%s: %v, want a refusal saying %q", a.name, err, a.want)
		}
	}
	// What the tenant may do, it may still do.
	if err := mallory.Create(ctx, jfrog("fine", func(*v1alpha1.SecretRotatorSpec) {})); err != nil {
		t.Errorf("a SecretRotator within the tenant's rights: %v", err)
	}

	// With the policy off (or the rotators made before it), the rotator
	// refuses the same specs itself, and calls nothing.
	if err := k8s.Delete(ctx, binding); err != nil {
		t.Fatal(err)
	}
	var decoyCalls atomic.Int32
	decoy := e.serve(httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { decoyCalls.Add(1) })))
	controllerRefusals := map[string]struct {
		rot  *v1alpha1.SecretRotator
		want string
	}{
		"another team's IRSA ServiceAccount": {attacks[0].rot, "serviceAccount victim/irsa-bot: a SecretRotator in namespace tenant may name a ServiceAccount of its own namespace only"},
		"another team's Secret":              {attacks[1].rot, "security.secretNamespace victim: a SecretRotator in namespace tenant may read a certificate Secret of its own namespace only"},
		"no TLS verification":                {attacks[2].rot, "security.insecureSkipVerify: a namespaced SecretRotator may not turn off TLS verification"},
		"a host not listed": {jfrog("decoy", func(s *v1alpha1.SecretRotatorSpec) { s.ArtifactoryURL = strings.TrimPrefix(decoy.URL, "https://") }),
			"is not one of the Artifactory hosts this rotator may call (" + e.artHost + ")"},
		"a URL with a path": {jfrog("path", func(s *v1alpha1.SecretRotatorSpec) { s.ArtifactoryURL = e.artHost + "/../admin" }), "is not a host name"},
	}
	for name, c := range controllerRefusals {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			rot := c.rot.DeepCopy()
			rot.Name = "off-" + rot.Name
			return k8s.Create(ctx, rot) == nil, nil // the binding's removal takes a moment too
		})
		if err != nil {
			t.Fatalf("%s: not admitted with the policy off", name)
		}
		var got v1alpha1.SecretRotator
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: "tenant", Name: "off-" + c.rot.Name}, &got); err != nil {
				return false, nil
			}
			cond := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady)
			return cond != nil && cond.Reason == v1alpha1.ReasonInvalidSpec, nil
		})
		if cond := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady); err != nil || !strings.Contains(cond.Message, c.want) {
			t.Errorf("%s: status %+v, want InvalidSpec saying %q", name, got.Status.Conditions, c.want)
		}
	}
	var secrets corev1.SecretList
	if err := k8s.List(ctx, &secrets, client.InNamespace("tenant"), client.HasLabels{rotator.LabelRotator}); err != nil || len(secrets.Items) > 1 {
		t.Errorf("secrets written in tenant: %d (only the allowed rotator's may be)", len(secrets.Items))
	}
	if n := decoyCalls.Load(); n != 0 {
		t.Errorf("the host not listed was called %d times", n)
	}
}

// tenant is a user of namespace tenant bound to the ClusterRoles named and
// to rules, as a client.
func tenant(t *testing.T, cluster *localcluster.Cluster, user string, clusterRoles []string, rules ...rbacv1.PolicyRule) client.Client {
	t.Helper()
	ctx := t.Context()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant", Name: user}, Rules: rules}
	if err := cluster.Client.Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	refs := []rbacv1.RoleRef{{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user}}
	for _, cr := range clusterRoles {
		refs = append(refs, rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cr})
	}
	for i, ref := range refs {
		if err := cluster.Client.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant", Name: fmt.Sprintf("%s-%d", user, i)},
			RoleRef: ref, Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}}}); err != nil {
			t.Fatal(err)
		}
	}
	u, err := cluster.AddUser(user)
	if err != nil {
		t.Fatal(err)
	}
	return u.Client
}
