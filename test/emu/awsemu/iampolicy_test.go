package awsemu_test

import (
	"errors"
	"net/url"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/smithy-go"

	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/emu/awsemu/awsemutest"
)

// A role made as podid makes one for an association, then taken apart in
// the order IAM insists on.
func TestRolePolicies(t *testing.T) {
	emu := awsemutest.Start(t, awsemu.Options{AccountID: "111122223333"})
	c := iam.NewFromConfig(emu.AdminConfig())
	ctx := t.Context()
	code := func(err error) string {
		var api smithy.APIError
		if errors.As(err, &api) {
			return api.ErrorCode()
		}
		return ""
	}
	customer, err := c.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String("boundary"), Path: aws.String("/podid/"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	if got := *customer.Policy.Arn; got != "arn:aws:iam::111122223333:policy/podid/boundary" {
		t.Fatalf("policy ARN %s", got)
	}
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/admin"},"Action":["sts:AssumeRole","sts:TagSession"]}]}`
	writes := emu.IAMWrites()
	if _, err := c.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("app"), Path: aws.String("/team/"), AssumeRolePolicyDocument: aws.String(trust),
		PermissionsBoundary: aws.String("arn:aws:iam::111122223333:policy/podid/missing")}); code(err) != "NoSuchEntity" {
		t.Fatalf("a role with a missing boundary: %v", err)
	}
	role, err := c.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("app"), Path: aws.String("/team/"), AssumeRolePolicyDocument: aws.String(trust),
		PermissionsBoundary: customer.Policy.Arn, MaxSessionDuration: aws.Int32(7200), Tags: []types.Tag{{Key: aws.String("podid.io/managed-by"), Value: aws.String("podid")}}})
	if err != nil {
		t.Fatal(err)
	}
	if *role.Role.Arn != "arn:aws:iam::111122223333:role/team/app" || *role.Role.PermissionsBoundary.PermissionsBoundaryArn != *customer.Policy.Arn {
		t.Fatalf("role %+v", role.Role)
	}
	for _, arn := range []string{"arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess", *customer.Policy.Arn} {
		if _, err := c.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String("app"), PolicyArn: aws.String(arn)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String("app"), PolicyArn: aws.String("arn:aws:iam::111122223333:policy/none")}); code(err) != "NoSuchEntity" {
		t.Errorf("attaching a missing policy: %v", err)
	}
	inline := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sqs:SendMessage","Resource":"*"}]}`
	if _, err := c.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("app"), PolicyName: aws.String("inline"), PolicyDocument: aws.String(inline)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("app"), PolicyName: aws.String("bad"), PolicyDocument: aws.String("{")}); code(err) != "MalformedPolicyDocument" {
		t.Errorf("a malformed inline policy: %v", err)
	}
	got, err := c.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String("app"), PolicyName: aws.String("inline")})
	if err != nil {
		t.Fatal(err)
	}
	if doc, _ := url.QueryUnescape(*got.PolicyDocument); doc != inline {
		t.Errorf("inline policy %q", doc)
	}
	if _, err := c.TagRole(ctx, &iam.TagRoleInput{RoleName: aws.String("app"), Tags: []types.Tag{{Key: aws.String("podid.io/association"), Value: aws.String("shop/billing")}}}); err != nil {
		t.Fatal(err)
	}
	tags, err := c.ListRoleTags(ctx, &iam.ListRoleTagsInput{RoleName: aws.String("app")})
	if err != nil || len(tags.Tags) != 2 {
		t.Fatalf("tags %+v %v", tags, err)
	}

	// IAM's order: policies, then the role; a managed policy only once
	// nothing has it attached.
	if _, err := c.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String("app")}); code(err) != "DeleteConflict" {
		t.Fatalf("deleting a role with policies: %v", err)
	}
	if _, err := c.DeletePolicy(ctx, &iam.DeletePolicyInput{PolicyArn: customer.Policy.Arn}); code(err) != "DeleteConflict" {
		t.Errorf("deleting an attached policy: %v", err)
	}
	attached, err := c.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String("app")})
	if err != nil || len(attached.AttachedPolicies) != 2 {
		t.Fatalf("attached %+v %v", attached, err)
	}
	for _, p := range attached.AttachedPolicies {
		if _, err := c.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: aws.String("app"), PolicyArn: p.PolicyArn}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String("app")}); code(err) != "DeleteConflict" {
		t.Fatalf("deleting a role with an inline policy: %v", err)
	}
	names, err := c.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String("app")})
	if err != nil || len(names.PolicyNames) != 1 {
		t.Fatalf("inline policies %+v %v", names, err)
	}
	if _, err := c.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String("app"), PolicyName: aws.String("inline")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String("app")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeletePolicy(ctx, &iam.DeletePolicyInput{PolicyArn: customer.Policy.Arn}); err != nil {
		t.Fatal(err)
	}
	if n := emu.IAMWrites() - writes; n < 14 {
		t.Errorf("IAMWrites counted %d writes", n)
	}
	before := emu.IAMWrites()
	c.ListRoles(ctx, &iam.ListRolesInput{})
	if emu.IAMWrites() != before {
		t.Error("a read counted as a write")
	}
}
