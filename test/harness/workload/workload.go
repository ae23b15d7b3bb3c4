// Package workload is what a pod's program does with podid in podid's tests
// and sandbox: nothing but the standard aws-sdk-go-v2 default credential
// chain, configured only by the environment a pod gets, then
// sts:GetCallerIdentity with what it got. The program test/workload runs it
// in pods on the real node and as a process on the simulated one; Identity
// is what it prints and serves, and what the tests read back.
package workload

import (
	"context"
	"errors"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// EnvAssumeRoleChain, when set, makes Ask do what Upbound's AWS provider
// does for `credentials.source: PodIdentity` with an `assumeRoleChain`:
// the default chain, then one stscreds AssumeRole per hop, each with the
// previous hop's credentials. Hops are comma-separated ROLE_ARN or
// ROLE_ARN|EXTERNAL_ID.
const EnvAssumeRoleChain = "WORKLOAD_ASSUME_ROLE_CHAIN"

func assumeRoleChain(cfg aws.Config, chain string) aws.CredentialsProvider {
	provider := cfg.Credentials
	for _, hop := range strings.Split(chain, ",") {
		roleARN, externalID, _ := strings.Cut(hop, "|")
		hopCfg := cfg.Copy()
		hopCfg.Credentials = provider
		provider = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(hopCfg), roleARN, func(o *stscreds.AssumeRoleOptions) {
			if externalID != "" {
				o.ExternalID = aws.String(externalID)
			}
		}))
	}
	return provider
}

// Identity is who the SDK's default chain made the program.
type Identity struct {
	ARN         string    `json:"arn,omitempty"`
	AccessKeyID string    `json:"accessKeyId,omitempty"`
	AccountID   string    `json:"accountId,omitempty"`
	Source      string    `json:"source,omitempty"`
	Expires     time.Time `json:"expires,omitzero"`
	// Started is when the process started and Obtained when the SDK held
	// credentials: the pod start → credentials figure.
	Started  time.Time `json:"started,omitzero"`
	Obtained time.Time `json:"obtained,omitzero"`
	// Error says what failed; the fields before it hold what succeeded.
	Error string `json:"error,omitempty"`
}

// Ask builds a fresh default chain, retrieves credentials and calls
// GetCallerIdentity with them.
func Ask(ctx context.Context, started time.Time) Identity {
	id := Identity{Started: started}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		id.Error = err.Error()
		return id
	}
	if chain := os.Getenv(EnvAssumeRoleChain); chain != "" {
		cfg.Credentials = assumeRoleChain(cfg, chain)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		id.Error = "the SDK's credential chain: " + err.Error()
		return id
	}
	id.Obtained = time.Now()
	id.AccessKeyID, id.AccountID, id.Source, id.Expires = creds.AccessKeyID, creds.AccountID, creds.Source, creds.Expires.UTC()
	who, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		id.Error = "GetCallerIdentity: " + err.Error()
		return id
	}
	id.ARN = *who.Arn
	return id
}

// Fetch retrieves credentials through a fresh default chain, so that every
// call reaches the node's agent (one chain would cache them): the steady
// load the fault tests watch.
func Fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return err
	}
	if creds.AccessKeyID == "" {
		return errors.New("no access key")
	}
	return nil
}
