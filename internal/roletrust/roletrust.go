// Package roletrust makes a role that already trusts EKS Pod Identity
// usable through podid by one association, and takes that away again
// exactly.
//
// Every guide for EKS Pod Identity (AWS's, JFrog's, Upbound's, Rafay's)
// leaves its reader with a role whose trust names the service principal
// pods.eks.amazonaws.com, which podid server can never be. Trust adds
// podid's statement for one (cluster, namespace, ServiceAccount) beside
// the others (iamrole.TrustStatement: podid server's principal, with
// conditions on the session tags podid sends for that association only);
// Untrust removes that statement and nothing else, so the trust after
// Trust then Untrust is the trust before.
//
// podid writes with the user's own AWS rights, so it must grant no more
// than the role's owner already did. Before anything is written:
//   - the role is the one named, path included;
//   - its trust admits EKS Pod Identity for this association: a statement
//     allows pods.eks.amazonaws.com sts:AssumeRole and sts:TagSession with
//     conditions that EKS's session tags for this cluster, namespace and
//     ServiceAccount meet (a role kept to one namespace stays kept to it),
//     and no statement denies them;
//   - or the user vouched for the role (AllowUnverified), which the plan
//     prints.
//
// The user's right to hand the role to the namespace (podid's PassRole,
// passrole.MayUse) needs the API server, and is the caller's to check.
package roletrust

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/podid/podid/internal/iampolicy"
	"github.com/podid/podid/internal/iamrole"
	"github.com/podid/podid/internal/podidentity"
)

// EKSPrincipal is the service principal of EKS Pod Identity.
const EKSPrincipal = "pods.eks.amazonaws.com"

// trustPolicyLimit is IAM's default quota on a role's trust policy, in
// characters (it can be raised to 4,096).
const trustPolicyLimit = 2048

// IAM is the part of IAM's API this package uses.
type IAM interface {
	GetRole(context.Context, *iam.GetRoleInput, ...func(*iam.Options)) (*iam.GetRoleOutput, error)
	UpdateAssumeRolePolicy(context.Context, *iam.UpdateAssumeRolePolicyInput, ...func(*iam.Options)) (*iam.UpdateAssumeRolePolicyOutput, error)
}

// Target is a role and the association it is to be usable by.
type Target struct {
	RoleARN     string
	Association iamrole.Association
	// ClusterARN is the cluster's ARN, which EKS sends as the session tag
	// eks-cluster-arn.
	ClusterARN string
	// Principal is podid server's principal, with its role's path.
	Principal string
}

// Plan is what Trust or Untrust would change in the role's trust, read
// from IAM.
type Plan struct {
	Target
	// Before is the trust as read; After is what would be written (equal
	// to Before when nothing changes).
	Before, After string
	// Lines say what the plan found and would do, in order.
	Lines []string
}

// Changes reports whether the plan writes anything.
func (p *Plan) Changes() bool { return p.After != p.Before }

// Refusal is a role the plan will not change, and why.
type Refusal struct{ Reason string }

func (r *Refusal) Error() string { return r.Reason }

// IsRefusal reports whether err is a Refusal.
func IsRefusal(err error) bool {
	var r *Refusal
	return errors.As(err, &r)
}

