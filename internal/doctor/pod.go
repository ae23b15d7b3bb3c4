package doctor

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/associationstore"
	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/internal/webhook"
)

// podContext is what doctor reads around one pod.
type podContext struct {
	pod       *corev1.Pod
	sa        string
	assoc     *v1alpha1.PodIdentityAssociation
	nearMiss  []string
	assocErr  error
	env       map[string][]resolvedEnv // container name → its environment
	policies  []networkPolicy
	policyErr error
	cilium    *ciliumPolicies // nil where Cilium's resources do not exist
	ciliumErr error
	nodePods  []corev1.Pod
	nodeErr   error
	owner     string // "deployment/x", for the restart command
}

// podSection runs the checks of one pod.
func (d *Doctor) podSection(ctx context.Context, cs *clusterState, roles *roleCache, pod *corev1.Pod) Section {
	pc := &podContext{pod: pod, sa: serviceAccountOf(pod)}
	parallel(
		func() { pc.assoc, pc.nearMiss, pc.assocErr = d.findAssociation(ctx, pod.Namespace, pc.sa) },
		func() { pc.env = d.resolveEnv(ctx, pod) },
		func() { pc.policies, pc.policyErr = d.networkPolicies(ctx, pod.Namespace) },
		func() { pc.cilium, pc.ciliumErr = d.ciliumPolicies(ctx, pod.Namespace) },
		func() { pc.nodePods, pc.nodeErr = d.podsOnNode(ctx, pod.Spec.NodeName) },
		func() { pc.owner = d.owner(ctx, pod) },
	)
	var live Check
	var trust []Check
	parallel(
		func() { trust = d.trustChecks(ctx, cs, roles, pc.assoc, pod, pc.assocErr) },
		func() {
			if d.Live {
				live = d.livePod(ctx, pod)
			}
		},
	)
	checks := []Check{
		d.checkAgentOnNode(cs, pod),
		checkAssociation(pc),
		checkInjection(pc),
		checkCredentialChain(pc),
		checkProxy(pc),
		checkNetworkPolicies(pc),
		d.checkHostPorts(pc),
	}
	checks = append(checks, trust...)
	if d.Live {
		checks = append(checks, live)
	}
	return Section{Subject: fmt.Sprintf("pod %s/%s (ServiceAccount %s, node %s)", pod.Namespace, pod.Name, pc.sa, orNone(pod.Spec.NodeName)), Checks: checks}
}

// serviceAccountSection checks what belongs to the ServiceAccount rather
// than to a pod.
func (d *Doctor) serviceAccountSection(ctx context.Context, namespace, name string) Section {
	sec := Section{Subject: fmt.Sprintf("serviceaccount %s/%s", namespace, name)}
	var sa corev1.ServiceAccount
	err := d.Kube.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &sa)
	switch {
	case apierrors.IsNotFound(err):
		sec.Checks = append(sec.Checks, failed("serviceaccount", "no ServiceAccount "+namespace+"/"+name+": pods naming it are not created",
			fmt.Sprintf("kubectl create serviceaccount %s -n %s", name, namespace)))
	case err != nil:
		sec.Checks = append(sec.Checks, skipped("serviceaccount", "could not read it: "+short(err)))
	default:
		sec.Checks = append(sec.Checks, ok("serviceaccount", "exists"))
		if role := sa.Annotations[podidentity.AnnotationRoleARN]; role != "" {
			sec.Checks = append(sec.Checks, warn("irsa-annotation", fmt.Sprintf("the ServiceAccount still has IRSA's annotation %s=%s: where an IRSA webhook runs, its pods get web identity variables, which the SDKs use before Pod Identity", podidentity.AnnotationRoleARN, role),
				fmt.Sprintf("podid migrate irsa -n %s --service-account %s --remove-annotation --approve (undone by podid migrate rollback), or kubectl annotate serviceaccount %s -n %s %s-", namespace, name, name, namespace, podidentity.AnnotationRoleARN)))
		}
	}
	pc := &podContext{sa: name}
	pc.assoc, pc.nearMiss, pc.assocErr = d.findAssociation(ctx, namespace, name)
	pc.pod = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace}}
	sec.Checks = append(sec.Checks, checkAssociation(pc))
	return sec
}

