package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	corev1 "k8s.io/api/core/v1"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/iampolicy"
	"github.com/podid/podid/internal/iamrole"
	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/internal/roletrust"
	"github.com/podid/podid/internal/sts"
)

// roleCache reads each role once per doctor run.
type roleCache struct {
	mu    sync.Mutex
	roles map[string]*roleResult
}

type roleResult struct {
	once  sync.Once
	arn   string
	trust *iampolicy.Trust
	err   error
}

func (d *Doctor) role(ctx context.Context, c *roleCache, roleARN string) *roleResult {
	c.mu.Lock()
	r, ok := c.roles[roleARN]
	if !ok {
		r = &roleResult{}
		c.roles[roleARN] = r
	}
	c.mu.Unlock()
	r.once.Do(func() {
		name, err := iamrole.RoleName(roleARN)
		if err != nil {
			r.err = err
			return
		}
		out, err := d.IAM.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
		if err != nil {
			r.err = fmt.Errorf("iam:GetRole %s: %w", name, err)
			return
		}
		r.arn = aws.ToString(out.Role.Arn)
		doc, err := iamrole.TrustDocument(aws.ToString(out.Role.AssumeRolePolicyDocument))
		if err == nil {
			r.trust, err = iampolicy.ParseTrust(doc)
		}
		r.err = err
	})
	return r
}

// trustChecks read the association's role (and target role) through IAM
// and evaluate their trust policies for this pod's exchange.
func (d *Doctor) trustChecks(ctx context.Context, cs *clusterState, roles *roleCache, a *v1alpha1.PodIdentityAssociation, pod *corev1.Pod, assocErr error) []Check {
	const name = "role-trust"
	switch {
	case a == nil || assocErr != nil:
		return []Check{skipped(name, "no association, so no role")}
	case d.IAM == nil:
		return []Check{skipped(name, "not checked: "+d.NoIAM)}
	case cs.identityErr != nil:
		return []Check{skipped(name, "not checked: podid server's identity is unknown (see aws-identity)")}
	}
	id := cs.identity
	principal := id.PrincipalARN
	if id.RolePathUnknown {
		// A session's ARN has no path; the role's ARN, which the trust
		// policy names, may.
		r := d.role(ctx, roles, principal)
		if r.err != nil {
			return []Check{skipped(name, fmt.Sprintf("not checked: podid server runs as a session of %s, whose ARN could not be read: %v", principal, r.err))}
		}
		principal = r.arn
	}
	checks := []Check{d.roleTrust(ctx, roles, id.Cluster, principal, a, pod)}
	if a.Spec.TargetRoleARN != "" {
		checks = append(checks, d.targetRoleTrust(ctx, roles, id.Cluster, a))
	}
	return checks
}

func (d *Doctor) roleTrust(ctx context.Context, roles *roleCache, cluster association.Identity, principal string, a *v1alpha1.PodIdentityAssociation, pod *corev1.Pod) Check {
	const name = "role-trust"
	r := d.role(ctx, roles, a.Spec.RoleARN)
	if r.err != nil {
		return skipped(name, "not checked: "+r.err.Error())
	}
	reqCtx := map[string][]string{"aws:principalarn": {principal}}
	if !a.Spec.DisableSessionTags {
		pid := sts.Pod{Namespace: pod.Namespace, ServiceAccount: serviceAccountOf(pod), Name: pod.Name, UID: string(pod.UID)}
		for _, kv := range sts.SessionTags(cluster, pid) {
			reqCtx["aws:requesttag/"+strings.ToLower(kv[0])] = []string{kv[1]}
			reqCtx["aws:tagkeys"] = append(reqCtx["aws:tagkeys"], kv[0])
		}
	}
	statement, _ := json.Marshal(iamrole.TrustStatement(principal, iamrole.Association{Cluster: cluster.ClusterName, Namespace: pod.Namespace, ServiceAccount: serviceAccountOf(pod)}))
	assume := r.trust.Evaluate(iampolicy.Request{Principal: principal, Action: "sts:AssumeRole", Context: reqCtx, Complete: isRequestKey})
	if !assume.Allowed {
		return failed(name, fmt.Sprintf("role %s does not let podid server (%s) assume it for this pod: %s", a.Spec.RoleARN, principal, assume.Refusal),
			trustFix(r.trust, pod, a.Spec.RoleARN, statement))
	}
	actions := "sts:AssumeRole"
	unevaluated := assume.Unevaluated
	if !a.Spec.DisableSessionTags {
		tag := r.trust.Evaluate(iampolicy.Request{Principal: principal, Action: "sts:TagSession", Context: reqCtx, Complete: isRequestKey})
		if !tag.Allowed {
			return failed(name, fmt.Sprintf("role %s lets podid server (%s) assume it (statement %s) but not tag the session: %s; podid sends session tags, so STS refuses", a.Spec.RoleARN, principal, assume.Sid, tag.Refusal),
				fmt.Sprintf("add sts:TagSession to the Action of statement %s, or set spec.disableSessionTags: true on association %s/%s", assume.Sid, a.Namespace, a.Name))
		}
		actions += " and sts:TagSession"
		unevaluated = append(unevaluated, tag.Unevaluated...)
	}
	fact := fmt.Sprintf("role %s trusts podid server (%s) for %s (statement %s), with conditions this pod's session tags meet", a.Spec.RoleARN, principal, actions, assume.Sid)
	if len(unevaluated) > 0 {
		return warn(name, fact+"; doctor did not evaluate "+strings.Join(unevaluated, ", "), "make sure those conditions hold for podid server's requests")
	}
	return ok(name, fact)
}

