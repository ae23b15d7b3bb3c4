package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/iam"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/doctor"
	"github.com/podid/podid/internal/iamrole"
	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/internal/serveridentity"
	"github.com/podid/podid/internal/sts"
	"github.com/podid/podid/test/emu/awsemu"
)

// doctorNS stands for podid's namespace in the doctor tests: podid's
// objects there are fixtures doctor reads, while the checks it creates are
// answered by the test's running podid server.
const doctorNS = "doctor-podid"

// TestDoctor runs doctor over one healthy fixture and one broken fixture
// per check: each yields exactly its ✗ or ! (and what follows from it),
// with the text in testdata/doctor/*.golden.
func TestDoctor(t *testing.T) {
	ctx := t.Context()
	fx := newDoctorFixtures(t)
	d := &doctor.Doctor{Kube: k8s, Namespace: doctorNS, IAM: iam.NewFromConfig(awsConfig(emuAdmin)), Live: true, LiveTimeout: 15 * time.Second}

	type podCase struct {
		name string
		// setUp makes the case's namespace dr-<name> and returns the pod.
		setUp func(t *testing.T, ns string) *corev1.Pod
		// notOK are the checks that must not be ✓ (all others must be).
		notOK []string
		// target, when set, runs doctor on another target than the pod.
		target func(ns string) (*doctor.Report, error)
	}
	cases := []podCase{
		{"healthy", func(t *testing.T, ns string) *corev1.Pod {
			fx.associate(t, ns, "app", fx.trustedRole(t, "doctor-healthy", ns, "app"), nil)
			fx.allowAgentEgress(t, ns)
			return fx.pod(t, ns, "app", "node-a", injected)
		}, nil, nil},
		{"no-association", func(t *testing.T, ns string) *corev1.Pod {
			other := fx.namespace(t, "dr-elsewhere")
			fx.associate(t, other, "doctor-orphan", fx.trustedRole(t, "doctor-elsewhere", other, "doctor-orphan"), nil)
			return fx.pod(t, ns, "doctor-orphan", "node-a")
		}, []string{"association", "injection", "role-trust", "live-exchange"}, nil},
		{"default-serviceaccount", func(t *testing.T, ns string) *corev1.Pod {
			fx.associate(t, ns, "app", fx.trustedRole(t, "doctor-default-sa", ns, "app"), nil)
			return fx.pod(t, ns, "default", "node-a")
		}, []string{"association", "injection", "role-trust", "live-exchange"}, nil},
		{"pod-older-than-association", func(t *testing.T, ns string) *corev1.Pod {
			pod := fx.pod(t, ns, "app", "node-a", fx.ownedByDeployment(t, ns, "app"))
			time.Sleep(1100 * time.Millisecond) // creation timestamps have seconds
			fx.associate(t, ns, "app", fx.trustedRole(t, "doctor-older", ns, "app"), nil)
			return pod
		}, []string{"injection"}, nil},
		{"static-keys", func(t *testing.T, ns string) *corev1.Pod {
			fx.associate(t, ns, "app", fx.trustedRole(t, "doctor-static", ns, "app"), nil)
			return fx.pod(t, ns, "app", "node-a", injected, withEnv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"), withEnv("AWS_SECRET_ACCESS_KEY", "x"))
		}, []string{"credential-chain"}, nil},
		{"ecs-relative-uri", func(t *testing.T, ns string) *corev1.Pod {
			fx.associate(t, ns, "app", fx.trustedRole(t, "doctor-ecs", ns, "app"), nil)
			return fx.pod(t, ns, "app", "node-a", injected, withEnv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/6f1c"))
		}, []string{"credential-chain"}, nil},
		{"irsa-left", func(t *testing.T, ns string) *corev1.Pod {
			fx.associate(t, ns, "app", fx.trustedRole(t, "doctor-irsa", ns, "app"), nil)
			return fx.pod(t, ns, "app", "node-a", injected, withEnv(podidentity.EnvRoleARN, "arn:aws:iam::111122223333:role/old"), withEnv(podidentity.EnvWebIdentityTokenFile, "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"))
		}, []string{"credential-chain"}, nil},
		{"proxy", func(t *testing.T, ns string) *corev1.Pod {
			fx.associate(t, ns, "app", fx.trustedRole(t, "doctor-proxy", ns, "app"), nil)
			fx.create(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "proxy"}, Data: map[string]string{"NO_PROXY": ".cluster.local,10.0.0.0/8"}})
			return fx.pod(t, ns, "app", "node-a", injected, withEnv("HTTP_PROXY", "http://proxy.corp:3128"), func(p *corev1.Pod) {
				p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: "NO_PROXY", ValueFrom: &corev1.EnvVarSource{
					ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "proxy"}, Key: "NO_PROXY"}}})
			})
		}, []string{"proxy"}, nil},
		{"network-policy", func(t *testing.T, ns string) *corev1.Pod {
			fx.associate(t, ns, "app", fx.trustedRole(t, "doctor-netpol", ns, "app"), nil)
			fx.create(t, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dns-only"}, Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "app"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress: []networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(intstr.FromInt32(53))}}},
					{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "169.254.0.0/16", Except: []string{"169.254.170.0/24"}}}}}},
			}})
			return fx.pod(t, ns, "app", "node-a", injected)
		}, []string{"network-policy"}, nil},
		{"host-port", func(t *testing.T, ns string) *corev1.Pod {
			fx.associate(t, ns, "app", fx.trustedRole(t, "doctor-hostport", ns, "app"), nil)
			fx.pod(t, ns, "ingress", "node-h", func(p *corev1.Pod) {
				p.Name = "ingress"
				p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 80}}
			})
			return fx.pod(t, ns, "app", "node-h", injected)
		}, []string{"host-ports"}, nil},
		{"agent-not-ready", func(t *testing.T, ns string) *corev1.Pod {
			fx.associate(t, ns, "app", fx.trustedRole(t, "doctor-agent", ns, "app"), nil)
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-down"}}
			fx.create(t, node)
			agent := fx.agent(t, "node-down", false)
			t.Cleanup(func() { _ = k8s.Delete(context.Background(), agent); _ = k8s.Delete(context.Background(), node) })
			return fx.pod(t, ns, "app", "node-down", injected)
		}, []string{"agents", "agent"}, nil},
		{"role-without-tagsession", func(t *testing.T, ns string) *corev1.Pod {
			role := createRole(t, "doctor-no-tagsession", awsemu.TrustPolicy(fx.principal, `"sts:AssumeRole"`, ""))
			fx.associate(t, ns, "app", role, nil)
			return fx.pod(t, ns, "app", "node-a", injected)
		}, []string{"role-trust", "live-exchange"}, nil},
		{"role-condition", func(t *testing.T, ns string) *corev1.Pod {
			role := fx.trustedRole(t, "doctor-condition", "dr-someone-else", "app")
			fx.associate(t, ns, "app", role, nil)
			return fx.pod(t, ns, "app", "node-a", injected)
		}, []string{"role-trust", "live-exchange"}, nil},
		{"role-trusts-eks", func(t *testing.T, ns string) *corev1.Pod {
			role := createRole(t, "doctor-eks-guide", guideTrust(t, "000-jfrog-trust-pod-identity.json"))
			fx.associate(t, ns, "app", role, nil)
			return fx.pod(t, ns, "app", "node-a", injected)
		}, []string{"role-trust", "live-exchange"}, nil},
		{"target-role-external-id", func(t *testing.T, ns string) *corev1.Pod {
			role := fx.trustedRole(t, "doctor-source", ns, "app")
			target := createRole(t, "doctor-target", awsemu.TrustPolicy(role, `["sts:AssumeRole","sts:TagSession"]`, `{"StringEquals":{"sts:ExternalId":"not-this-one"}}`))
			fx.associate(t, ns, "app", role, func(a *v1alpha1.PodIdentityAssociation) { a.Spec.TargetRoleARN = target })
			return fx.pod(t, ns, "app", "node-a", injected)
		}, []string{"target-role-trust", "live-exchange"}, nil},
		{"serviceaccount-irsa-annotation", func(t *testing.T, ns string) *corev1.Pod {
			fx.create(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app", Annotations: map[string]string{podidentity.AnnotationRoleARN: "arn:aws:iam::111122223333:role/old"}}})
			fx.associate(t, ns, "app", fx.trustedRole(t, "doctor-sa", ns, "app"), nil)
			return fx.pod(t, ns, "app", "node-a", injected)
		}, []string{"irsa-annotation"}, func(ns string) (*doctor.Report, error) { return d.ServiceAccount(ctx, ns, "app") }},
		{"deployment-missing-serviceaccount", func(t *testing.T, ns string) *corev1.Pod {
			return fx.pod(t, ns, "ghost", "node-a", fx.ownedByDeployment(t, ns, "ghost"))
		}, []string{"serviceaccount", "association", "association", "injection", "role-trust", "live-exchange"}, func(ns string) (*doctor.Report, error) {
			if err := k8s.Delete(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ghost"}}); err != nil {
				return nil, err
			}
			return d.Deployment(ctx, ns, "app")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ns := fx.namespace(t, "dr-"+c.name)
			pod := c.setUp(t, ns)
			target := func(string) (*doctor.Report, error) { return d.Pod(ctx, ns, pod.Name) }
			if c.target != nil {
				target = c.target
			}
			report, err := target(ns)
			if err != nil {
				t.Fatal(err)
			}
			checkReport(t, report, c.name, c.notOK)
		})
	}

	clusterCases := []struct {
		name   string
		break_ func(t *testing.T) (restore func())
		notOK  []string
	}{
		{"cluster-healthy", func(*testing.T) func() { return func() {} }, nil},
		{"cluster-server-down", func(t *testing.T) func() {
			return fx.editStatus(t, &appsv1.Deployment{}, doctor.ServerDeployment, func(o client.Object) {
				st := &o.(*appsv1.Deployment).Status
				st.ReadyReplicas, st.AvailableReplicas = 0, 0
			})
		}, []string{"server"}},
		{"cluster-no-leader", func(t *testing.T) func() {
			return fx.edit(t, &coordinationv1.Lease{}, doctor.LeaderElectionID, func(o client.Object) {
				o.(*coordinationv1.Lease).Spec.RenewTime = &metav1.MicroTime{Time: time.Now().Add(-2 * time.Hour)}
			})
		}, []string{"server"}},
		{"cluster-webhook-cabundle-wrong", func(t *testing.T) func() {
			other, _ := newTestCA(t)
			return fx.editWebhook(t, func(w *admissionregistrationv1.MutatingWebhookConfiguration) {
				w.Webhooks[0].ClientConfig.CABundle = other
			})
		}, []string{"webhook"}},
		{"cluster-agents-excluded", func(t *testing.T) func() {
			return fx.edit(t, &appsv1.DaemonSet{}, doctor.AgentDaemonSet, func(o client.Object) {
				o.(*appsv1.DaemonSet).Spec.Template.Spec.NodeSelector = map[string]string{"podid.io/agent": "none"}
			})
		}, []string{"agents"}},
		{"cluster-identity-missing", func(t *testing.T) func() {
			var cm corev1.ConfigMap
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: doctorNS, Name: serveridentity.ConfigMapName}, &cm); err != nil {
				t.Fatal(err)
			}
			if err := k8s.Delete(ctx, &cm); err != nil {
				t.Fatal(err)
			}
			return func() { cm.ResourceVersion = ""; fx.create(t, &cm) }
		}, []string{"aws-identity"}},
		{"cluster-sts-unreachable", func(*testing.T) func() {
			emu.InjectFault("GetCallerIdentity", "ServiceUnavailable", sts.MaxAttempts) // every attempt of podid server's retries
			return func() {}
		}, []string{"sts"}},
	}
	for _, c := range clusterCases {
		t.Run(c.name, func(t *testing.T) {
			restore := c.break_(t)
			defer restore()
			checkReport(t, d.Cluster(ctx), c.name, c.notOK)
		})
	}
	// The broken node and the node with an ingress on port 80 stay out of
	// the cluster cases' way.
}