// PlanTrust reads the role's trust and plans the addition of podid's
// statement for t's association, after the verification above.
func PlanTrust(ctx context.Context, c IAM, t Target, allowUnverified bool) (*Plan, error) {
	p, d, err := read(ctx, c, t)
	if err != nil {
		return nil, err
	}
	sid := iamrole.StatementID(t.Association)
	want, _ := json.Marshal(iamrole.TrustStatement(t.Principal, t.Association))
	if i := d.IndexOfSid(sid); i >= 0 {
		if iampolicy.Canonical(d.Statement[i]) == iampolicy.Canonical(want) {
			p.say("role %s already trusts podid server (%s) for %s (statement %s): nothing to do", t.RoleARN, t.Principal, t.Association, sid)
			return p, nil
		}
		// Written by podid for this association before podid server's
		// principal changed: put today's in its place.
		if !isPodidStatement(d.Statement[i], t.Association) {
			return nil, &Refusal{fmt.Sprintf("role %s has a statement %s, podid's name for %s, that is not podid's statement: remove or rename it, then run again", t.RoleARN, sid, t.Association)}
		}
		p.say("role %s has podid's statement for %s with another principal (%s): it is replaced by podid server's (%s)", t.RoleARN, t.Association, principalOf(d.Statement[i]), t.Principal)
		d.Statement[i] = want
	} else {
		why, unverified, err := verify(p.Before, t)
		switch {
		case err != nil:
			return nil, err
		case unverified != "" && !allowUnverified:
			return nil, &Refusal{"not verified: " + unverified + ". podid adds its statement only to roles EKS Pod Identity could already give this ServiceAccount; if this one should be, pass --allow-unverified"}
		case unverified != "":
			p.say("! not verified: %s; written because you passed --allow-unverified", unverified)
		default:
			p.say("%s", why)
		}
		d.Statement = append(d.Statement, want)
		p.say("+ statement %s: podid server %s may sts:AssumeRole and sts:TagSession with session tags %s=%s, %s=%s, %s=%s",
			sid, t.Principal, podidentity.TagClusterName, t.Association.Cluster, podidentity.TagNamespace, t.Association.Namespace, podidentity.TagServiceAccount, t.Association.ServiceAccount)
	}
	p.After = d.String()
	p.say("  the other %d statement(s) are kept as they are", len(d.Statement)-1)
	if n := len(p.After); n > trustPolicyLimit {
		p.say("! the trust policy would be %d characters, over IAM's default quota of %d: IAM may refuse it; ask for a larger quota (up to 4,096) or give this association a role of its own", n, trustPolicyLimit)
	}
	return p, nil
}

// PlanUntrust reads the role's trust and plans the removal of podid's
// statement for t's association, and nothing else.
func PlanUntrust(ctx context.Context, c IAM, t Target) (*Plan, error) {
	p, d, err := read(ctx, c, t)
	if err != nil {
		return nil, err
	}
	sid := iamrole.StatementID(t.Association)
	i := d.IndexOfSid(sid)
	switch {
	case i < 0:
		p.say("role %s has no podid statement for %s: nothing to do", t.RoleARN, t.Association)
		return p, nil
	case !isPodidStatement(d.Statement[i], t.Association):
		return nil, &Refusal{fmt.Sprintf("role %s has a statement %s, podid's name for %s, that is not podid's statement: it is left alone", t.RoleARN, sid, t.Association)}
	}
	principal := principalOf(d.Statement[i])
	d.Statement = append(d.Statement[:i], d.Statement[i+1:]...)
	p.After = d.String()
	p.say("- statement %s: podid server %s for %s", sid, principal, t.Association)
	p.say("  the other %d statement(s) are kept as they are", len(d.Statement))
	return p, nil
}

// Write writes the plan's trust, if the role's trust is still the one
// the plan read: a change made meanwhile is not written over.
func Write(ctx context.Context, c IAM, p *Plan) error {
	if !p.Changes() {
		return nil
	}
	now, _, err := read(ctx, c, p.Target)
	if err != nil {
		return err
	}
	if iampolicy.Canonical(json.RawMessage(now.Before)) != iampolicy.Canonical(json.RawMessage(p.Before)) {
		return fmt.Errorf("role %s's trust changed since it was read: run the command again", p.RoleARN)
	}
	name, _ := iamrole.RoleName(p.RoleARN)
	if _, err := c.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(name), PolicyDocument: aws.String(p.After)}); err != nil {
		return fmt.Errorf("writing role %s's trust policy: %w", p.RoleARN, err)
	}
	return nil
}