// findAssociation returns the association of namespace/sa, or near misses:
// the same ServiceAccount name elsewhere, other ServiceAccounts here.
// A cluster association, in force over the namespace's own, is looked up
// first; a user who may not read those is told nothing of them.
func (d *Doctor) findAssociation(ctx context.Context, namespace, sa string) (*v1alpha1.PodIdentityAssociation, []string, error) {
	if cluster, err := associationstore.GetKind(ctx, d.Kube, namespace, sa, true); err == nil && cluster.Cluster.DeletionTimestamp == nil {
		return cluster.View(), nil, nil
	}
	var here v1alpha1.PodIdentityAssociationList
	if err := d.Kube.List(ctx, &here, client.InNamespace(namespace)); err != nil {
		return nil, nil, err
	}
	var near []string
	for i := range here.Items {
		a := &here.Items[i]
		if a.Spec.ServiceAccount == sa && a.DeletionTimestamp == nil {
			return a, nil, nil
		}
		near = append(near, fmt.Sprintf("ServiceAccount %s in this namespace has one", a.Spec.ServiceAccount))
	}
	var all v1alpha1.PodIdentityAssociationList
	if err := d.Kube.List(ctx, &all); err == nil {
		for _, a := range all.Items {
			if a.Spec.ServiceAccount == sa && a.Namespace != namespace {
				near = append([]string{fmt.Sprintf("namespace %s has one for a ServiceAccount %s", a.Namespace, sa)}, near...)
			}
		}
	}
	var clusterAll v1alpha1.ClusterPodIdentityAssociationList
	if err := d.Kube.List(ctx, &clusterAll); err == nil {
		for _, a := range clusterAll.Items {
			if a.Spec.ServiceAccount == sa && a.Spec.Namespace != namespace {
				near = append([]string{fmt.Sprintf("ClusterPodIdentityAssociation %s is for a ServiceAccount %s in namespace %s", a.Name, sa, a.Spec.Namespace)}, near...)
			}
		}
	}
	return nil, near, nil
}

func checkAssociation(pc *podContext) Check {
	const name = "association"
	ns := pc.pod.Namespace
	if pc.assocErr != nil {
		return skipped(name, "could not list PodIdentityAssociations: "+short(pc.assocErr))
	}
	create := fmt.Sprintf("podid association create -n %s --service-account %s --role-arn ARN", ns, pc.sa)
	if pc.assoc == nil {
		fact := fmt.Sprintf("no PodIdentityAssociation for namespace %s and ServiceAccount %s", ns, pc.sa)
		if len(pc.nearMiss) > 0 {
			fact += " (near misses: " + list(pc.nearMiss) + ")"
		}
		fix := create
		if pc.sa == "default" && len(pc.nearMiss) > 0 {
			fix = "the pod runs as ServiceAccount default: set spec.serviceAccountName to the associated one and recreate it, or " + create
		} else if len(pc.nearMiss) > 0 {
			fix = "an association must name exactly the pod's namespace and ServiceAccount: " + create + ", or run the pod as the associated ServiceAccount"
		}
		return failed(name, fact, fix)
	}
	a := pc.assoc
	fact := fmt.Sprintf("%s (%s) for %s/%s: role %s", a.Name, a.Status.AssociationID, ns, pc.sa, a.Spec.RoleARN)
	if a.Spec.TargetRoleARN != "" {
		fact += ", target role " + a.Spec.TargetRoleARN
	}
	ready := meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionReady)
	switch {
	case ready == nil:
		return failed(name, fact+"; not reconciled yet (no Ready condition)", "podid server's leader reconciles associations: check the server section above")
	case ready.Reason == v1alpha1.ReasonInvalidPolicy:
		return failed(name, fact+"; "+ready.Message, fmt.Sprintf("fix spec.policy: kubectl edit podidentityassociation %s -n %s", a.Name, ns))
	case ready.Status != metav1.ConditionTrue:
		return warn(name, fact+"; Ready is "+string(ready.Status)+" ("+ready.Reason+": "+ready.Message+")", "see kubectl describe podidentityassociation "+a.Name+" -n "+ns)
	}
	return ok(name, fact)
}