// checkReport compares the report with its golden file and checks that
// exactly notOK are not ✓.
func checkReport(t *testing.T, r *doctor.Report, name string, notOK []string) {
	t.Helper()
	var got []string
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, s := range r.Sections {
		for _, c := range s.Checks {
			if c.Status != doctor.OK {
				got = append(got, c.Name)
			}
		}
	}
	slices.Sort(got)
	want := slices.Clone(notOK)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("checks not ✓: %v, want %v\n%s", got, want, text.String())
	}
	normalized := normalizeDoctor(text.String())
	golden := filepath.Join("testdata", "doctor", name+".golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(normalized), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want2, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./test/integration -run TestDoctor -update writes it)", err)
	}
	if string(want2) != normalized {
		t.Errorf("doctor's report differs from %s:\n--- got\n%s--- want\n%s", golden, normalized, want2)
	}
}

var doctorVolatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\ba-[0-9a-z]{17}\b`), "a-ASSOCIATIONID"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`), "TIME"},
	{regexp.MustCompile(`assumed-role/([\w+=,.@-]+)/[\w+=,.@-]+`), "assumed-role/$1/SESSION"},
	{regexp.MustCompile(`\(replica [^;)]*`), "(replica REPLICA"},
	{regexp.MustCompile(`expires in [^)]*`), "expires in DURATION"},
	{regexp.MustCompile(`"kubernetes-pod-uid":"[^"]*"`), `"kubernetes-pod-uid":"UID"`},
	{regexp.MustCompile(`last renewed \S+ ago`), "last renewed AGE ago"},
	{regexp.MustCompile(`"sts:ExternalId":"[^"]*"`), `"sts:ExternalId":"EXTERNALID"`},
	{regexp.MustCompile(`external ID "[^"]*"`), `external ID "EXTERNALID"`},
	{regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`), "UUID"},
	{regexp.MustCompile(`RequestID: [^,]+,`), "RequestID: ID,"},
}

func normalizeDoctor(s string) string {
	for _, v := range doctorVolatile {
		s = v.re.ReplaceAllString(s, v.with)
	}
	return s
}

// doctorFixtures are podid's objects as the chart makes them, in doctorNS:
// a server Deployment with its status, a Lease held, the webhook
// configuration with a caBundle verifying the serving certificate in
// Secret podid-tls, an agent DaemonSet with a ready agent pod on every
// node but node-down, and the identity ConfigMap the running server
// published.
type doctorFixtures struct {
	principal string
}

func newDoctorFixtures(t *testing.T) *doctorFixtures {
	ctx := t.Context()
	fx := &doctorFixtures{}
	fx.namespace(t, doctorNS)
	id := waitForIdentity(t)
	fx.principal = id.PrincipalARN
	fx.create(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: doctorNS, Name: serveridentity.ConfigMapName},
		Data: map[string]string{serveridentity.KeyCallerARN: id.CallerARN, serveridentity.KeyPrincipalARN: id.PrincipalARN, serveridentity.KeyAccount: id.Account,
			serveridentity.KeyClusterName: id.Cluster.ClusterName, serveridentity.KeyPartition: id.Cluster.Partition, serveridentity.KeyRegion: id.Cluster.Region,
			serveridentity.KeyClusterAccount: id.Cluster.AccountID}})

	labels := func(component string) map[string]string {
		return map[string]string{"app.kubernetes.io/name": "podid", "app.kubernetes.io/component": component}
	}
	template := func(component string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels(component)},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: component, Image: "podid:test"}}}}
	}
	server := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: doctorNS, Name: doctor.ServerDeployment},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(2)), Selector: &metav1.LabelSelector{MatchLabels: labels("server")}, Template: template("server")}}
	fx.create(t, server)
	server.Status = appsv1.DeploymentStatus{Replicas: 2, ReadyReplicas: 2, AvailableReplicas: 2}
	if err := k8s.Status().Update(ctx, server); err != nil {
		t.Fatal(err)
	}
	fx.create(t, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: doctorNS, Name: doctor.LeaderElectionID},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("podid-server-5f7d8-abcde_0b1f"), LeaseDurationSeconds: ptr.To(int32(3600)),
			RenewTime: &metav1.MicroTime{Time: time.Now()}}})

	caPEM, ca := newTestCA(t)
	certPEM, keyPEM := newServingCert(t, ca, "podid."+doctorNS+".svc")
	fx.create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: doctorNS, Name: doctor.TLSSecret}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM}})
	// failurePolicy Ignore and a selector matching no namespace: the
	// configuration is there for doctor to read, never to be called.
	wh := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: doctor.WebhookConfig},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    doctor.WebhookName,
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: doctorNS, Name: doctor.WebhookService, Path: ptr.To("/mutate-v1-pod")}, CABundle: caPEM},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Ignore),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"podid.io/doctor-test": "never"}},
		}}}
	fx.create(t, wh)
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), wh) })

	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: doctorNS, Name: doctor.AgentDaemonSet},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels("agent")}, Template: template("agent")}}
	fx.create(t, ds)
	fx.create(t, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-h"}})
	var nodes corev1.NodeList
	if err := k8s.List(ctx, &nodes); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		fx.agent(t, n.Name, true)
	}
	return fx
}

// agent creates an agent pod on node, ready or crash-looping.
func (fx *doctorFixtures) agent(t *testing.T, node string, ready bool) *corev1.Pod {
	t.Helper()
	agent := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: doctorNS, Name: "podid-agent-" + node,
		Labels: map[string]string{"app.kubernetes.io/name": "podid", "app.kubernetes.io/component": "agent"}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "agent", Image: "podid:test",
			Ports: []corev1.ContainerPort{{ContainerPort: 2703, HostPort: 2703}}}}}}
	fx.create(t, agent)
	agent.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if !ready {
		agent.Status.Conditions[0].Status = corev1.ConditionFalse
		agent.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "agent", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}
	}
	if err := k8s.Status().Update(t.Context(), agent); err != nil {
		t.Fatal(err)
	}
	return agent
}

func waitForIdentity(t *testing.T) *serveridentity.Identity {
	var id *serveridentity.Identity
	eventually(t, "podid server's identity", func(ctx context.Context) (bool, error) {
		var err error
		id, err = serveridentity.Read(ctx, k8s, agentNamespace)
		return err == nil, nil
	})
	return id
}

func (fx *doctorFixtures) create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8s.Create(t.Context(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

func (fx *doctorFixtures) namespace(t *testing.T, name string) string {
	fx.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	return name
}

// trustedRole is a role made as `podid association create --role-name`
// makes it: trusting podid server for namespace/sa's pods.
func (fx *doctorFixtures) trustedRole(t *testing.T, name, namespace, sa string) string {
	return createRole(t, name, iamrole.TrustPolicy(fx.principal, iamrole.Association{Cluster: identity.ClusterName, Namespace: namespace, ServiceAccount: sa}))
}

func (fx *doctorFixtures) associate(t *testing.T, ns, sa, role string, edit func(*v1alpha1.PodIdentityAssociation)) {
	t.Helper()
	if err := k8s.Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	a := newAssociation(ns, sa, role)
	if edit != nil {
		edit(a)
	}
	fx.create(t, a)
	a = waitForStatus(t, a, v1alpha1.ReasonAssociated)
	eventually(t, "the index to hold the association", func(context.Context) (bool, error) {
		got, ok := srv.Index.Lookup(ns, sa)
		return ok && got.Generation == a.Generation, nil
	})
}

// allowAgentEgress is the NetworkPolicy users add next to a default deny.
func (fx *doctorFixtures) allowAgentEgress(t *testing.T, ns string) {
	fx.create(t, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "egress"}, Spec: networkingv1.NetworkPolicySpec{
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		Egress: []networkingv1.NetworkPolicyEgressRule{
			{Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(intstr.FromInt32(53))}}},
			{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "169.254.170.23/32"}}}, Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(80))}}},
		}}})
}

// pod creates pod "app" running as sa on node, edited by opts.
func (fx *doctorFixtures) pod(t *testing.T, ns, sa, node string, opts ...func(*corev1.Pod)) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app", Labels: map[string]string{"app": "app"}},
		Spec: corev1.PodSpec{ServiceAccountName: sa, NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}}
	for _, o := range opts {
		o(p)
	}
	if err := k8s.Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	fx.create(t, p)
	return p
}

// injected is what podid's webhook does to a pod (this API server has no
// webhook calling podid; the real node's tests have).
func injected(p *corev1.Pod) {
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: podidentity.TokenVolumeName, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: podidentity.Audience, ExpirationSeconds: ptr.To(int64(86400)), Path: podidentity.TokenPath}}}}}})
	c := &p.Spec.Containers[0]
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: podidentity.TokenVolumeName, MountPath: podidentity.TokenMountPath, ReadOnly: true})
	c.Env = append(c.Env, corev1.EnvVar{Name: podidentity.EnvCredentialsFullURI, Value: podidentity.CredentialsURI},
		corev1.EnvVar{Name: podidentity.EnvAuthorizationTokenFile, Value: podidentity.TokenMountPath + "/" + podidentity.TokenPath})
}

func withEnv(name, value string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: name, Value: value})
	}
}

// ownedByDeployment makes the pod Deployment app's, through its
// ReplicaSet, as the controllers would (none run here).
func (fx *doctorFixtures) ownedByDeployment(t *testing.T, ns, sa string) func(*corev1.Pod) {
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "app"}}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: sel.MatchLabels}, Spec: corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}, Spec: appsv1.DeploymentSpec{Selector: sel, Template: tmpl}}
	fx.create(t, dep)
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-5d4f8",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: dep.Name, UID: dep.UID, Controller: ptr.To(true)}}},
		Spec: appsv1.ReplicaSetSpec{Selector: sel, Template: tmpl}}
	fx.create(t, rs)
	return func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)}}
	}
}

// edit changes podid's object name and returns what puts it back.
func (fx *doctorFixtures) edit(t *testing.T, obj client.Object, name string, change func(client.Object)) func() {
	return fx.change(t, obj, name, change, func(ctx context.Context, o client.Object) error { return k8s.Update(ctx, o) })
}

// editStatus changes the object's status.
func (fx *doctorFixtures) editStatus(t *testing.T, obj client.Object, name string, change func(client.Object)) func() {
	return fx.change(t, obj, name, change, func(ctx context.Context, o client.Object) error { return k8s.Status().Update(ctx, o) })
}

func (fx *doctorFixtures) change(t *testing.T, obj client.Object, name string, change func(client.Object), update func(context.Context, client.Object) error) func() {
	t.Helper()
	ctx := t.Context()
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: doctorNS, Name: name}, obj); err != nil {
		t.Fatal(err)
	}
	before := obj.DeepCopyObject().(client.Object)
	change(obj)
	if err := update(ctx, obj); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Error(err)
			return
		}
		before.SetResourceVersion(obj.GetResourceVersion())
		if err := update(context.Background(), before); err != nil {
			t.Error(err)
		}
	}
}

func (fx *doctorFixtures) editWebhook(t *testing.T, change func(*admissionregistrationv1.MutatingWebhookConfiguration)) func() {
	var w admissionregistrationv1.MutatingWebhookConfiguration
	if err := k8s.Get(t.Context(), client.ObjectKey{Name: doctor.WebhookConfig}, &w); err != nil {
		t.Fatal(err)
	}
	before := w.DeepCopy()
	change(&w)
	if err := k8s.Update(t.Context(), &w); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := k8s.Get(context.Background(), client.ObjectKey{Name: doctor.WebhookConfig}, &w); err != nil {
			t.Error(err)
			return
		}
		before.ResourceVersion = w.ResourceVersion
		if err := k8s.Update(context.Background(), before); err != nil {
			t.Error(err)
		}
	}
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) ([]byte, *testCA) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "doctor test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), &testCA{cert, key}
}

func newServingCert(t *testing.T, ca *testCA, host string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}
