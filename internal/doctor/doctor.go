// Package doctor is `podid doctor`: the troubleshooting checklists users
// walk by hand when a pod gets no AWS credentials, run for them. It reads
// podid's own objects (server, webhook, agents, the identity the server
// publishes), the pod and what surrounds it (its association and near
// misses, its injection, its environment, the NetworkPolicies selecting it,
// the other pods on its node), the role's trust policy through IAM with the
// user's own AWS credentials, and finally asks podid server to perform the
// pod's exchange (a PodIdentityCheck, package podcheck). Each check says
// what it saw and, when something is wrong, what to do.
//
// Doctor only reads, except for the PodIdentityChecks it creates and
// deletes.
package doctor

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/iam"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// RoleReader is the IAM call doctor makes: GetRole, for trust policies.
type RoleReader interface {
	GetRole(ctx context.Context, in *iam.GetRoleInput, optFns ...func(*iam.Options)) (*iam.GetRoleOutput, error)
}

// Doctor runs checks.
type Doctor struct {
	// Kube reads the cluster, and creates PodIdentityChecks.
	Kube client.Client
	// Namespace is podid's.
	Namespace string
	// IAM reads roles with the user's credentials; nil reports trust
	// policies as not checked, saying NoIAM.
	IAM   RoleReader
	NoIAM string
	// RolesAnywhere reads the trust anchor of podid server's Roles Anywhere
	// identity with the user's credentials; nil: not checked (NoIAM says why).
	RolesAnywhere TrustAnchorReader
	// Live asks podid server to perform exchanges (PodIdentityChecks).
	Live bool
	// LiveTimeout bounds the wait for podid server's answer (default 10 s).
	LiveTimeout time.Duration
	Now         func() time.Time

	// who is the user, for the checks' requested-by (whoAmI).
	whoOnce sync.Once
	who     string
}

func (d *Doctor) now() time.Time {
	if d.Now == nil {
		return time.Now()
	}
	return d.Now()
}

// Cluster checks podid itself, and (live) that podid server reaches STS.
func (d *Doctor) Cluster(ctx context.Context) *Report {
	s := d.readCluster(ctx)
	checks := d.clusterChecks(s)
	if d.Live {
		checks = append(checks, d.liveSTS(ctx))
	}
	r := &Report{}
	r.add(Section{Subject: "podid in namespace " + d.Namespace, Checks: checks})
	return r
}

// Pod checks podid, then everything between pod namespace/name and its
// credentials.
func (d *Doctor) Pod(ctx context.Context, namespace, name string) (*Report, error) {
	var pod corev1.Pod
	if err := d.Kube.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &pod); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("no pod %s/%s: name a pod that exists (kubectl get pods -n %s)", namespace, name, namespace)
		}
		return nil, fmt.Errorf("reading pod %s/%s: %w", namespace, name, err)
	}
	return d.pods(ctx, nil, []corev1.Pod{pod}), nil
}

// ServiceAccount checks the ServiceAccount's association and role, then
// each pod running as it.
func (d *Doctor) ServiceAccount(ctx context.Context, namespace, name string) (*Report, error) {
	var pods corev1.PodList
	if err := d.Kube.List(ctx, &pods, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing pods in %s: %w", namespace, err)
	}
	var mine []corev1.Pod
	for _, p := range pods.Items {
		if serviceAccountOf(&p) == name {
			mine = append(mine, p)
		}
	}
	sa := d.serviceAccountSection(ctx, namespace, name)
	return d.pods(ctx, &sa, mine), nil
}

// Deployment checks the Deployment's ServiceAccount, then each of its pods.
func (d *Doctor) Deployment(ctx context.Context, namespace, name string) (*Report, error) {
	var dep appsv1.Deployment
	if err := d.Kube.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &dep); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("no Deployment %s/%s: name one that exists (kubectl get deployments -n %s)", namespace, name, namespace)
		}
		return nil, fmt.Errorf("reading Deployment %s/%s: %w", namespace, name, err)
	}
	selector, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("Deployment %s/%s has an invalid selector: %w", namespace, name, err)
	}
	var pods corev1.PodList
	if err := d.Kube.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return nil, fmt.Errorf("listing the pods of Deployment %s/%s: %w", namespace, name, err)
	}
	saName := dep.Spec.Template.Spec.ServiceAccountName
	if saName == "" {
		saName = "default"
	}
	sa := d.serviceAccountSection(ctx, namespace, saName)
	sa.Subject = fmt.Sprintf("deployment %s/%s (ServiceAccount %s)", namespace, name, saName)
	return d.pods(ctx, &sa, pods.Items), nil
}

// pods runs the cluster checks once, then each pod's, in parallel.
func (d *Doctor) pods(ctx context.Context, head *Section, pods []corev1.Pod) *Report {
	cs := d.readCluster(ctx)
	r := &Report{}
	r.add(Section{Subject: "podid in namespace " + d.Namespace, Checks: d.clusterChecks(cs)})
	if head != nil {
		if len(pods) == 0 {
			head.Checks = append(head.Checks, warn("pods", "no pods run as this ServiceAccount", "nothing to check beyond the association; create the workload"))
		}
		r.add(*head)
	}
	sections := make([]Section, len(pods))
	funcs := make([]func(), len(pods))
	cache := &roleCache{roles: map[string]*roleResult{}}
	for i := range pods {
		funcs[i] = func() { sections[i] = d.podSection(ctx, cs, cache, &pods[i]) }
	}
	parallel(funcs...)
	for _, s := range sections {
		r.add(s)
	}
	return r
}

// parallel runs fns at once and waits for all of them: doctor's reads are
// independent, and its time is their latency.
func parallel(fns ...func()) {
	var wg sync.WaitGroup
	for _, f := range fns {
		wg.Go(f)
	}
	wg.Wait()
}

func serviceAccountOf(p *corev1.Pod) string {
	if p.Spec.ServiceAccountName == "" {
		return "default"
	}
	return p.Spec.ServiceAccountName
}

// selects reports whether a label selector matches l; a nil or invalid one
// matches nothing.
func selects(sel *metav1.LabelSelector, l map[string]string) bool {
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(labels.Set(l))
}
