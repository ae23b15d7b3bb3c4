package awsemu

import (
	"encoding/xml"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// OIDCProvider is an IAM OIDC identity provider: an issuer whose tokens
// AssumeRoleWithWebIdentity accepts, checked with its keys (for a cluster,
// the API server's /openid/v1/jwks).
type OIDCProvider struct {
	// Issuer is the tokens' iss, e.g. https://kubernetes.default.svc.
	Issuer string
	Keys   jose.JSONWebKeySet
	// Account holds the provider; defaults to Options.AccountID.
	Account string
}

// ARN is the provider's ARN, which trust policies name as a Federated principal.
func (p OIDCProvider) ARN(partition string) string {
	return fmt.Sprintf("arn:%s:iam::%s:oidc-provider/%s", partition, p.Account, p.hostPath())
}

// hostPath is the issuer without its scheme: the prefix of its condition keys.
func (p OIDCProvider) hostPath() string {
	return strings.TrimPrefix(p.Issuer, "https://")
}

// AddOIDCProvider registers (or replaces) an identity provider.
func (e *Emulator) AddOIDCProvider(p OIDCProvider) {
	if p.Account == "" {
		p.Account = e.opts.AccountID
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.oidc[p.Issuer] = p
}

// WebIdentityCalls counts AssumeRoleWithWebIdentity calls, granted or not.
func (e *Emulator) WebIdentityCalls() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.webIdentityCalls
}

// assumeRoleWithWebIdentity is unsigned: the token is the caller's proof.
// The token must be signed by a registered provider's key and unexpired;
// the trust policy then sees the provider as a Federated principal and the
// token's sub and aud as "<issuer host>:sub" and ":aud".
func (e *Emulator) assumeRoleWithWebIdentity(_ principal, f formValues) (any, *apiError) {
	e.mu.Lock()
	e.webIdentityCalls++
	e.mu.Unlock()
	caller, aerr := e.webIdentityCaller(f.Get("WebIdentityToken"))
	if aerr != nil {
		return nil, aerr
	}
	s, aerr := e.assume(caller, f, "sts:AssumeRoleWithWebIdentity")
	if aerr != nil {
		return nil, aerr
	}
	return struct {
		sessionResult
		SubjectFromWebIdentityToken string `xml:"SubjectFromWebIdentityToken"`
		Audience                    string `xml:"Audience"`
		Provider                    string `xml:"Provider"`
	}{resultOf(s), caller.claims["sub"], caller.claims["aud"], caller.federated}, nil
}

func (e *Emulator) webIdentityCaller(raw string) (principal, *apiError) {
	invalid := func(format string, args ...any) (principal, *apiError) {
		return principal{}, errorf("InvalidIdentityToken", format, args...)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		return invalid("the web identity token is not a signed JWT: %v", err)
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return invalid("the web identity token's claims are unreadable")
	}
	e.mu.Lock()
	p, ok := e.oidc[unverified.Issuer]
	e.mu.Unlock()
	if !ok {
		return invalid("No OpenIDConnect provider found in your account for %s", unverified.Issuer)
	}
	var claims jwt.Claims
	if err := tok.Claims(p.Keys, &claims); err != nil {
		return invalid("the web identity token's signature does not verify with the keys of %s", p.Issuer)
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{Time: e.now()}, 0); err != nil {
		if err == jwt.ErrExpired {
			return principal{}, errorf("ExpiredTokenException", "Token expired: current date/time %s must be before the expiration date/time %s", e.now().UTC().Format(time.RFC3339), claims.Expiry.Time().UTC().Format(time.RFC3339))
		}
		return invalid("the web identity token is not valid now: %v", err)
	}
	arn := p.ARN(e.opts.Partition)
	host := p.hostPath()
	c := principal{account: p.Account, arn: arn, federated: arn, claims: map[string]string{"sub": claims.Subject, host + ":sub": claims.Subject}}
	if len(claims.Audience) > 0 {
		c.claims["aud"] = claims.Audience[0]
		c.claims[host+":aud"] = claims.Audience[0]
	}
	return c, nil
}

// listOpenIDConnectProviders lists the caller's account's providers.
func (e *Emulator) listOpenIDConnectProviders(caller principal, _ formValues) (any, *apiError) {
	e.mu.Lock()
	var arns []string
	for _, p := range e.oidc {
		if p.Account == caller.account {
			arns = append(arns, p.ARN(e.opts.Partition))
		}
	}
	e.mu.Unlock()
	sort.Strings(arns)
	type entry struct {
		Arn string `xml:"Arn"`
	}
	out := struct {
		List []entry `xml:"OpenIDConnectProviderList>member"`
	}{}
	for _, a := range arns {
		out.List = append(out.List, entry{a})
	}
	return out, nil
}

// deleteOpenIDConnectProvider deletes a provider, as IAM does, whether
// roles still trust it or not: their web identity callers are refused
// from then on.
func (e *Emulator) deleteOpenIDConnectProvider(caller principal, f formValues) (any, *apiError) {
	arn := f.Get("OpenIDConnectProviderArn")
	e.mu.Lock()
	defer e.mu.Unlock()
	e.iamWrites++
	for issuer, p := range e.oidc {
		if p.Account == caller.account && p.ARN(e.opts.Partition) == arn {
			delete(e.oidc, issuer)
			return struct{ XMLName xml.Name }{}, nil
		}
	}
	return nil, errorf("NoSuchEntity", "OpenIDConnect provider not found for arn %s", arn)
}
