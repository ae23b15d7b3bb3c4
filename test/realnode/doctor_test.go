package realnode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/cli"
	"github.com/podid/podid/internal/doctor"
	"github.com/podid/podid/internal/podcheck"
	"github.com/podid/podid/internal/serveridentity"
)

const podidNS = "podid-system"

// testDoctor breaks the installed system the ways users do, one at a time,
// and checks that `podid doctor` names each (the check, ✗ or !, and its
// text), that its live check (podid server performing the pod's exchange)
// agrees, and, for the healthy pod, how long `podid doctor pod` takes. It
// restarts neither the agent nor podid server (testDoctorNodeDown does).
func testDoctor(t *testing.T) {
	ctx := t.Context()
	const ns = "doctor-e2e"
	t.Cleanup(func() { cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	associate(t, ns, "app")
	admin := adminAWS()
	d := newDoctor(admin)
	healthy := runDeployment(t, ns, "app", "app")

	t.Run("healthy", func(t *testing.T) {
		r := diagnose(t)(d.Pod(ctx, ns, healthy.Name))
		if r.Failed {
			t.Fatal("the healthy pod has failures")
		}
		for _, s := range r.Sections {
			for _, c := range s.Checks {
				if c.Status != doctor.OK {
					t.Errorf("healthy pod: %s is %s: %s", c.Name, c.Status, c.Fact)
				}
			}
		}
		timeDoctorCLI(t, ns, healthy.Name)
	})

	t.Run("a check names who asked, never credentials", func(t *testing.T) {
		who, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		check := &v1alpha1.PodIdentityCheck{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "by-hand",
			Annotations: map[string]string{v1alpha1.AnnotationRequestedBy: "someone-else"}}, Spec: v1alpha1.PodIdentityCheckSpec{PodName: healthy.Name}}
		if err := sb.Client().Create(ctx, check); err != nil {
			t.Fatal(err)
		}
		if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
			err := sb.Client().Get(ctx, client.ObjectKeyFromObject(check), check)
			return err == nil && check.Status.Outcome != "", nil
		}); err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(check)
		if err != nil {
			t.Fatal(err)
		}
		user := who.Status.UserInfo.Username
		if check.Status.RequestedBy != user || check.Annotations[v1alpha1.AnnotationRequestedBy] != user || check.Status.Outcome != v1alpha1.CheckIssued ||
			strings.Contains(string(raw), "ASIA") || strings.Contains(strings.ToLower(string(raw)), "secret") {
			t.Errorf("the check %s, asked by %s: %s", check.Name, user, raw)
		}
	})

	t.Run("association in the wrong namespace", func(t *testing.T) {
		const other = "doctor-e2e-other"
		t.Cleanup(func() { cs.CoreV1().Namespaces().Delete(context.Background(), other, metav1.DeleteOptions{}) })
		createNamespaceSA(t, other, "app")
		pod := runDeployment(t, other, "app", "app")
		r := diagnose(t)(d.Pod(ctx, other, pod.Name))
		want(t, r, "association", doctor.Fail, "no PodIdentityAssociation for namespace doctor-e2e-other and ServiceAccount app (near misses: namespace doctor-e2e has one for a ServiceAccount app")
		wantLive(t, r, doctor.Fail, "ResourceNotFoundException: No Pod Identity association found for namespace doctor-e2e-other and service account app.")
	})

	t.Run("pod's ServiceAccount is not the associated one", func(t *testing.T) {
		pod := runDeployment(t, ns, "default-sa", "default")
		r := diagnose(t)(d.Pod(ctx, ns, pod.Name))
		want(t, r, "association", doctor.Fail, "the pod runs as ServiceAccount default: set spec.serviceAccountName to the associated one")
		wantLive(t, r, doctor.Fail, "ResourceNotFoundException")
	})

	t.Run("role without sts:TagSession", func(t *testing.T) {
		id, err := serveridentity.Read(ctx, sb.Client(), podidNS)
		if err != nil {
			t.Fatal(err)
		}
		role, err := iam.NewFromConfig(admin).CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("doctor-no-tagsession"),
			AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"` + id.PrincipalARN + `"},"Action":"sts:AssumeRole"}]}`)})
		if err != nil {
			t.Fatal(err)
		}
		associateRole(t, ns, "notag", *role.Role.Arn)
		pod := runDeployment(t, ns, "notag", "notag")
		r := diagnose(t)(d.Pod(ctx, ns, pod.Name))
		want(t, r, "role-trust", doctor.Fail, "but not tag the session: no statement allows "+id.PrincipalARN+" sts:TagSession")
		wantLive(t, r, doctor.Fail, "is not authorized to perform: sts:TagSession")
	})

	t.Run("NetworkPolicy denying egress to the agent", func(t *testing.T) {
		createNamespaceSA(t, "doctor-e2e-netpol", "app")
		t.Cleanup(func() {
			cs.CoreV1().Namespaces().Delete(context.Background(), "doctor-e2e-netpol", metav1.DeleteOptions{})
		})
		associateRole(t, "doctor-e2e-netpol", "", sb.Env["PODID_SAMPLE_ROLE_ARN"])
		if _, err := cs.NetworkingV1().NetworkPolicies("doctor-e2e-netpol").Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "default-deny-egress"},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress: []networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(intstr.FromInt32(53))}}}}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := runDeployment(t, "doctor-e2e-netpol", "app", "app")
		r := diagnose(t)(d.Pod(ctx, "doctor-e2e-netpol", pod.Name))
		want(t, r, "network-policy", doctor.Fail, "NetworkPolicies default-deny-egress select this pod and allow no egress to 169.254.170.23:80")
		wantLive(t, r, doctor.OK, "podid server obtained credentials for this pod")
	})

	t.Run("HTTP proxy without the agent in NO_PROXY", func(t *testing.T) {
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "proxy"},
			Data: map[string]string{"NO_PROXY": ".svc,.cluster.local"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := runDeployment(t, ns, "proxied", "app", corev1.EnvVar{Name: "HTTP_PROXY", Value: "http://127.0.0.1:3128"},
			corev1.EnvVar{Name: "NO_PROXY", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "proxy"}, Key: "NO_PROXY"}}})
		r := diagnose(t)(d.Pod(ctx, ns, pod.Name))
		want(t, r, "proxy", doctor.Fail, `NO_PROXY (".svc,.cluster.local" from ConfigMap proxy) lacks 169.254.170.23`)
		wantLive(t, r, doctor.OK, "podid server obtained credentials for this pod")
		// The pod's SDK indeed gets nothing: it asked the proxy.
		if id, err := sb.PodIdentity(ctx, pod); err == nil && id.Error == "" {
			t.Errorf("the proxied pod got credentials: %+v", id)
		}
	})

	t.Run("pod older than its association, IRSA annotation left", func(t *testing.T) {
		// An IRSA workload whose association was created, without a restart
		// and with the annotation left: podid's webhook gave the pod IRSA.
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "legacy",
			Annotations: map[string]string{"eks.amazonaws.com/role-arn": sb.Env["PODID_SAMPLE_ROLE_ARN"]}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := runDeployment(t, ns, "legacy", "legacy")
		time.Sleep(time.Second) // creation timestamps have seconds
		associateRole(t, ns, "legacy", sb.Env["PODID_SAMPLE_ROLE_ARN"])
		r := diagnose(t)(d.Pod(ctx, ns, pod.Name))
		want(t, r, "injection", doctor.Fail, "before its association")
		want(t, r, "injection", doctor.Fail, "kubectl rollout restart deployment/legacy -n doctor-e2e")
		want(t, r, "credential-chain", doctor.Fail, "container app has IRSA's AWS_WEB_IDENTITY_TOKEN_FILE")
		wantLive(t, r, doctor.OK, "podid server obtained credentials for this pod")
		sa := diagnose(t)(d.ServiceAccount(ctx, ns, "legacy"))
		want(t, sa, "irsa-annotation", doctor.Warn, "still has IRSA's annotation eks.amazonaws.com/role-arn")
	})

	t.Run("static keys in the pod", func(t *testing.T) {
		pod := runDeployment(t, ns, "keys", "app", corev1.EnvVar{Name: "AWS_ACCESS_KEY_ID", Value: "AKIAOLDSTATICKEY"}, corev1.EnvVar{Name: "AWS_SECRET_ACCESS_KEY", Value: "old"})
		r := diagnose(t)(d.Pod(ctx, ns, pod.Name))
		want(t, r, "credential-chain", doctor.Fail, "container app sets AWS_ACCESS_KEY_ID")
		wantLive(t, r, doctor.OK, "podid server obtained credentials for this pod")
	})

	t.Run("webhook caBundle wrong", func(t *testing.T) {
		// The node's own CA: a real CA, but not the one that signed podid's
		// serving certificate.
		nodeCA, err := os.ReadFile(sb.RealNode().CAFile())
		if err != nil {
			t.Fatal(err)
		}
		restore := patchWebhookCABundle(t, nodeCA)
		defer restore()
		r := d.Cluster(ctx)
		want(t, r, "webhook", doctor.Fail, "does not verify the serving certificate")
		want(t, r, "sts", doctor.OK, "STS answered podid server as")
	})
}

// testDoctorNodeDown takes the agent off the node and scales podid server
// away, and checks that doctor names each. It restarts both, so it runs
// after the checks that watch the agent's cache.
func testDoctorNodeDown(t *testing.T) {
	ctx := t.Context()
	const ns = "doctor-e2e-down"
	t.Cleanup(func() { cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	associate(t, ns, "app")
	d := newDoctor(adminAWS())
	healthy := runDeployment(t, ns, "app", "app")

	t.Run("agent DaemonSet scaled away from the node", func(t *testing.T) {
		restore := setAgentNodeSelector(t, map[string]string{"podid.io/agent": "nowhere"})
		defer restore()
		r := diagnose(t)(d.Pod(ctx, ns, healthy.Name))
		want(t, r, "agent", doctor.Fail, `does not run on node `+healthy.Spec.NodeName+`: its nodeSelector map[kubernetes.io/os:linux podid.io/agent:nowhere] does not match the node`)
		want(t, r, "agents", doctor.Warn, "the DaemonSet does not run on "+healthy.Spec.NodeName)
		wantLive(t, r, doctor.OK, "podid server obtained credentials for this pod")
	})

	t.Run("server down", func(t *testing.T) {
		restore := scaleServer(t, 0)
		defer restore()
		r := diagnose(t)(d.Pod(ctx, ns, healthy.Name))
		want(t, r, "server", doctor.Fail, "scaled to 0 replicas")
		wantLive(t, r, doctor.Fail, "podid server did not answer within 5s")
	})
}

// adminAWS is the sandbox's administrator of the emulator's IAM and STS.
func adminAWS() aws.Config {
	return aws.Config{Region: identity.Region, BaseEndpoint: aws.String(sb.Env["PODID_STS_ENDPOINT"]),
		Credentials: credentials.NewStaticCredentialsProvider(sb.Env["AWS_ACCESS_KEY_ID"], sb.Env["AWS_SECRET_ACCESS_KEY"], "")}
}

// newDoctor is `podid doctor` as the administrator runs it, with the live
// check.
func newDoctor(admin aws.Config) *doctor.Doctor {
	return &doctor.Doctor{Kube: sb.Client(), Namespace: podidNS, IAM: iam.NewFromConfig(admin), Live: true, LiveTimeout: 5 * time.Second}
}

// diagnose fails the test on doctor's error and logs the report.
func diagnose(t *testing.T) func(*doctor.Report, error) *doctor.Report {
	return func(r *doctor.Report, err error) *doctor.Report {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_ = r.WriteText(&b)
		t.Logf("podid doctor:\n%s", b.String())
		return r
	}
}

// want finds check name in the report with status and text in its fact or
// fix.
func want(t *testing.T, r *doctor.Report, name string, status doctor.Status, text string) {
	t.Helper()
	for _, s := range r.Sections {
		for _, c := range s.Checks {
			if c.Name == name && c.Status == status && strings.Contains(c.Fact+" fix: "+c.Fix, text) {
				return
			}
		}
	}
	t.Errorf("doctor did not report %s %s with %q", name, status, text)
}

func wantLive(t *testing.T, r *doctor.Report, status doctor.Status, text string) {
	t.Helper()
	want(t, r, "live-exchange", status, text)
}

func createNamespaceSA(t *testing.T, ns, sa string) {
	t.Helper()
	ctx := t.Context()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// associateRole associates ServiceAccount sa (created unless "" or present)
// of ns with role; sa "" means "app".
func associateRole(t *testing.T, ns, sa, role string) {
	t.Helper()
	ctx := t.Context()
	if sa == "" {
		sa = "app"
	} else if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	pia := &v1alpha1.PodIdentityAssociation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa},
		Spec: v1alpha1.PodIdentityAssociationSpec{ServiceAccount: sa, RoleARN: role}}
	if err := sb.Client().Create(ctx, pia); err != nil {
		t.Fatal(err)
	}
	if err := sb.WaitAssociationReady(ctx, pia); err != nil {
		t.Fatal(err)
	}
}

// runDeployment runs the sample workload as Deployment name and returns
// its running pod.
func runDeployment(t *testing.T, ns, name, sa string, env ...corev1.EnvVar) *corev1.Pod {
	t.Helper()
	if _, err := cs.AppsV1().Deployments(ns).Create(t.Context(), sb.WorkloadDeployment(ns, name, sa, 1, env...), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err := sb.WaitDeploymentPod(t.Context(), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

// timeDoctorCLI runs `podid doctor pod` as a user does (kubeconfig, AWS
// credentials in the environment) 20 times and reports the times.
func timeDoctorCLI(t *testing.T, ns, pod string) {
	asAdminInAWS(t)
	var times []time.Duration
	for range 20 {
		var out, errOut bytes.Buffer
		cmd := cli.NewRootCommand(cli.Streams{In: strings.NewReader(""), Out: &out, Err: &errOut})
		cmd.SetArgs([]string{"doctor", "pod", ns + "/" + pod, "--kubeconfig", sb.RealNode().Kubeconfig})
		began := time.Now()
		if err := cmd.ExecuteContext(t.Context()); err != nil {
			t.Fatalf("podid doctor pod: %v\n%s%s", err, out.String(), errOut.String())
		}
		times = append(times, time.Since(began))
		// Runs of a user, not a loop: podid answers one namespace's checks
		// at DefaultNamespaceRate a second, and a run over that share
		// would time the wait for it, not doctor.
		time.Sleep(time.Second / podcheck.DefaultNamespaceRate)
		if strings.Contains(out.String(), "✗") || !strings.Contains(out.String(), "✓ role-trust") || !strings.Contains(out.String(), "✓ live-exchange") {
			t.Fatalf("podid doctor pod on the healthy pod:\n%s", out.String())
		}
	}
	slices.Sort(times)
	t.Logf("figure: podid doctor pod (13 checks, IAM and the live exchange included) over 20 runs: p50 %s, p90 %s, max %s",
		times[9].Round(time.Millisecond), times[17].Round(time.Millisecond), times[19].Round(time.Millisecond))
}

func patchWebhookCABundle(t *testing.T, bundle []byte) func() {
	t.Helper()
	ctx := t.Context()
	mwc := cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
	cfg, err := mwc.Get(ctx, doctor.WebhookConfig, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	original := cfg.Webhooks[0].ClientConfig.CABundle
	cfg.Webhooks[0].ClientConfig.CABundle = bundle
	if _, err := mwc.Update(ctx, cfg, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return func() {
		// podid server may have put it back already; either way it ends
		// as it was.
		err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			cfg, err := mwc.Get(ctx, doctor.WebhookConfig, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			cfg.Webhooks[0].ClientConfig.CABundle = original
			_, err = mwc.Update(ctx, cfg, metav1.UpdateOptions{})
			return err == nil, nil
		})
		if err != nil {
			t.Errorf("restoring the webhook's caBundle: %v", err)
		}
	}
}

// setAgentNodeSelector changes the agent DaemonSet's nodeSelector and waits
// for the DaemonSet to settle; the restore puts the old one back and waits
// for the agent to be ready again.
func setAgentNodeSelector(t *testing.T, selector map[string]string) func() {
	t.Helper()
	// A merge patch: the chart's kubernetes.io/os stays, and only the keys
	// added here are taken away again.
	set := func(ctx context.Context, nodeSelector string) error {
		patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"nodeSelector":%s}}}}`, nodeSelector)
		if _, err := cs.AppsV1().DaemonSets(podidNS).Patch(ctx, doctor.AgentDaemonSet, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return err
		}
		return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			ds, err := cs.AppsV1().DaemonSets(podidNS).Get(ctx, doctor.AgentDaemonSet, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			pods, err := cs.CoreV1().Pods(podidNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=agent"})
			if err != nil {
				return false, nil
			}
			st := ds.Status
			settled := st.ObservedGeneration == ds.Generation && st.NumberReady == st.DesiredNumberScheduled && st.UpdatedNumberScheduled == st.DesiredNumberScheduled
			return settled && len(pods.Items) == int(st.DesiredNumberScheduled), nil
		})
	}
	added, _ := json.Marshal(selector)
	removed := map[string]any{}
	for k := range selector {
		removed[k] = nil
	}
	undo, _ := json.Marshal(removed)
	if err := set(t.Context(), string(added)); err != nil {
		t.Fatalf("moving the agent DaemonSet: %v", err)
	}
	return func() {
		if err := set(context.Background(), string(undo)); err != nil {
			t.Errorf("restoring the agent DaemonSet: %v", err)
		}
	}
}

