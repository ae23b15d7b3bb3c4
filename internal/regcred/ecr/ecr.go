// Package ecr is the ECR exchanger: GetAuthorizationToken through
// aws-sdk-go-v2's ECR client, one login per registry, keyed by the
// registry host the docker client pulls from.
package ecr

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/podid/podid/internal/regcred"
)

// ecrHost matches ECR registry hosts: account, optional FIPS, region, and
// the partition's domain.
var ecrHost = regexp.MustCompile(`^([0-9]{12})\.dkr[.-]ecr(-fips)?\.([a-z0-9-]+)\.(amazonaws\.com(\.cn)?|sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)$`)

// ParseHost reports the account and region of an ECR registry host.
func ParseHost(host string) (account, region string, ok bool) {
	m := ecrHost.FindStringSubmatch(host)
	if m == nil {
		return "", "", false
	}
	return m[1], m[3], true
}

// Exchanger implements regcred.Exchanger.
type Exchanger struct {
	// AWS is the SDK configuration (endpoint overrides, HTTP client); its
	// Credentials are replaced by the provider Exchange is given.
	AWS aws.Config
	// Region is the registries' region; empty means AWS.Region.
	Region string
	// RegistryIDs are the registries' account IDs; empty means the caller's.
	RegistryIDs []string
	// Timeout bounds the call; zero means 30 s.
	Timeout time.Duration
	// Identify also asks STS who the caller is, for Credentials.Identity:
	// one more call, worth it for a status (the SecretRotator), not for
	// every image pull (the kubelet credential provider).
	Identify bool
}

// Provider implements regcred.Exchanger.
func (x *Exchanger) Provider() string { return "ecr" }

// Exchange implements regcred.Exchanger.
func (x *Exchanger) Exchange(ctx context.Context, provider aws.CredentialsProvider) (*regcred.Credentials, error) {
	timeout := x.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Credentials first, so that "no identity" is told apart from "ECR refused".
	if _, err := regcred.Retrieve(ctx, provider); err != nil {
		return nil, err
	}
	client := ecr.NewFromConfig(x.AWS, func(o *ecr.Options) {
		o.Credentials = provider
		if x.Region != "" {
			o.Region = x.Region
		}
	})
	out, err := client.GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{RegistryIds: x.RegistryIDs})
	if err != nil {
		return nil, fmt.Errorf("ECR GetAuthorizationToken: %w", err)
	}
	if len(out.AuthorizationData) == 0 {
		return nil, errors.New("ECR GetAuthorizationToken returned no authorization data")
	}
	c := &regcred.Credentials{}
	for _, d := range out.AuthorizationData {
		if d.AuthorizationToken == nil || d.ProxyEndpoint == nil || d.ExpiresAt == nil {
			return nil, errors.New("ECR GetAuthorizationToken returned incomplete authorization data")
		}
		raw, err := base64.StdEncoding.DecodeString(*d.AuthorizationToken)
		if err != nil {
			return nil, fmt.Errorf("ECR authorization token is not base64: %w", err)
		}
		user, password, ok := strings.Cut(string(raw), ":")
		if !ok {
			return nil, errors.New("ECR authorization token is not user:password")
		}
		host := strings.TrimPrefix(strings.TrimPrefix(*d.ProxyEndpoint, "https://"), "http://")
		c.Auths = append(c.Auths, regcred.Auth{Host: strings.TrimRight(host, "/"), Username: user, Password: password})
		if c.ExpiresAt.IsZero() || d.ExpiresAt.Before(c.ExpiresAt) {
			c.ExpiresAt = *d.ExpiresAt
		}
	}
	// A caller that may not call GetCallerIdentity still gets its token.
	if !x.Identify {
		return c, nil
	}
	if who, err := sts.NewFromConfig(x.AWS, func(o *sts.Options) { o.Credentials = provider }).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err == nil && who.Arn != nil {
		c.Identity = *who.Arn
	}
	return c, nil
}
