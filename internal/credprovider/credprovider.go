// Package credprovider is podid's kubelet image credential provider
// (`podid-credential-provider`): the kubelet's plugin protocol
// credentialprovider.kubelet.k8s.io/v1 on stdin and stdout. With the
// ServiceAccount token the kubelet mints for the pod being started
// (KEP-4412), it gets that pod's role credentials from the node's podid
// agent — the endpoint and cache the pod's own SDK uses, so one upstream
// exchange serves both — and exchanges them for registry credentials with
// regcred: ECR's GetAuthorizationToken for ECR hosts, JFrog's passwordless
// token for the Artifactory hosts it is configured with.
//
// A pod's images are pulled with its own association's role: a pod whose
// ServiceAccount has none gets a "no association" error, never another
// identity; nothing is stored and no secret exists.
package credprovider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/smithy-go"
	"github.com/google/go-containerregistry/pkg/name"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"

	"github.com/podid/podid/internal/podidentity"
	"github.com/podid/podid/internal/regcred"
	"github.com/podid/podid/internal/regcred/exchangers"
)

// maxRequest bounds what is read from stdin.
const maxRequest = 1 << 20

// Config configures the plugin (its flags, from the CredentialProviderConfig's args).
type Config struct {
	// AgentURL is the node agent's credentials endpoint.
	AgentURL string
	// JFrogHosts are the Artifactory hosts (host[:port]) the plugin answers
	// for with JFrog's exchange.
	JFrogHosts []string
	// AWS is the base SDK configuration (endpoint overrides, HTTP client).
	AWS aws.Config
	// Timeout bounds the whole answer; the kubelet's own limit is longer.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DecodeRequest reads a CredentialProviderRequest, refusing anything else.
func DecodeRequest(r io.Reader) (*credentialproviderv1.CredentialProviderRequest, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxRequest+1))
	if err != nil {
		return nil, fmt.Errorf("reading the request: %w", err)
	}
	if len(data) > maxRequest {
		return nil, fmt.Errorf("the request is larger than %d bytes", maxRequest)
	}
	var req credentialproviderv1.CredentialProviderRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("the request is not JSON: %w", err)
	}
	if req.APIVersion != credentialproviderv1.SchemeGroupVersion.String() || req.Kind != "CredentialProviderRequest" {
		return nil, fmt.Errorf("the request is apiVersion %q kind %q; this plugin speaks %s CredentialProviderRequest (set apiVersion in the CredentialProviderConfig)", req.APIVersion, req.Kind, credentialproviderv1.SchemeGroupVersion)
	}
	if req.Image == "" {
		return nil, errors.New("the request names no image")
	}
	return &req, nil
}

// Run answers one request from in on out.
func Run(ctx context.Context, cfg Config, in io.Reader, out io.Writer) error {
	req, err := DecodeRequest(in)
	if err != nil {
		return err
	}
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	resp, err := Answer(ctx, cfg, req)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(resp)
}