// scaleServer scales podid server and waits until that many replicas are
// ready (and, when up again, a leader answers PodIdentityChecks).
func scaleServer(t *testing.T, replicas int32) func() {
	t.Helper()
	scale := func(ctx context.Context, n int32) error {
		patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)
		if _, err := cs.AppsV1().Deployments(podidNS).Patch(ctx, doctor.ServerDeployment, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return err
		}
		return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			d, err := cs.AppsV1().Deployments(podidNS).Get(ctx, doctor.ServerDeployment, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			pods, err := cs.CoreV1().Pods(podidNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=server"})
			return err == nil && d.Status.ObservedGeneration == d.Generation && d.Status.ReadyReplicas == n && len(pods.Items) == int(n) && serverReady(d), nil
		})
	}
	before, err := cs.AppsV1().Deployments(podidNS).Get(t.Context(), doctor.ServerDeployment, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := scale(t.Context(), replicas); err != nil {
		t.Fatalf("scaling podid server to %d: %v", replicas, err)
	}
	return func() {
		ctx := context.Background()
		if err := scale(ctx, *before.Spec.Replicas); err != nil {
			t.Errorf("scaling podid server back: %v", err)
			return
		}
		// A leader is elected and answers checks again.
		d := &doctor.Doctor{Kube: sb.Client(), Namespace: podidNS, Live: true, LiveTimeout: 5 * time.Second}
		if err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			return !d.Cluster(ctx).Failed, nil
		}); err != nil {
			t.Errorf("podid is not healthy again after the restart: %v", err)
		}
	}
}

func serverReady(d *appsv1.Deployment) bool { return d.Status.UnavailableReplicas == 0 }
