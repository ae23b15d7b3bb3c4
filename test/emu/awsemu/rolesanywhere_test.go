package awsemu_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ra "github.com/aws/aws-sdk-go-v2/service/rolesanywhere"
	"github.com/aws/smithy-go"
)

// A profile's roles must be role ARNs, when it is created and when it is
// updated, as in AWS: a test that updates a profile wrongly fails there
// rather than passing against a laxer emulator.
func TestProfileRolesMustBeRoleARNs(t *testing.T) {
	f := setup(t)
	client := ra.NewFromConfig(f.emu.AdminConfig())
	role := "arn:aws:iam::" + account + ":role/podid-server"
	out, err := client.CreateProfile(t.Context(), &ra.CreateProfileInput{Name: aws.String("p"), RoleArns: []string{role}})
	if err != nil {
		t.Fatal(err)
	}
	id := out.Profile.ProfileId
	for _, bad := range []string{"podid-server", "arn:aws:iam::" + account + ":user/someone"} {
		_, err := client.CreateProfile(t.Context(), &ra.CreateProfileInput{Name: aws.String("q"), RoleArns: []string{bad}})
		wantValidation(t, "CreateProfile "+bad, err)
		_, err = client.UpdateProfile(t.Context(), &ra.UpdateProfileInput{ProfileId: id, RoleArns: []string{role, bad}})
		wantValidation(t, "UpdateProfile "+bad, err)
	}
	got, err := client.GetProfile(t.Context(), &ra.GetProfileInput{ProfileId: id})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Profile.RoleArns) != 1 || got.Profile.RoleArns[0] != role {
		t.Errorf("after refused updates the profile's roles are %v, want [%s]", got.Profile.RoleArns, role)
	}
}

func wantValidation(t *testing.T, what string, err error) {
	t.Helper()
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "ValidationException" || !strings.Contains(apiErr.ErrorMessage(), "not a role ARN") {
		t.Errorf("%s: %v, want a ValidationException saying it is not a role ARN", what, err)
	}
}
