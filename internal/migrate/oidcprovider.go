package migrate

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/podid/podid/internal/iampolicy"
	"github.com/podid/podid/internal/iamrole"
)

// IAM is what migration calls in IAM: the roles' and, for
// --remove-oidc-provider, the account's roles and OIDC providers.
type IAM interface {
	iamrole.IAM
	ListRoles(context.Context, *iam.ListRolesInput, ...func(*iam.Options)) (*iam.ListRolesOutput, error)
	ListOpenIDConnectProviders(context.Context, *iam.ListOpenIDConnectProvidersInput, ...func(*iam.Options)) (*iam.ListOpenIDConnectProvidersOutput, error)
	DeleteOpenIDConnectProvider(context.Context, *iam.DeleteOpenIDConnectProviderInput, ...func(*iam.Options)) (*iam.DeleteOpenIDConnectProviderOutput, error)
}

var _ IAM = (*iam.Client)(nil)

// ProviderARN is the cluster's IAM OIDC provider in the user's account.
func (m *Migrator) ProviderARN() string {
	partition := "aws"
	if parts := strings.SplitN(m.Principal, ":", 3); len(parts) == 3 {
		partition = parts[1]
	}
	return m.Issuer.provider("arn:" + partition + ":iam::" + m.Account + ":role/x")
}

// RemoveOIDCProvider deletes the cluster's IAM OIDC provider, the last
// step of leaving IRSA, but only when no role of the account trusts it any
// more: deleting it while one does breaks that role's IRSA pods, and IAM
// would not refuse. Without approve it says what it would do: leaving are
// the candidates this run migrates, whose OIDC statements it removes
// (with --remove-oidc-trust), so the plan counts them as gone. It reports
// whether the provider is gone (or was never there).
func (m *Migrator) RemoveOIDCProvider(ctx context.Context, approve bool, leaving []*Candidate) (bool, error) {
	provider := m.ProviderARN()
	exists, err := m.providerExists(ctx, provider)
	if err != nil {
		return false, err
	}
	if !exists {
		m.say("OIDC provider %s: not in account %s, nothing to delete", provider, m.Account)
		return true, nil
	}
	trusting, err := m.rolesTrusting(ctx, provider, leaving)
	if err != nil {
		return false, err
	}
	if len(trusting) > 0 {
		m.say("OIDC provider %s: kept, %d role(s) still trust it (migrate their ServiceAccounts with --remove-oidc-trust, or remove those statements, then run again):", provider, len(trusting))
		for _, t := range trusting {
			m.say("  %s", t)
		}
		return false, nil
	}
	if !approve {
		m.say("OIDC provider %s: delete (no role of account %s trusts it once this run is done)", provider, m.Account)
		return false, nil
	}
	if _, err := m.IAM.DeleteOpenIDConnectProvider(ctx, &iam.DeleteOpenIDConnectProviderInput{OpenIDConnectProviderArn: aws.String(provider)}); err != nil {
		return false, fmt.Errorf("deleting OIDC provider %s: %w", provider, err)
	}
	m.say("OIDC provider %s: deleted; `podid migrate rollback` now needs it created again first (e.g. eksctl utils associate-iam-oidc-provider, or aws iam create-open-id-connect-provider)", provider)
	return true, nil
}

func (m *Migrator) providerExists(ctx context.Context, provider string) (bool, error) {
	out, err := m.IAM.ListOpenIDConnectProviders(ctx, &iam.ListOpenIDConnectProvidersInput{})
	if err != nil {
		return false, fmt.Errorf("listing the account's OIDC providers: %w", err)
	}
	return slices.ContainsFunc(out.OpenIDConnectProviderList, func(p types.OpenIDConnectProviderListEntry) bool { return aws.ToString(p.Arn) == provider }), nil
}

// rolesTrusting lists the account's roles with a statement naming the
// provider, as "ARN (statements …)", leaving aside the statements this
// run removes.
func (m *Migrator) rolesTrusting(ctx context.Context, provider string, leaving []*Candidate) ([]string, error) {
	var out []string
	pages := iam.NewListRolesPaginator(m.IAM, &iam.ListRolesInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing the account's roles: %w", err)
		}
		for _, r := range page.Roles {
			arn := aws.ToString(r.Arn)
			doc, err := iamrole.TrustDocument(aws.ToString(r.AssumeRolePolicyDocument))
			if err != nil {
				return nil, fmt.Errorf("role %s's trust policy: %w", arn, err)
			}
			d, err := iampolicy.ParseDocument(doc)
			if err != nil {
				// Unreadable: it may trust the provider.
				out = append(out, arn+" (its trust policy is not readable: "+err.Error()+")")
				continue
			}
			var sids []string
			for i, raw := range d.Statement {
				if namesFederated(raw, provider) && !m.removedByThisRun(raw, arn, leaving) {
					sid := iampolicy.StatementSid(raw)
					if sid == "" {
						sid = fmt.Sprintf("#%d", i+1)
					}
					sids = append(sids, sid)
				}
			}
			if len(sids) > 0 {
				out = append(out, fmt.Sprintf("%s (statement %s)", arn, strings.Join(sids, ", ")))
			}
		}
	}
	return out, nil
}

// removedByThisRun reports whether --remove-oidc-trust takes raw away in
// this run, for one of the ServiceAccounts it migrates.
func (m *Migrator) removedByThisRun(raw json.RawMessage, roleARN string, leaving []*Candidate) bool {
	if !m.Options.RemoveOIDCTrust {
		return false
	}
	for _, c := range leaving {
		if c.RoleARN == roleARN && m.Issuer.isOIDCStatementFor(raw, roleARN, c.SA.Namespace, c.SA.Name) {
			return true
		}
	}
	return false
}

// namesFederated reports whether a statement names provider as a
// Federated principal, whatever it allows or denies.
func namesFederated(raw json.RawMessage, provider string) bool {
	var s struct {
		Principal map[string]iampolicy.OneOrMany[string]
	}
	return json.Unmarshal(raw, &s) == nil && slices.Contains(s.Principal["Federated"], provider)
}