// checkInjection: the webhook gave the pod the variables and the token.
func checkInjection(pc *podContext) Check {
	const name = "injection"
	pod := pc.pod
	var missing, done []string
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		if envValue(pc.env[c.Name], podidentity.EnvCredentialsFullURI) != "" && envValue(pc.env[c.Name], podidentity.EnvAuthorizationTokenFile) != "" {
			done = append(done, c.Name)
		} else if !slices.Contains(strings.Split(pod.Annotations[podidentity.AnnotationSkipContainers], ","), c.Name) {
			missing = append(missing, c.Name)
		}
	}
	audience := tokenAudience(pod)
	if len(missing) == 0 && len(done) > 0 {
		if audience != podidentity.Audience {
			return failed(name, fmt.Sprintf("injected, but the token volume's audience is %q, not %s", audience, podidentity.Audience),
				"restart the pod so the webhook injects it afresh; do not set the token volume yourself")
		}
		return ok(name, fmt.Sprintf("%s and its token (audience %s) in %s", podidentity.EnvCredentialsFullURI, audience, strings.Join(done, ", ")))
	}
	if pc.assoc == nil {
		return skipped(name, "no association, so nothing to inject")
	}
	restart := restartCommand(pc)
	if pod.Labels[webhook.LabelInject] == "false" {
		return failed(name, fmt.Sprintf("not injected: the pod is labelled %s=false", webhook.LabelInject), "remove the label from the pod template, then "+restart)
	}
	if len(done) > 0 {
		return warn(name, "containers "+strings.Join(missing, ", ")+" have no credentials variables (the others do): they set some AWS_CONTAINER_* variable themselves or are skipped",
			"leave AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE to the webhook")
	}
	if created := pc.assoc.CreationTimestamp; pod.CreationTimestamp.Before(&created) {
		return failed(name, fmt.Sprintf("not injected: the pod was created at %s, before its association (%s); the webhook injects pods only when they are created",
			pod.CreationTimestamp.UTC().Format(time.RFC3339), created.UTC().Format(time.RFC3339)), restart)
	}
	return failed(name, "not injected although created after its association: the webhook was not called or skipped the pod (a namespace labelled "+webhook.LabelInject+"=false, podid's own namespace and kube-system are excluded; with failurePolicy Ignore, podid server down at the time)",
		"check the webhook in the section above, then "+restart)
}

// restartCommand recreates the pod the way its owner does.
func restartCommand(pc *podContext) string {
	if pc.owner != "" {
		return fmt.Sprintf("kubectl rollout restart %s -n %s", pc.owner, pc.pod.Namespace)
	}
	return fmt.Sprintf("delete and recreate the pod: kubectl delete pod %s -n %s (it has no controller to recreate it)", pc.pod.Name, pc.pod.Namespace)
}

// owner names the pod's Deployment, StatefulSet or DaemonSet.
func (d *Doctor) owner(ctx context.Context, pod *corev1.Pod) string {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return ""
	}
	switch ref.Kind {
	case "StatefulSet", "DaemonSet":
		return strings.ToLower(ref.Kind) + "/" + ref.Name
	case "ReplicaSet":
		var rs appsv1.ReplicaSet
		if err := d.Kube.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: ref.Name}, &rs); err == nil {
			if dep := metav1.GetControllerOf(&rs); dep != nil && dep.Kind == "Deployment" {
				return "deployment/" + dep.Name
			}
		}
	}
	return ""
}

func tokenAudience(pod *corev1.Pod) string {
	for _, v := range pod.Spec.Volumes {
		if v.Name != podidentity.TokenVolumeName || v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if s.ServiceAccountToken != nil {
				return s.ServiceAccountToken.Audience
			}
		}
	}
	return ""
}

// checkCredentialChain: what the SDKs find before the container
// credentials provider.
func checkCredentialChain(pc *podContext) Check {
	const name = "credential-chain"
	var fails, warns []string
	for _, c := range slices.Concat(pc.pod.Spec.InitContainers, pc.pod.Spec.Containers) {
		env := pc.env[c.Name]
		if v := envSource(env, "AWS_ACCESS_KEY_ID"); v != "" {
			fails = append(fails, fmt.Sprintf("container %s sets AWS_ACCESS_KEY_ID (%s): static keys come first in every SDK's chain", c.Name, v))
		}
		if v := envSource(env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"); v != "" {
			fails = append(fails, fmt.Sprintf("container %s sets AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (%s): the SDKs ask the ECS endpoint it names, never %s", c.Name, v, podidentity.EnvCredentialsFullURI))
		}
		if envValue(env, podidentity.EnvWebIdentityTokenFile) != "" {
			fails = append(fails, fmt.Sprintf("container %s has IRSA's %s: web identity comes before Pod Identity in every SDK's chain", c.Name, podidentity.EnvWebIdentityTokenFile))
		}
		for _, v := range []string{"AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"} {
			if envValue(env, v) != "" {
				warns = append(warns, fmt.Sprintf("container %s sets %s: a profile with credentials would come first", c.Name, v))
			}
		}
	}
	if len(fails) > 0 {
		return failed(name, list(fails), "remove the static keys, the ECS variable or IRSA from the pod (for IRSA: podid migrate irsa --remove-annotation, then restart the workload)")
	}
	if len(warns) > 0 {
		return warn(name, list(warns), "make sure that profile has no credentials of its own")
	}
	return ok(name, "nothing in the pod spec's environment comes before Pod Identity in the SDKs' chain")
}

