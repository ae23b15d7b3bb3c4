package doctor

import (
	"context"
	"errors"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/api/v1alpha1"
)

// ask creates a PodIdentityCheck, waits for podid server's answer and
// deletes it. A check podid throttles (its namespace's share of answers is
// spent, by this run's other checks or someone else's) is asked again a
// second later, within the timeout.
func (d *Doctor) ask(ctx context.Context, namespace, pod string) (*v1alpha1.PodIdentityCheckStatus, error) {
	deadline := time.Now().Add(d.liveTimeout())
	for {
		st, err := d.askOnce(ctx, namespace, pod, deadline)
		if err != nil || st.Code != throttled || time.Now().Add(time.Second).After(deadline) {
			return st, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// throttled is podid's answer to a check over its namespace's share.
const throttled = "ThrottlingException"

func (d *Doctor) askOnce(ctx context.Context, namespace, pod string, deadline time.Time) (*v1alpha1.PodIdentityCheckStatus, error) {
	check := &v1alpha1.PodIdentityCheck{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, GenerateName: "doctor-",
			Labels: map[string]string{"app.kubernetes.io/managed-by": "podid-doctor"}},
		Spec: v1alpha1.PodIdentityCheckSpec{PodName: pod},
	}
	// Who asks, for podid's audit log. The chart's admission policy admits
	// only the creator's own name here (and on 1.36+ stamps it anyway).
	if user := d.whoAmI(ctx); user != "" {
		check.Annotations = map[string]string{v1alpha1.AnnotationRequestedBy: user}
	}
	if err := d.Kube.Create(ctx, check); err != nil {
		return nil, err
	}
	defer func() {
		// Whatever happened, leave nothing behind (podid server deletes
		// answered checks after an hour anyway).
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = d.Kube.Delete(dctx, check)
	}()
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		if err := d.Kube.Get(ctx, client.ObjectKeyFromObject(check), check); err != nil {
			return nil, err
		}
		if check.Status.Outcome != "" {
			return &check.Status, nil
		}
		if time.Now().After(deadline) {
			return nil, errNoAnswer
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

var errNoAnswer = errors.New("no answer")

// liveProblem turns a failure to ask into a check.
func (d *Doctor) liveProblem(name, namespace string, err error, timeout time.Duration) Check {
	switch {
	case errors.Is(err, errNoAnswer):
		return failed(name, fmt.Sprintf("podid server did not answer within %s", timeout),
			fmt.Sprintf("podid server's leader answers checks: see the server check; kubectl -n %s logs deployment/%s", d.Namespace, ServerDeployment))
	case apierrors.IsForbidden(err):
		return skipped(name, fmt.Sprintf("not checked: you may not create PodIdentityChecks in namespace %s (the chart grants it to the edit and admin roles)", namespace))
	case meta.IsNoMatchError(err) || apierrors.IsNotFound(err):
		return skipped(name, "not checked: the PodIdentityCheck CRD is not installed; upgrade podid's chart")
	}
	return skipped(name, "not checked: "+err.Error())
}

func (d *Doctor) liveTimeout() time.Duration {
	if d.LiveTimeout == 0 {
		return 10 * time.Second
	}
	return d.LiveTimeout
}

// liveSTS asks podid server to call sts:GetCallerIdentity.
func (d *Doctor) liveSTS(ctx context.Context) Check {
	const name = "sts"
	st, err := d.ask(ctx, d.Namespace, "")
	if err != nil {
		return d.liveProblem(name, d.Namespace, err, d.liveTimeout())
	}
	if st.Outcome != v1alpha1.CheckIssued {
		return failed(name, st.Message+" (replica "+st.Server+")", "podid server's --sts-endpoint and --sts-region, its AWS credentials, and the network from its pods to STS")
	}
	return ok(name, st.Message+" (replica "+st.Server+")")
}

// livePod asks podid server to perform the pod's exchange.
func (d *Doctor) livePod(ctx context.Context, pod *corev1.Pod) Check {
	const name = "live-exchange"
	st, err := d.ask(ctx, pod.Namespace, pod.Name)
	if err != nil {
		return d.liveProblem(name, pod.Namespace, err, d.liveTimeout())
	}
	if st.Outcome == v1alpha1.CheckIssued {
		return ok(name, fmt.Sprintf("podid server obtained credentials for this pod as %s (replica %s; not kept)", st.AssumedRoleARN, st.Server))
	}
	fix := map[string]string{
		"ResourceNotFoundException": "see the association check",
		"AccessDeniedException":     "see the role-trust checks: STS refused podid server",
		"InvalidRequestException":   "see the association check",
	}[st.Code]
	if fix == "" {
		fix = fmt.Sprintf("kubectl -n %s logs deployment/%s | grep %s", d.Namespace, ServerDeployment, pod.Name)
	}
	return failed(name, fmt.Sprintf("podid server's exchange for this pod is refused: %s: %s", st.Code, st.Message), fix)
}

// whoAmI is the user's name as the API server authenticates it, or "" when
// it will not say (SelfSubjectReview); asked once per run.
func (d *Doctor) whoAmI(ctx context.Context) string {
	d.whoOnce.Do(func() {
		review := &authenticationv1.SelfSubjectReview{}
		if err := d.Kube.Create(ctx, review); err == nil {
			d.who = review.Status.UserInfo.Username
		}
	})
	return d.who
}
