package doctor

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/serveridentity"
)

// The chart's names (charts/podid): doctor finds podid by them in its
// namespace.
const (
	ServerDeployment  = "podid-server"
	AgentDaemonSet    = "podid-agent"
	WebhookConfig     = "podid"
	WebhookName       = "pods.podid.io"
	WebhookService    = "podid"
	TLSSecret         = "podid-tls"
	LeaderElectionID  = "podid-server.podid.io"
	agentComponentKey = "app.kubernetes.io/component"
)

// clusterState is what doctor reads of podid's own objects, each with the
// error reading it gave.
type clusterState struct {
	server      *appsv1.Deployment
	serverErr   error
	lease       *coordinationv1.Lease
	leaseErr    error
	webhook     *admissionregistrationv1.MutatingWebhookConfiguration
	webhookErr  error
	tls         *corev1.Secret
	tlsErr      error
	agents      *appsv1.DaemonSet
	agentsErr   error
	agentPods   []corev1.Pod
	nodes       []corev1.Node
	nodesErr    error
	identity    *serveridentity.Identity
	identityErr error
	// rolesAnywhere is read when podid server's identity is Roles Anywhere.
	rolesAnywhere *rolesAnywhereState
	agentPodsErr  error
	// serverPods are the names of podid server's pods.
	serverPods    []string
	serverPodsErr error
}

