// Package credsource resolves the AWS identity a podid component acts as
// (the SecretRotator today; doctor and migrate next): Pod Identity through
// the node's agent, or IRSA (a web identity token exchanged with STS),
// followed by an optional chain of roles assumed hop by hop. It is built on
// aws-sdk-go-v2's own providers (endpointcreds, stscreds).
//
// It never falls back silently: an authType whose variables are missing is
// an error that says what is missing, never the SDK's default chain (the
// node's instance role, static keys), and the Source names the mechanism it
// actually used.
package credsource

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/podid/podid/internal/podidentity"
)

// AuthType is how the first identity is obtained (JFrog's authType).
type AuthType string

const (
	// Auto takes Pod Identity when its variables are present, else IRSA.
	Auto AuthType = "auto"
	// PodIdentity: AWS_CONTAINER_CREDENTIALS_FULL_URI with the token in
	// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, as the podid webhook injects.
	PodIdentity AuthType = "podIdentity"
	// WebIdentity: IRSA, from AWS_ROLE_ARN/AWS_WEB_IDENTITY_TOKEN_FILE or a
	// named ServiceAccount's eks.amazonaws.com/role-arn and a TokenRequest.
	WebIdentity AuthType = "webIdentity"
)

// Hop is one role of an assume-role chain (Crossplane's assumeRoleChain,
// plus a session name and duration).
type Hop struct {
	RoleARN           string
	ExternalID        string
	Tags              map[string]string
	TransitiveTagKeys []string
	// SessionName defaults to podid-<unix seconds>.
	SessionName string
	// Duration defaults to 15 minutes, as the SDK's.
	Duration time.Duration
}

// ServiceAccountRef names a ServiceAccount whose IRSA role and token to use.
type ServiceAccountRef struct {
	Namespace, Name string
}

// Spec says which identity to act as.
type Spec struct {
	AuthType AuthType
	// ServiceAccount, for WebIdentity (and Auto without Pod Identity), uses
	// this ServiceAccount's role and a token minted for it instead of the
	// process's own IRSA variables.
	ServiceAccount *ServiceAccountRef
	Chain          []Hop
}

// Source is a resolved identity.
type Source struct {
	// Provider yields credentials of the last role (cached, renewed before
	// expiry by aws.CredentialsCache).
	Provider aws.CredentialsProvider
	// Mechanism is PodIdentity or WebIdentity: what was actually used.
	Mechanism AuthType
	// Roles are the roles assumed in order (the IRSA role first, if any).
	Roles []string
}

// Resolver resolves Specs in one process.
type Resolver struct {
	// AWS is the base configuration (region, endpoints, HTTP client) for the
	// STS calls; its Credentials are ignored.
	AWS aws.Config
	// Getenv reads the process environment; nil means os.Getenv.
	Getenv func(string) string
	// ReadFile reads token files; nil means os.ReadFile.
	ReadFile func(string) ([]byte, error)
	// Kube mints ServiceAccount tokens (TokenRequest) for Spec.ServiceAccount.
	Kube kubernetes.Interface
	// Now names sessions; nil means time.Now.
	Now func() time.Time
}

func (r *Resolver) getenv(k string) string {
	if r.Getenv != nil {
		return r.Getenv(k)
	}
	return os.Getenv(k)
}

func (r *Resolver) readFile(p string) ([]byte, error) {
	if r.ReadFile != nil {
		return r.ReadFile(p)
	}
	return os.ReadFile(p)
}

// Resolve builds the providers for spec. It makes no AWS call except to
// read a ServiceAccount; credentials are fetched on first use.
func (r *Resolver) Resolve(ctx context.Context, spec Spec) (*Source, error) {
	authType := spec.AuthType
	if authType == "" {
		authType = Auto
	}
	var src *Source
	var err error
	switch authType {
	case PodIdentity:
		src, err = r.podIdentity()
	case WebIdentity:
		src, err = r.webIdentity(ctx, spec.ServiceAccount)
	case Auto:
		if r.getenv(podidentity.EnvCredentialsFullURI) != "" || r.getenv(podidentity.EnvAuthorizationTokenFile) != "" {
			src, err = r.podIdentity()
		} else {
			src, err = r.webIdentity(ctx, spec.ServiceAccount)
			if errors.Is(err, errNoWebIdentity) {
				err = fmt.Errorf("authType auto found neither Pod Identity (%s and %s) nor IRSA (%s and %s, or a serviceAccount with the %s annotation): create a PodIdentityAssociation for this pod's ServiceAccount and restart the pod", podidentity.EnvCredentialsFullURI, podidentity.EnvAuthorizationTokenFile, podidentity.EnvRoleARN, podidentity.EnvWebIdentityTokenFile, podidentity.AnnotationRoleARN)
			}
		}
	default:
		return nil, fmt.Errorf("authType %q is not one of auto, podIdentity, webIdentity", authType)
	}
	if err != nil {
		return nil, err
	}
	for i, hop := range spec.Chain {
		if hop.RoleARN == "" {
			return nil, fmt.Errorf("assumeRoleChain[%d] has no roleARN", i)
		}
		src.Provider = r.assume(src.Provider, hop)
		src.Roles = append(src.Roles, hop.RoleARN)
	}
	return src, nil
}

