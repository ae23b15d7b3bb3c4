package iamrole

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/smithy-go"
)

// Spec is a role to create for an association, with eksctl's options.
type Spec struct {
	// RoleName is the role's name; Path its path ("" is "/").
	RoleName, Path string
	// PermissionPolicyARNs are attached; WellKnownPolicies name more (see
	// WellKnownPolicies); PermissionPolicy is an inline policy document.
	PermissionPolicyARNs []string
	WellKnownPolicies    []string
	PermissionPolicy     string
	// PermissionsBoundaryARN is the role's permissions boundary.
	PermissionsBoundaryARN string
	// Tags are more tags on the role, besides podid's own.
	Tags map[string]string
	// MaxSessionDuration in seconds (0: IAM's default, 1 h).
	MaxSessionDuration int32
}

// inlinePolicyName is the name of the inline policy --permission-policy
// becomes.
const inlinePolicyName = "podid-permissions"

// Create makes the role: the trust of principal for a alone, the
// permissions of spec, podid's tags. If a step fails, what it made is
// taken away again, so a failed create leaves nothing behind.
func Create(ctx context.Context, c IAM, partition, principal string, a Association, spec Spec) (arn string, err error) {
	var policyARNs []string
	for _, name := range spec.WellKnownPolicies {
		arn, err := WellKnownARN(partition, name)
		if err != nil {
			return "", err
		}
		policyARNs = append(policyARNs, arn)
	}
	policyARNs = append(policyARNs, spec.PermissionPolicyARNs...)
	tags := []types.Tag{
		{Key: aws.String(TagManagedBy), Value: aws.String(managedByPodid)},
		{Key: aws.String(TagCluster), Value: aws.String(a.Cluster)},
		{Key: aws.String(TagAssociation), Value: aws.String(a.String())},
	}
	for k, v := range spec.Tags {
		if strings.HasPrefix(k, "podid.io/") {
			return "", fmt.Errorf("tag %q: the podid.io/ prefix is podid's own", k)
		}
		tags = append(tags, types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	in := &iam.CreateRoleInput{
		RoleName:                 aws.String(spec.RoleName),
		AssumeRolePolicyDocument: aws.String(TrustPolicy(principal, a)),
		Description:              aws.String(fmt.Sprintf("podid association %s in cluster %s", a, a.Cluster)),
		Tags:                     tags,
	}
	if spec.Path != "" {
		in.Path = aws.String(spec.Path)
	}
	if spec.PermissionsBoundaryARN != "" {
		in.PermissionsBoundary = aws.String(spec.PermissionsBoundaryARN)
	}
	if spec.MaxSessionDuration != 0 {
		in.MaxSessionDuration = aws.Int32(spec.MaxSessionDuration)
	}
	out, err := c.CreateRole(ctx, in)
	if err != nil {
		return "", fmt.Errorf("creating IAM role %s: %w", spec.RoleName, err)
	}
	undo := func(cause error) error {
		if _, derr := Delete(context.WithoutCancel(ctx), c, *out.Role.Arn, a); derr != nil {
			return fmt.Errorf("%w; and taking the half-made role %s away failed too: %v (delete it by hand)", cause, *out.Role.Arn, derr)
		}
		return cause
	}
	for _, p := range policyARNs {
		if _, err := c.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(spec.RoleName), PolicyArn: aws.String(p)}); err != nil {
			return "", undo(fmt.Errorf("attaching %s to role %s: %w", p, spec.RoleName, err))
		}
	}
	if spec.PermissionPolicy != "" {
		if _, err := c.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(spec.RoleName), PolicyName: aws.String(inlinePolicyName), PolicyDocument: aws.String(spec.PermissionPolicy)}); err != nil {
			return "", undo(fmt.Errorf("putting --permission-policy on role %s: %w", spec.RoleName, err))
		}
	}
	return *out.Role.Arn, nil
}

// RoleName is the name in a role ARN (its last path element).
func RoleName(roleARN string) (string, error) {
	_, rest, ok := strings.Cut(roleARN, ":role/")
	if !ok || rest == "" {
		return "", fmt.Errorf("%q is not an IAM role ARN", roleARN)
	}
	return rest[strings.LastIndex(rest, "/")+1:], nil
}

// ErrNotCreatedByPodid is Delete's answer for a role podid did not make for
// the association: it is left alone.
var ErrNotCreatedByPodid = errors.New("not created by podid for this association")

// Delete takes a role podid created for a away, in IAM's order (managed
// policies, inline policies, the role). A role without podid's tags for a
// is left untouched (ErrNotCreatedByPodid); a role already gone is done.
func Delete(ctx context.Context, c IAM, roleARN string, a Association) (deleted bool, err error) {
	name, err := RoleName(roleARN)
	if err != nil {
		return false, err
	}
	got, err := c.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
	if err != nil {
		if isCode(err, "NoSuchEntity") {
			return false, nil
		}
		return false, fmt.Errorf("reading role %s: %w", name, err)
	}
	tags := map[string]string{}
	for _, t := range got.Role.Tags {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	if tags[TagManagedBy] != managedByPodid || tags[TagAssociation] != a.String() || tags[TagCluster] != a.Cluster || aws.ToString(got.Role.Arn) != roleARN {
		return false, fmt.Errorf("role %s: %w (tags %s=%q, %s=%q)", roleARN, ErrNotCreatedByPodid, TagManagedBy, tags[TagManagedBy], TagAssociation, tags[TagAssociation])
	}
	attached, err := c.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(name)})
	if err != nil {
		return false, fmt.Errorf("listing role %s's policies: %w", name, err)
	}
	for _, p := range attached.AttachedPolicies {
		if _, err := c.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: aws.String(name), PolicyArn: p.PolicyArn}); err != nil && !isCode(err, "NoSuchEntity") {
			return false, fmt.Errorf("detaching %s from role %s: %w", aws.ToString(p.PolicyArn), name, err)
		}
	}
	inline, err := c.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(name)})
	if err != nil {
		return false, fmt.Errorf("listing role %s's inline policies: %w", name, err)
	}
	for _, p := range inline.PolicyNames {
		if _, err := c.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String(p)}); err != nil && !isCode(err, "NoSuchEntity") {
			return false, fmt.Errorf("deleting role %s's inline policy %s: %w", name, p, err)
		}
	}
	if _, err := c.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String(name)}); err != nil && !isCode(err, "NoSuchEntity") {
		return false, fmt.Errorf("deleting role %s: %w", name, err)
	}
	return true, nil
}

// ResolvePrincipal gives a principal published without its role's path
// (a session's ARN has none) its path, with iam:GetRole of the caller's
// account; others are returned as they are.
func ResolvePrincipal(ctx context.Context, c IAM, principal string, pathUnknown bool) (string, error) {
	if !pathUnknown {
		return principal, nil
	}
	name, err := RoleName(principal)
	if err != nil {
		return "", err
	}
	got, err := c.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
	if err != nil {
		// Another account's role, or no iam:GetRole: a trust policy naming
		// the role without its path is refused by IAM when it has one.
		return "", fmt.Errorf("podid server runs as a session of role %s; reading the role's path with iam:GetRole failed (%v): run with credentials of the role's account that may call iam:GetRole", name, err)
	}
	return aws.ToString(got.Role.Arn), nil
}

// TrustDocument decodes a role's trust policy as IAM returns it
// (URL-encoded).
func TrustDocument(encoded string) (string, error) {
	return url.QueryUnescape(encoded)
}

func isCode(err error, code string) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == code
}