// readCluster reads podid's objects, all at once.
func (d *Doctor) readCluster(ctx context.Context) *clusterState {
	s := &clusterState{}
	ns := d.Namespace
	get := func(name string, obj client.Object) error {
		return d.Kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
	}
	parallel(
		func() { s.server = &appsv1.Deployment{}; s.serverErr = get(ServerDeployment, s.server) },
		func() { s.lease = &coordinationv1.Lease{}; s.leaseErr = get(LeaderElectionID, s.lease) },
		func() {
			s.webhook = &admissionregistrationv1.MutatingWebhookConfiguration{}
			s.webhookErr = d.Kube.Get(ctx, client.ObjectKey{Name: WebhookConfig}, s.webhook)
		},
		func() { s.tls = &corev1.Secret{}; s.tlsErr = get(TLSSecret, s.tls) },
		func() { s.agents = &appsv1.DaemonSet{}; s.agentsErr = get(AgentDaemonSet, s.agents) },
		func() {
			var l corev1.PodList
			s.agentPodsErr = d.Kube.List(ctx, &l, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/name": "podid", agentComponentKey: "agent"})
			s.agentPods = l.Items
		},
		func() {
			var l corev1.NodeList
			s.nodesErr = d.Kube.List(ctx, &l)
			s.nodes = l.Items
		},
		func() { s.identity, s.identityErr = serveridentity.Read(ctx, d.Kube, ns) },
		func() {
			var l corev1.PodList
			s.serverPodsErr = d.Kube.List(ctx, &l, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/name": "podid", agentComponentKey: "server"})
			for _, p := range l.Items {
				s.serverPods = append(s.serverPods, p.Name)
			}
		},
	)
	if s.identityErr == nil && s.identity.Source == serveridentity.SourceRolesAnywhere {
		s.rolesAnywhere = d.readRolesAnywhere(ctx, s.identity)
	}
	return s
}

// clusterChecks are the checks of podid itself.
func (d *Doctor) clusterChecks(s *clusterState) []Check {
	checks := []Check{d.checkServer(s), d.checkWebhook(s), d.checkAgents(s), d.checkIdentity(s)}
	if s.rolesAnywhere != nil {
		checks = append(checks, d.checkRolesAnywhere(s))
	}
	return checks
}

func (d *Doctor) checkServer(s *clusterState) Check {
	const name = "server"
	ns := d.Namespace
	if s.serverErr != nil {
		if apierrors.IsNotFound(s.serverErr) {
			return failed(name, fmt.Sprintf("no Deployment %s/%s", ns, ServerDeployment),
				fmt.Sprintf("install podid (helm install podid charts/podid -n %s), or name its namespace with --podid-namespace", ns))
		}
		return skipped(name, fmt.Sprintf("could not read Deployment %s/%s: %v", ns, ServerDeployment, short(s.serverErr)))
	}
	want := int32(1)
	if s.server.Spec.Replicas != nil {
		want = *s.server.Spec.Replicas
	}
	ready := s.server.Status.ReadyReplicas
	fact := fmt.Sprintf("%d of %d replicas ready", ready, want)
	if want == 0 || ready == 0 {
		fix := fmt.Sprintf("kubectl -n %s describe deployment %s; kubectl -n %s logs deployment/%s", ns, ServerDeployment, ns, ServerDeployment)
		if want == 0 {
			fact = "scaled to 0 replicas"
			fix = fmt.Sprintf("kubectl -n %s scale deployment %s --replicas=2", ns, ServerDeployment)
		}
		return failed(name, fact+": no pod gets credentials, no pod is injected (the webhook fails closed) and associations are not reconciled", fix)
	}
	leader, leaderOK := d.leader(s)
	if !leaderOK {
		return failed(name, fact+"; "+leader,
			fmt.Sprintf("kubectl -n %s logs deployment/%s (leader election): without a leader associations are not reconciled and doctor's live checks go unanswered", ns, ServerDeployment))
	}
	if ready < want {
		return warn(name, fact+"; "+leader, fmt.Sprintf("kubectl -n %s describe deployment %s", ns, ServerDeployment))
	}
	return ok(name, fact+"; "+leader)
}

// leader says which replica leads, and whether that is a live one.
func (d *Doctor) leader(s *clusterState) (string, bool) {
	if s.leaseErr != nil {
		if apierrors.IsNotFound(s.leaseErr) {
			return fmt.Sprintf("no leader (no Lease %s/%s)", d.Namespace, LeaderElectionID), false
		}
		return fmt.Sprintf("leader not checked (Lease: %v)", short(s.leaseErr)), true
	}
	spec := s.lease.Spec
	holder := ""
	if spec.HolderIdentity != nil {
		holder = *spec.HolderIdentity
	}
	if holder == "" || spec.RenewTime == nil {
		return "no leader (the Lease has no holder)", false
	}
	// controller-runtime's identity is "<hostname>_<uuid>"; a pod's
	// hostname is its name.
	podName, _, _ := strings.Cut(holder, "_")
	duration := 15 * time.Second
	if spec.LeaseDurationSeconds != nil {
		duration = time.Duration(*spec.LeaseDurationSeconds) * time.Second
	}
	age := d.now().Sub(spec.RenewTime.Time).Round(time.Second)
	if age > duration {
		return fmt.Sprintf("no leader: the Lease was last renewed %s ago by %s", age, podName), false
	}
	return fmt.Sprintf("leader %s", podName), true
}

func (d *Doctor) checkWebhook(s *clusterState) Check {
	const name = "webhook"
	if s.webhookErr != nil {
		if apierrors.IsNotFound(s.webhookErr) {
			return failed(name, "no MutatingWebhookConfiguration "+WebhookConfig+": pods are not injected",
				"reinstall the chart (helm upgrade --install podid charts/podid -n "+d.Namespace+")")
		}
		return skipped(name, fmt.Sprintf("could not read MutatingWebhookConfiguration %s: %v", WebhookConfig, short(s.webhookErr)))
	}
	i := slices.IndexFunc(s.webhook.Webhooks, func(w admissionregistrationv1.MutatingWebhook) bool { return w.Name == WebhookName })
	if i < 0 {
		return failed(name, fmt.Sprintf("MutatingWebhookConfiguration %s has no webhook %s", WebhookConfig, WebhookName), "reinstall the chart")
	}
	wh := s.webhook.Webhooks[i]
	if svc := wh.ClientConfig.Service; svc == nil || svc.Namespace != d.Namespace || svc.Name != WebhookService {
		return failed(name, fmt.Sprintf("webhook %s does not call Service %s/%s", WebhookName, d.Namespace, WebhookService), "reinstall the chart, or name podid's namespace with --podid-namespace")
	}
	roots := x509.NewCertPool()
	cas := 0
	for rest := wh.ClientConfig.CABundle; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			roots.AddCert(c)
			cas++
		}
	}
	refix := fmt.Sprintf("podid server writes the caBundle within a minute (cert-manager's CA injector, with certManager.enabled); if it stays wrong, kubectl -n %s logs deployment/%s, or delete Secret %s/%s so that podid server issues a new CA", d.Namespace, ServerDeployment, d.Namespace, TLSSecret)
	if cas == 0 {
		return failed(name, "the caBundle of webhook "+WebhookName+" holds no certificate: the API server cannot call it, and pods are created without credentials (or not at all)", refix)
	}
	if s.tlsErr != nil {
		return warn(name, fmt.Sprintf("caBundle holds %d CA certificate(s); the serving certificate was not checked (Secret %s/%s: %v)", cas, d.Namespace, TLSSecret, short(s.tlsErr)),
			"run doctor as someone who may read that Secret to check that the caBundle verifies it")
	}
	block, _ := pem.Decode(s.tls.Data[corev1.TLSCertKey])
	if block == nil {
		return failed(name, fmt.Sprintf("Secret %s/%s has no certificate in %s", d.Namespace, TLSSecret, corev1.TLSCertKey), refix)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return failed(name, fmt.Sprintf("Secret %s/%s holds no valid certificate: %v", d.Namespace, TLSSecret, err), refix)
	}
	host := WebhookService + "." + d.Namespace + ".svc"
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, CurrentTime: d.now()}); err != nil {
		return failed(name, fmt.Sprintf("the caBundle of webhook %s does not verify the serving certificate (Secret %s/%s) for %s: %v; the API server refuses to call the webhook, so pods are created without credentials (or not at all)", WebhookName, d.Namespace, TLSSecret, host, err), refix)
	}
	left := cert.NotAfter.Sub(d.now())
	fact := fmt.Sprintf("caBundle verifies the serving certificate for %s (expires in %s)", host, days(left))
	if left < 7*24*time.Hour {
		return warn(name, fact, "podid server renews it 30 days ahead: kubectl -n "+d.Namespace+" logs deployment/"+ServerDeployment)
	}
	return ok(name, fact)
}

