package integration

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/podid/podid/test/emu/awsemu"
)

// --remove-oidc-provider deletes the cluster's IAM OIDC provider only
// once no role of the account trusts it: the plan counts the statements
// the run removes as gone and names the roles that keep it; the apply
// keeps it (and says so, failing) while one does, and deletes it when
// none does.
func TestMigrateRemovesTheOIDCProvider(t *testing.T) {
	serverIdentity(t)
	ns, elsewhere := newNamespace(t), newNamespace(t)
	suffix := ns[len(ns)-5:]
	issuer := "oidc.leaving.example/id/" + suffix
	emu.AddOIDCProvider(awsemu.OIDCProvider{Issuer: "https://" + issuer})
	provider := "arn:aws:iam::" + identity.AccountID + ":oidc-provider/" + issuer
	migrating := createRole(t, "leaving-"+suffix, irsaTrustOf(issuer, identity.AccountID, ns, "app"))
	irsaServiceAccount(t, ns, "app", migrating, nil)
	stayingName := "staying-" + suffix
	staying := createRole(t, stayingName, irsaTrustOf(issuer, identity.AccountID, elsewhere, "batch"))

	args := []string{"migrate", "irsa", "-n", ns, "--oidc-issuer", "https://" + issuer, "--remove-oidc-trust", "--remove-oidc-provider"}
	out, errOut, err := podid(t, args...)
	if err != nil {
		t.Fatalf("plan: %v\n%s%s", err, out, errOut)
	}
	if !strings.Contains(out, "OIDC provider "+provider+": kept, 1 role(s) still trust it") || !strings.Contains(out, staying+" (statement #1)") || strings.Contains(out, migrating+" (statement") {
		t.Errorf("plan:\n%s", out)
	}

	out, _, err = podid(t, append(args, "--approve")...)
	if err == nil || !strings.Contains(err.Error(), "is kept: roles still trust it") {
		t.Errorf("apply while %s trusts it: %v\n%s", staying, err, out)
	}
	if !providerListed(t, provider) {
		t.Fatal("the provider was deleted while a role trusts it")
	}

	// The last role to trust it stops trusting it: the plan says delete,
	// the apply deletes it.
	if _, err := iam.NewFromConfig(awsConfig(emuAdmin)).UpdateAssumeRolePolicy(t.Context(), &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(stayingName),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/admin"},"Action":"sts:AssumeRole"}]}`)}); err != nil {
		t.Fatal(err)
	}
	out, _, err = podid(t, args...)
	if err != nil || !strings.Contains(out, "OIDC provider "+provider+": delete") {
		t.Errorf("plan once nothing trusts it: %v\n%s", err, out)
	}
	if !providerListed(t, provider) {
		t.Fatal("the plan deleted the provider")
	}
	out, errOut, err = podid(t, append(args, "--approve")...)
	if err != nil || !strings.Contains(out, "OIDC provider "+provider+": deleted") {
		t.Fatalf("apply: %v\n%s%s", err, out, errOut)
	}
	if providerListed(t, provider) {
		t.Error("the provider is still there")
	}
}

func providerListed(t *testing.T, arn string) bool {
	t.Helper()
	out, err := iam.NewFromConfig(awsConfig(emuAdmin)).ListOpenIDConnectProviders(t.Context(), &iam.ListOpenIDConnectProvidersInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range out.OpenIDConnectProviderList {
		if aws.ToString(p.Arn) == arn {
			return true
		}
	}
	return false
}