func (d *Doctor) targetRoleTrust(ctx context.Context, roles *roleCache, cluster association.Identity, a *v1alpha1.PodIdentityAssociation) Check {
	const name = "target-role-trust"
	r := d.role(ctx, roles, a.Spec.TargetRoleARN)
	if r.err != nil {
		return skipped(name, "not checked: "+r.err.Error())
	}
	externalID := sts.ExternalID(cluster, &association.Association{Namespace: a.Namespace, ServiceAccount: a.Spec.ServiceAccount,
		ExternalID: a.Status.ExternalID, DisableSessionTags: a.Spec.DisableSessionTags})
	v := r.trust.Evaluate(iampolicy.Request{Principal: a.Spec.RoleARN, Action: "sts:AssumeRole", Context: map[string][]string{
		"sts:externalid": {externalID}, "aws:principalarn": {a.Spec.RoleARN}}, Complete: isRequestKey})
	if !v.Allowed {
		return failed(name, fmt.Sprintf("target role %s does not let role %s assume it with external ID %q: %s", a.Spec.TargetRoleARN, a.Spec.RoleARN, externalID, v.Refusal),
			fmt.Sprintf(`add to the target role's trust policy: {"Effect":"Allow","Principal":{"AWS":"%s"},"Action":["sts:AssumeRole","sts:TagSession"],"Condition":{"StringEquals":{"sts:ExternalId":"%s"}}}`, a.Spec.RoleARN, externalID))
	}
	return ok(name, fmt.Sprintf("target role %s trusts role %s with external ID %q (statement %s)", a.Spec.TargetRoleARN, a.Spec.RoleARN, externalID, v.Sid))
}

// isRequestKey: keys doctor knows the value of, or knows are absent, for a
// podid exchange (session tags and external ID are all the request has).
func isRequestKey(key string) bool {
	return strings.HasPrefix(key, "aws:requesttag/") || key == "sts:externalid" || key == "aws:principalarn" || key == "aws:tagkeys"
}

// trustFix is the fix of a role that does not trust podid server for a
// pod: `podid role trust` for a role made for EKS Pod Identity (it trusts
// pods.eks.amazonaws.com, as every guide has its readers write), else the
// statement to add.
func trustFix(trust *iampolicy.Trust, pod *corev1.Pod, roleARN string, statement []byte) string {
	eks := trust.Evaluate(iampolicy.Request{Principal: roletrust.EKSPrincipal, Service: true, Action: "sts:AssumeRole", Context: map[string][]string{
		"aws:requesttag/" + podidentity.TagNamespace: {pod.Namespace}, "aws:requesttag/" + podidentity.TagServiceAccount: {serviceAccountOf(pod)}}})
	if eks.Allowed {
		return fmt.Sprintf("the role trusts EKS Pod Identity (statement %s): run `podid role trust -n %s --service-account %s --role-arn %s --approve` to add podid's statement for this ServiceAccount (without --approve it prints the plan)",
			eks.Sid, pod.Namespace, serviceAccountOf(pod), roleARN)
	}
	return "add this statement to the role's trust policy: " + string(statement)
}
