package iamrole_test

import (
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go"

	"github.com/podid/podid/internal/iamrole"
	"github.com/podid/podid/test/emu/awsemu"
	"github.com/podid/podid/test/emu/awsemu/awsemutest"
)

// A create that fails half-way (a policy that does not exist) leaves no
// role behind; a server principal published without its path gets it.
func TestCreateUndoesAndPrincipalPath(t *testing.T) {
	emu := awsemutest.Start(t, awsemu.Options{AccountID: "111122223333"})
	c := iam.NewFromConfig(emu.AdminConfig())
	ctx := t.Context()
	a := iamrole.Association{Cluster: "prod", Namespace: "shop", ServiceAccount: "billing"}
	_, err := iamrole.Create(ctx, c, "aws", "arn:aws:iam::111122223333:user/admin", a, iamrole.Spec{RoleName: "half",
		PermissionPolicyARNs: []string{"arn:aws:iam::111122223333:policy/missing"}})
	if err == nil {
		t.Fatal("a create attaching a missing policy succeeded")
	}
	var api smithy.APIError
	if _, err := c.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("half")}); !errors.As(err, &api) || api.ErrorCode() != "NoSuchEntity" {
		t.Errorf("the half-made role is still there: %v", err)
	}

	server, err := c.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("podid-server"), Path: aws.String("/platform/"),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/admin"},"Action":"sts:AssumeRole"}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := iamrole.ResolvePrincipal(ctx, c, "arn:aws:iam::111122223333:role/podid-server", true)
	if err != nil || got != *server.Role.Arn {
		t.Errorf("ResolvePrincipal = %q, %v; want %s", got, err, *server.Role.Arn)
	}
	if _, err := iamrole.ResolvePrincipal(ctx, c, "arn:aws:iam::111122223333:role/gone", true); err == nil {
		t.Error("a principal whose role cannot be read resolved")
	}
}