func (d *Doctor) checkAgents(s *clusterState) Check {
	const name = "agents"
	if c, done := d.agentsMissing(s, name); done {
		return c
	}
	var excluded, missing []string
	covered := 0
	for i := range s.nodes {
		n := &s.nodes[i]
		if n.Spec.Unschedulable {
			continue
		}
		if why := runsOn(s.agents, n); why != "" {
			excluded = append(excluded, n.Name+" ("+why+")")
			continue
		}
		if _, why := agentOn(s, n.Name); why != "" {
			missing = append(missing, n.Name+" ("+why+")")
			continue
		}
		covered++
	}
	fact := fmt.Sprintf("a ready agent on %d of %d schedulable nodes", covered, covered+len(excluded)+len(missing))
	ds := fmt.Sprintf("kubectl -n %s describe daemonset %s", d.Namespace, AgentDaemonSet)
	if len(missing) > 0 {
		return failed(name, fact+"; none ready on "+list(missing), ds+"; kubectl -n "+d.Namespace+" logs on the node's agent pod")
	}
	if len(excluded) > 0 {
		return warn(name, fact+"; the DaemonSet does not run on "+list(excluded)+": pods there get no credentials",
			"if pods needing AWS run there, let the agent run there too: its chart values agent.nodeSelector, agent.tolerations, agent.affinity")
	}
	return ok(name, fact)
}

// agentsMissing reports the agent DaemonSet itself absent or unreadable.
func (d *Doctor) agentsMissing(s *clusterState, name string) (Check, bool) {
	if s.agentsErr != nil {
		if apierrors.IsNotFound(s.agentsErr) {
			return failed(name, fmt.Sprintf("no DaemonSet %s/%s: no node serves credentials", d.Namespace, AgentDaemonSet), "install the chart with agent.enabled=true"), true
		}
		return skipped(name, fmt.Sprintf("could not read DaemonSet %s/%s: %v", d.Namespace, AgentDaemonSet, short(s.agentsErr))), true
	}
	if s.agentPodsErr != nil {
		return skipped(name, fmt.Sprintf("could not list podid's pods: %v", short(s.agentPodsErr))), true
	}
	return Check{}, false
}