// Answer turns a request into registry credentials.
func Answer(ctx context.Context, cfg Config, req *credentialproviderv1.CredentialProviderRequest) (*credentialproviderv1.CredentialProviderResponse, error) {
	if req.ServiceAccountToken == "" {
		return nil, errors.New("the kubelet sent no ServiceAccount token: set tokenAttributes (serviceAccountTokenAudience pods.eks.amazonaws.com, requireServiceAccount true) in the CredentialProviderConfig")
	}
	ref, err := name.ParseReference(req.Image)
	if err != nil {
		return nil, fmt.Errorf("image %q is not a valid reference: %w", req.Image, err)
	}
	host := ref.Context().RegistryStr()
	x, err := cfg.exchanger(host)
	if err != nil {
		return nil, err
	}
	agentURL := cfg.AgentURL
	if agentURL == "" {
		agentURL = podidentity.CredentialsURI
	}
	// The pod's own credentials, from the node's agent with the pod's token:
	// the agent checks the token and finds the pod's association.
	podCreds := &expiryOf{CredentialsProvider: aws.NewCredentialsCache(endpointcreds.New(agentURL, func(o *endpointcreds.Options) {
		o.AuthorizationToken = req.ServiceAccountToken
		if cfg.AWS.HTTPClient != nil {
			o.HTTPClient = cfg.AWS.HTTPClient
		}
	}))}
	creds, err := x.Exchange(ctx, podCreds)
	if err != nil {
		return nil, explain(err)
	}
	now := time.Now
	if cfg.Now != nil {
		now = cfg.Now
	}
	// The kubelet keeps the answer for every pod of this ServiceAccount
	// (tokenAttributes.cacheType ServiceAccount) for cacheDuration: half the
	// remaining life of the registry token or of the role's session,
	// whichever ends first. Half, as ECR's own plugin does, so cached
	// credentials are never used at their end; the session, so that a
	// deleted or changed association stops new pulls no later than it stops
	// the pods' own SDKs.
	until := creds.ExpiresAt
	if session := podCreds.expiry(); !session.IsZero() && session.Before(until) {
		until = session
	}
	resp := &credentialproviderv1.CredentialProviderResponse{
		TypeMeta:      metav1.TypeMeta{APIVersion: credentialproviderv1.SchemeGroupVersion.String(), Kind: "CredentialProviderResponse"},
		CacheKeyType:  credentialproviderv1.RegistryPluginCacheKeyType,
		CacheDuration: &metav1.Duration{Duration: max(until.Sub(now())/2, 0).Truncate(time.Second)},
		Auth:          map[string]credentialproviderv1.AuthConfig{},
	}
	for _, a := range creds.Auths {
		resp.Auth[a.Host] = credentialproviderv1.AuthConfig{Username: a.Username, Password: a.Password}
	}
	return resp, nil
}

// expiryOf remembers when the pod's role credentials expire.
type expiryOf struct {
	aws.CredentialsProvider
	mu      sync.Mutex
	expires time.Time
}

func (e *expiryOf) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := e.CredentialsProvider.Retrieve(ctx)
	if err == nil && c.CanExpire {
		e.mu.Lock()
		e.expires = c.Expires
		e.mu.Unlock()
	}
	return c, err
}

func (e *expiryOf) expiry() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.expires
}

// exchanger picks the exchange for a registry host.
func (cfg Config) exchanger(host string) (regcred.Exchanger, error) {
	aws := cfg.AWS.Copy()
	if aws.Region == "" {
		aws.Region = "us-east-1"
	}
	client, _ := cfg.AWS.HTTPClient.(*http.Client) // nil: http.DefaultClient
	return exchangers.ForHost(host, cfg.JFrogHosts, exchangers.Spec{AWS: aws, HTTPClient: client, Timeout: cfg.Timeout})
}

// explain shortens a failure to what the kubelet should show in the pod's
// events: the agent's or the registry's own message.
func explain(err error) error {
	var ce *regcred.CredentialsError
	if errors.As(err, &ce) {
		var api smithy.APIError
		if errors.As(ce.Err, &api) {
			switch api.ErrorCode() {
			case "ResourceNotFound", "ResourceNotFoundException": // EKS Auth's name, and EKS's
				return fmt.Errorf("no PodIdentityAssociation for this pod's ServiceAccount, so its images cannot be pulled with its role: %s", api.ErrorMessage())
			case "AccessDenied", "AccessDeniedException":
				return fmt.Errorf("podid could not assume the role of this pod's association (check the role's trust policy): %s", api.ErrorMessage())
			}
			return fmt.Errorf("the node's podid agent refused the pod's credentials: %s: %s", api.ErrorCode(), api.ErrorMessage())
		}
		return fmt.Errorf("getting the pod's credentials from the node's podid agent: %v", trim(ce.Err.Error()))
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		return fmt.Errorf("the registry refused the pod's role: %s: %s", api.ErrorCode(), api.ErrorMessage())
	}
	return errors.New(trim(err.Error()))
}

func trim(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}