// checkProxy: an HTTP proxy the SDK would use to reach the agent.
func checkProxy(pc *podContext) Check {
	const name = "proxy"
	host := agentHost(pc)
	var bad []string
	for _, c := range slices.Concat(pc.pod.Spec.InitContainers, pc.pod.Spec.Containers) {
		env := pc.env[c.Name]
		proxy := ""
		for _, v := range []string{"HTTP_PROXY", "http_proxy"} {
			if p := envValue(env, v); p != "" {
				proxy = v + "=" + p
			}
		}
		if proxy == "" {
			continue
		}
		noProxy := envValue(env, "NO_PROXY") + "," + envValue(env, "no_proxy")
		if !bypasses(noProxy, host) {
			src := envSource(env, "NO_PROXY")
			if src == "" {
				src = "unset"
			}
			bad = append(bad, fmt.Sprintf("container %s sends plain HTTP through %s and NO_PROXY (%s) lacks %s", c.Name, proxy, src, host))
		}
	}
	if len(bad) > 0 {
		return failed(name, list(bad)+": the SDK asks the proxy for credentials, and the proxy cannot reach the node's agent",
			"add "+host+" to NO_PROXY (podid's webhook does for a literal value; one from a ConfigMap or Secret must be changed there), then restart the pod")
	}
	return ok(name, "no HTTP proxy in the way of "+host)
}

// agentHost is where the pod's SDK goes for credentials.
func agentHost(pc *podContext) string {
	for _, env := range pc.env {
		if u, err := url.Parse(envValue(env, podidentity.EnvCredentialsFullURI)); err == nil && u.Hostname() != "" {
			return u.Hostname()
		}
	}
	u, _ := url.Parse(podidentity.CredentialsURI)
	return u.Hostname()
}

// checkHostPorts: another pod on the node holding the agent's ports.
func (d *Doctor) checkHostPorts(pc *podContext) Check {
	const name = "host-ports"
	if pc.pod.Spec.NodeName == "" {
		return skipped(name, "the pod is not scheduled yet")
	}
	if pc.nodeErr != nil {
		return skipped(name, "could not list the node's pods: "+short(pc.nodeErr))
	}
	var clashes []string
	for _, p := range pc.nodePods {
		if p.Namespace == d.Namespace && p.Labels[agentComponentKey] == "agent" {
			continue
		}
		for _, c := range p.Spec.Containers {
			for _, port := range c.Ports {
				hp := port.HostPort
				if p.Spec.HostNetwork {
					hp = port.ContainerPort
				}
				if hp == 80 || hp == agentHealthPort {
					clashes = append(clashes, fmt.Sprintf("pod %s/%s holds host port %d", p.Namespace, p.Name, hp))
				}
			}
		}
	}
	if len(clashes) > 0 {
		return failed(name, list(clashes)+" on node "+pc.pod.Spec.NodeName+": the agent listens on port 80 of 169.254.170.23 and on "+fmt.Sprint(agentHealthPort)+" for health",
			"move that pod off the node or off those ports (a hostPort 80 forwards the agent's address too)")
	}
	return ok(name, "no other pod on "+pc.pod.Spec.NodeName+" holds port 80 or "+fmt.Sprint(agentHealthPort))
}

// agentHealthPort is the chart's agent.healthPort.
const agentHealthPort = 2703

func (d *Doctor) podsOnNode(ctx context.Context, node string) ([]corev1.Pod, error) {
	if node == "" {
		return nil, nil
	}
	var l corev1.PodList
	if err := d.Kube.List(ctx, &l, client.MatchingFields{"spec.nodeName": node}); err != nil {
		return nil, err
	}
	return l.Items, nil
}

func (d *Doctor) checkAgentOnNode(cs *clusterState, pod *corev1.Pod) Check {
	const name = "agent"
	node := pod.Spec.NodeName
	if node == "" {
		return failed(name, "the pod is not scheduled to a node", "kubectl describe pod "+pod.Name+" -n "+pod.Namespace)
	}
	if c, done := d.agentsMissing(cs, name); done {
		return c
	}
	i := slices.IndexFunc(cs.nodes, func(n corev1.Node) bool { return n.Name == node })
	if i >= 0 {
		if why := runsOn(cs.agents, &cs.nodes[i]); why != "" {
			return failed(name, fmt.Sprintf("DaemonSet %s/%s does not run on node %s: %s", d.Namespace, AgentDaemonSet, node, why),
				"let the agent run on that node (chart values agent.nodeSelector, agent.tolerations, agent.affinity), or keep this workload off it")
		}
	}
	agent, why := agentOn(cs, node)
	if why != "" {
		return failed(name, fmt.Sprintf("no ready podid agent on node %s: %s", node, why),
			fmt.Sprintf("kubectl -n %s describe daemonset %s; kubectl -n %s get pods -o wide --field-selector spec.nodeName=%s", d.Namespace, AgentDaemonSet, d.Namespace, node))
	}
	return ok(name, fmt.Sprintf("agent %s on node %s is ready", agent.Name, node))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