func (r *Resolver) podIdentity() (*Source, error) {
	uri, tokenFile := r.getenv(podidentity.EnvCredentialsFullURI), r.getenv(podidentity.EnvAuthorizationTokenFile)
	switch {
	case uri == "" && tokenFile == "":
		return nil, fmt.Errorf("authType podIdentity, but %s and %s are not set: no PodIdentityAssociation matched this pod's namespace and ServiceAccount when it was created (create one, then restart the pod)", podidentity.EnvCredentialsFullURI, podidentity.EnvAuthorizationTokenFile)
	case uri == "":
		return nil, fmt.Errorf("%s is set but %s is not: the pod's Pod Identity environment is incomplete", podidentity.EnvAuthorizationTokenFile, podidentity.EnvCredentialsFullURI)
	case tokenFile == "":
		return nil, fmt.Errorf("%s is set but %s is not: the pod's Pod Identity environment is incomplete", podidentity.EnvCredentialsFullURI, podidentity.EnvAuthorizationTokenFile)
	}
	p := endpointcreds.New(uri, func(o *endpointcreds.Options) {
		if r.AWS.HTTPClient != nil {
			o.HTTPClient = r.AWS.HTTPClient
		}
		// The kubelet rotates the token file, so it is read on every fetch.
		o.AuthorizationTokenProvider = endpointcreds.TokenProviderFunc(func() (string, error) {
			b, err := r.readFile(tokenFile)
			if err != nil {
				return "", fmt.Errorf("reading the Pod Identity token: %w", err)
			}
			return strings.TrimSpace(string(b)), nil
		})
	})
	return &Source{Provider: aws.NewCredentialsCache(p), Mechanism: PodIdentity}, nil
}

var errNoWebIdentity = errors.New("no web identity")

func (r *Resolver) webIdentity(ctx context.Context, sa *ServiceAccountRef) (*Source, error) {
	var roleARN string
	var tokens stscreds.IdentityTokenRetriever
	if sa != nil && sa.Name != "" {
		if r.Kube == nil {
			return nil, errors.New("serviceAccount is set but no Kubernetes client is configured")
		}
		obj, err := r.Kube.CoreV1().ServiceAccounts(sa.Namespace).Get(ctx, sa.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("reading ServiceAccount %s/%s for its IRSA role: %w", sa.Namespace, sa.Name, err)
		}
		roleARN = obj.Annotations[podidentity.AnnotationRoleARN]
		if roleARN == "" {
			return nil, fmt.Errorf("ServiceAccount %s/%s has no %s annotation: annotate it with the IAM role to assume, or use authType podIdentity", sa.Namespace, sa.Name, podidentity.AnnotationRoleARN)
		}
		tokens = &tokenRequest{kube: r.Kube, ref: *sa}
	} else {
		roleARN = r.getenv(podidentity.EnvRoleARN)
		file := r.getenv(podidentity.EnvWebIdentityTokenFile)
		if roleARN == "" && file == "" {
			return nil, fmt.Errorf("authType webIdentity, but %s and %s are not set and no serviceAccount is named: %w", podidentity.EnvRoleARN, podidentity.EnvWebIdentityTokenFile, errNoWebIdentity)
		}
		if roleARN == "" || file == "" {
			return nil, fmt.Errorf("IRSA needs both %s and %s; only one is set", podidentity.EnvRoleARN, podidentity.EnvWebIdentityTokenFile)
		}
		tokens = tokenFile{r: r, path: file}
	}
	client := sts.NewFromConfig(r.awsConfig(aws.AnonymousCredentials{}))
	p := stscreds.NewWebIdentityRoleProvider(client, roleARN, tokens, func(o *stscreds.WebIdentityRoleOptions) {
		o.RoleSessionName = r.sessionName("")
	})
	return &Source{Provider: aws.NewCredentialsCache(p), Mechanism: WebIdentity, Roles: []string{roleARN}}, nil
}

func (r *Resolver) assume(prev aws.CredentialsProvider, hop Hop) aws.CredentialsProvider {
	client := sts.NewFromConfig(r.awsConfig(prev))
	p := stscreds.NewAssumeRoleProvider(client, hop.RoleARN, func(o *stscreds.AssumeRoleOptions) {
		o.RoleSessionName = r.sessionName(hop.SessionName)
		if hop.Duration > 0 {
			o.Duration = hop.Duration
		}
		if hop.ExternalID != "" {
			o.ExternalID = ptr.To(hop.ExternalID)
		}
		for k, v := range hop.Tags {
			o.Tags = append(o.Tags, ststypes.Tag{Key: ptr.To(k), Value: ptr.To(v)})
		}
		o.TransitiveTagKeys = hop.TransitiveTagKeys
	})
	return aws.NewCredentialsCache(p)
}

func (r *Resolver) awsConfig(creds aws.CredentialsProvider) aws.Config {
	cfg := r.AWS.Copy()
	cfg.Credentials = creds
	return cfg
}

func (r *Resolver) sessionName(name string) string {
	if name != "" {
		return name
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	return fmt.Sprintf("podid-%d", now().Unix())
}

type tokenFile struct {
	r    *Resolver
	path string
}

func (t tokenFile) GetIdentityToken() ([]byte, error) {
	b, err := t.r.readFile(t.path)
	if err != nil {
		return nil, fmt.Errorf("reading the IRSA token %s: %w", t.path, err)
	}
	return []byte(strings.TrimSpace(string(b))), nil
}

// tokenRequest mints an IRSA token for a ServiceAccount as the EKS
// webhook's projected volume would: audience sts.amazonaws.com, one hour.
type tokenRequest struct {
	kube kubernetes.Interface
	ref  ServiceAccountRef
}

func (t *tokenRequest) GetIdentityToken() ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := t.kube.CoreV1().ServiceAccounts(t.ref.Namespace).CreateToken(ctx, t.ref.Name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{podidentity.IRSAAudience}, ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("requesting a token for ServiceAccount %s/%s: %w", t.ref.Namespace, t.ref.Name, err)
	}
	return []byte(tr.Status.Token), nil
}