// runsOn says why the DaemonSet's pods cannot run on node ("" if they can).
func runsOn(ds *appsv1.DaemonSet, node *corev1.Node) string {
	spec := ds.Spec.Template.Spec
	pod := &corev1.Pod{Spec: spec}
	if ok, _ := nodeaffinity.GetRequiredNodeAffinity(pod).Match(node); !ok {
		if len(spec.NodeSelector) > 0 {
			return fmt.Sprintf("its nodeSelector %v does not match the node", spec.NodeSelector)
		}
		return "its node affinity excludes the node"
	}
	tolerations := append(slices.Clone(spec.Tolerations), daemonTolerations...)
	for _, t := range node.Spec.Taints {
		if t.Effect == corev1.TaintEffectPreferNoSchedule || t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable {
			// A node not ready is its own problem, not the DaemonSet's.
			continue
		}
		if !corev1helpers.TolerationsTolerateTaint(logr.Discard(), tolerations, &t, false) {
			return fmt.Sprintf("it does not tolerate the node's taint %s", t.ToString())
		}
	}
	return ""
}

// daemonTolerations are those the DaemonSet controller adds to every
// DaemonSet's pods.
var daemonTolerations = []corev1.Toleration{
	{Key: corev1.TaintNodeDiskPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: corev1.TaintNodeMemoryPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: corev1.TaintNodePIDPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
}

// agentOn finds the ready agent pod on node, or says why there is none.
func agentOn(s *clusterState, node string) (*corev1.Pod, string) {
	var notReady *corev1.Pod
	for i := range s.agentPods {
		p := &s.agentPods[i]
		if p.Spec.NodeName != node || p.DeletionTimestamp != nil {
			continue
		}
		if podReady(p) {
			return p, ""
		}
		notReady = p
	}
	if notReady != nil {
		return notReady, fmt.Sprintf("agent pod %s is %s", notReady.Name, podState(notReady))
	}
	return nil, "no agent pod"
}

func (d *Doctor) checkIdentity(s *clusterState) Check {
	const name = "aws-identity"
	if s.identityErr != nil {
		return failed(name, s.identityErr.Error(), fmt.Sprintf("kubectl -n %s logs deployment/%s | grep server-identity", d.Namespace, ServerDeployment))
	}
	id := s.identity
	if id.Error != "" {
		return failed(name, fmt.Sprintf("podid server was %s, but its AWS identity now fails: %s", id.CallerARN, id.Error),
			fmt.Sprintf("kubectl -n %s logs deployment/%s | grep -e server-identity -e roles-anywhere", d.Namespace, ServerDeployment))
	}
	via := ""
	if id.Source == serveridentity.SourceRolesAnywhere {
		via = " through IAM Roles Anywhere"
	}
	failing := id.Failing(d.now())
	if s.serverPodsErr == nil {
		// A replica gone (rolled out, deleted) failed nothing since.
		failing = slices.DeleteFunc(failing, func(r string) bool { return !slices.Contains(s.serverPods, r) })
	}
	if len(failing) > 0 {
		var each []string
		for _, r := range failing {
			each = append(each, fmt.Sprintf("%s: %s", r, id.Replicas[r].Error))
		}
		return failed(name, fmt.Sprintf("podid server is %s%s, but %d of its replicas cannot use their own AWS identity, so they fail the exchanges they serve (%s)", id.CallerARN, via, len(failing), strings.Join(each, "; ")),
			fmt.Sprintf("kubectl -n %s logs %s | grep -e server-identity -e roles-anywhere", d.Namespace, failing[0]))
	}
	return ok(name, fmt.Sprintf("podid server is %s%s: roles trust %s; cluster %s", id.CallerARN, via, id.PrincipalARN, id.Cluster.ClusterName))
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podState is a pod's phase, or the reason a container is waiting.
func podState(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			return w.Reason
		}
	}
	if p.Status.Phase == corev1.PodRunning {
		return "running, not ready"
	}
	return strings.ToLower(string(p.Status.Phase))
}

func list(items []string) string {
	if len(items) > 5 {
		return strings.Join(items[:5], ", ") + fmt.Sprintf(" and %d more", len(items)-5)
	}
	return strings.Join(items, ", ")
}

func days(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	}
	return d.Round(time.Minute).String()
}

// short is an API error's message without the reason's boilerplate.
func short(err error) string {
	if apierrors.IsForbidden(err) {
		return "forbidden to you"
	}
	return err.Error()
}
