// Package iamrole makes IAM roles for associations, and takes them away:
// the trust statement that lets podid server assume a role for exactly one
// association (its principal, sts:AssumeRole and sts:TagSession, and
// conditions on the session tags podid sends), roles created with it and
// eksctl's permission options, tagged so that only what podid made is ever
// deleted.
//
// eksctl's roles trust the Pod Identity principal with no condition, so any
// association naming them gets their permissions. podid's are useless to
// any other association: STS refuses the session tags of another
// namespace, ServiceAccount or cluster.
package iamrole

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/podid/podid/internal/podidentity"
)

// Tags podid puts on the roles it creates.
const (
	TagManagedBy   = "podid.io/managed-by"
	TagCluster     = "podid.io/cluster"
	TagAssociation = "podid.io/association" // namespace/serviceaccount
	managedByPodid = "podid"
)

// Association is the (cluster, namespace, ServiceAccount) a role is for.
type Association struct {
	Cluster, Namespace, ServiceAccount string
}

func (a Association) String() string { return a.Namespace + "/" + a.ServiceAccount }

// Statement is one statement of a policy document.
type Statement struct {
	Sid       string         `json:"Sid,omitempty"`
	Effect    string         `json:"Effect"`
	Principal map[string]any `json:"Principal,omitempty"`
	Action    any            `json:"Action"`
	Condition map[string]any `json:"Condition,omitempty"`
}

// Document is a policy document.
type Document struct {
	Version   string      `json:"Version"`
	Statement []Statement `json:"Statement"`
}

// StatementID names podid's statement for an association, so that adding
// it twice is noticed (migration re-runs) and removing it finds it.
func StatementID(a Association) string {
	sum := sha256.Sum256([]byte(a.Cluster + "\x00" + a.Namespace + "\x00" + a.ServiceAccount))
	return "PodidAssociation" + hex.EncodeToString(sum[:8])
}

// TrustStatement lets principal (podid server) assume the role, with
// session tags, only with the tags podid sends for a's pods.
func TrustStatement(principal string, a Association) Statement {
	return Statement{
		Sid:       StatementID(a),
		Effect:    "Allow",
		Principal: map[string]any{"AWS": principal},
		Action:    []string{"sts:AssumeRole", "sts:TagSession"},
		Condition: map[string]any{"StringEquals": map[string]string{
			"aws:RequestTag/" + podidentity.TagClusterName:    a.Cluster,
			"aws:RequestTag/" + podidentity.TagNamespace:      a.Namespace,
			"aws:RequestTag/" + podidentity.TagServiceAccount: a.ServiceAccount,
		}},
	}
}

// TrustPolicy is a trust policy of podid's statement alone.
func TrustPolicy(principal string, a Association) string {
	b, _ := json.Marshal(Document{Version: "2012-10-17", Statement: []Statement{TrustStatement(principal, a)}})
	return string(b)
}

// WellKnownPolicies are the `--well-known-policies` podid knows: AWS
// managed policies eksctl's options of the same names stand for. Others of
// eksctl's set (autoScaler, awsLoadBalancerController, externalDNS,
// certManager) are inline documents there: use --permission-policy.
var WellKnownPolicies = map[string]string{
	"imageBuilder":     "policy/AmazonEC2ContainerRegistryPowerUser",
	"ebsCSIController": "policy/service-role/AmazonEBSCSIDriverPolicy",
	"efsCSIController": "policy/service-role/AmazonEFSCSIDriverPolicy",
}

// WellKnownARN is the ARN of a well-known policy in partition.
func WellKnownARN(partition, name string) (string, error) {
	p, ok := WellKnownPolicies[name]
	if !ok {
		return "", fmt.Errorf("--well-known-policies %q is not one podid knows (%s); give its permissions with --permission-policy-arns or --permission-policy", name, strings.Join(slices.Sorted(maps.Keys(WellKnownPolicies)), ", "))
	}
	return "arn:" + partition + ":iam::aws:" + p, nil
}

// IAM is the part of IAM's API this package uses.
type IAM interface {
	CreateRole(context.Context, *iam.CreateRoleInput, ...func(*iam.Options)) (*iam.CreateRoleOutput, error)
	GetRole(context.Context, *iam.GetRoleInput, ...func(*iam.Options)) (*iam.GetRoleOutput, error)
	DeleteRole(context.Context, *iam.DeleteRoleInput, ...func(*iam.Options)) (*iam.DeleteRoleOutput, error)
	AttachRolePolicy(context.Context, *iam.AttachRolePolicyInput, ...func(*iam.Options)) (*iam.AttachRolePolicyOutput, error)
	DetachRolePolicy(context.Context, *iam.DetachRolePolicyInput, ...func(*iam.Options)) (*iam.DetachRolePolicyOutput, error)
	ListAttachedRolePolicies(context.Context, *iam.ListAttachedRolePoliciesInput, ...func(*iam.Options)) (*iam.ListAttachedRolePoliciesOutput, error)
	PutRolePolicy(context.Context, *iam.PutRolePolicyInput, ...func(*iam.Options)) (*iam.PutRolePolicyOutput, error)
	DeleteRolePolicy(context.Context, *iam.DeleteRolePolicyInput, ...func(*iam.Options)) (*iam.DeleteRolePolicyOutput, error)
	ListRolePolicies(context.Context, *iam.ListRolePoliciesInput, ...func(*iam.Options)) (*iam.ListRolePoliciesOutput, error)
	UpdateAssumeRolePolicy(context.Context, *iam.UpdateAssumeRolePolicyInput, ...func(*iam.Options)) (*iam.UpdateAssumeRolePolicyOutput, error)
}

var _ IAM = (*iam.Client)(nil)