// read reads the role's trust, checking its ARN is the one named.
func read(ctx context.Context, c IAM, t Target) (*Plan, *iampolicy.Document, error) {
	name, err := iamrole.RoleName(t.RoleARN)
	if err != nil {
		return nil, nil, err
	}
	out, err := c.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
	if err != nil {
		return nil, nil, fmt.Errorf("reading role %s: %w", t.RoleARN, err)
	}
	switch got := aws.ToString(out.Role.Arn); {
	case iampolicy.AccountOf(got) != iampolicy.AccountOf(t.RoleARN):
		return nil, nil, &Refusal{fmt.Sprintf("role %s is in account %s, and your AWS credentials are account %s's: run this with credentials of account %s", t.RoleARN, iampolicy.AccountOf(t.RoleARN), iampolicy.AccountOf(got), iampolicy.AccountOf(t.RoleARN))}
	case got != t.RoleARN:
		return nil, nil, &Refusal{fmt.Sprintf("the account's role %s is %s, not %s: name it by its ARN with its path", name, got, t.RoleARN)}
	}
	doc, err := iamrole.TrustDocument(aws.ToString(out.Role.AssumeRolePolicyDocument))
	if err != nil {
		return nil, nil, fmt.Errorf("role %s's trust policy: %w", t.RoleARN, err)
	}
	d, err := iampolicy.ParseDocument(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("role %s: %w", t.RoleARN, err)
	}
	return &Plan{Target: t, Before: doc, After: doc}, d, nil
}

func (p *Plan) say(format string, args ...any) {
	p.Lines = append(p.Lines, fmt.Sprintf(format, args...))
}

// verify says which statement admits EKS Pod Identity for t, or why none
// does (unverified).
func verify(doc string, t Target) (why, unverified string, err error) {
	trust, err := iampolicy.ParseTrust(doc)
	if err != nil {
		return "", "", fmt.Errorf("role %s: %w", t.RoleARN, err)
	}
	a := t.Association
	reqCtx := map[string][]string{
		"aws:requesttag/" + podidentity.TagClusterName:    {a.Cluster},
		"aws:requesttag/" + podidentity.TagClusterARN:     {t.ClusterARN},
		"aws:requesttag/" + podidentity.TagNamespace:      {a.Namespace},
		"aws:requesttag/" + podidentity.TagServiceAccount: {a.ServiceAccount},
	}
	var unevaluated []string
	var sid string
	for _, action := range []string{"sts:AssumeRole", "sts:TagSession"} {
		v := trust.Evaluate(iampolicy.Request{Principal: EKSPrincipal, Service: true, Action: action, Context: reqCtx})
		if !v.Allowed {
			unverified = fmt.Sprintf("role %s's trust does not admit EKS Pod Identity (%s, %s) for %s in cluster %s: %s",
				t.RoleARN, EKSPrincipal, action, a, a.Cluster, v.Refusal)
			if action == "sts:TagSession" && sid != "" {
				// Some guides print a trust of sts:AssumeRole alone, which
				// EKS refuses too: it always tags the session.
				unverified += fmt.Sprintf(" (EKS Pod Identity always tags its sessions, so it cannot use this role either: add sts:TagSession to statement %s)", sid)
			}
			return "", unverified, nil
		}
		sid = v.Sid
		unevaluated = append(unevaluated, v.Unevaluated...)
	}
	why = fmt.Sprintf("role %s trusts EKS Pod Identity for %s (statement %s)", t.RoleARN, a, sid)
	slices.Sort(unevaluated)
	if unevaluated = slices.Compact(unevaluated); len(unevaluated) > 0 {
		why += "; conditions on " + strings.Join(unevaluated, ", ") + " were not evaluated (EKS's own, or a pod's name or UID): podid's statement has its own conditions instead"
	}
	return why, "", nil
}

// isPodidStatement reports whether raw is podid's statement for a, with
// whatever principal: an Allow of sts:AssumeRole and sts:TagSession to
// one AWS principal, conditioned on exactly a's session tags.
func isPodidStatement(raw json.RawMessage, a iamrole.Association) bool {
	var s struct {
		Sid       string
		Principal map[string]any
	}
	if json.Unmarshal(raw, &s) != nil || len(s.Principal) != 1 || s.Principal["AWS"] == nil {
		return false
	}
	p, ok := s.Principal["AWS"].(string)
	if !ok {
		return false
	}
	want, _ := json.Marshal(iamrole.TrustStatement(p, a))
	return iampolicy.Canonical(raw) == iampolicy.Canonical(want)
}

// principalOf is the AWS principal a statement names.
func principalOf(raw json.RawMessage) string {
	var s struct{ Principal struct{ AWS any } }
	_ = json.Unmarshal(raw, &s)
	return fmt.Sprint(s.Principal.AWS)
}
