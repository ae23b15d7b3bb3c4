// Package podidentity is the wire contract of Amazon EKS Pod Identity and
// of IRSA, as unmodified AWS SDKs, the stock EKS Pod Identity Agent and
// EKS's tools see it: the agent's addresses and credentials path, the token
// audience and where the token is mounted, the environment variables the
// SDKs read, the eks.amazonaws.com annotations and labels, and the session
// tags. Every other package reads these names from here, so that the
// contract is written once.
//
// It is a leaf: it imports nothing, and holds names, not behaviour.
package podidentity

// The node agent.
const (
	// AgentIPv4 and AgentIPv6 are the link-local addresses the agent serves
	// on every node.
	AgentIPv4 = "169.254.170.23"
	AgentIPv6 = "fd00:ec2::23"
	// AgentPort is the port of the credentials endpoint.
	AgentPort = 80
	// CredentialsPath is the endpoint's path.
	CredentialsPath = "/v1/credentials"
	// CredentialsURI and CredentialsURIv6 are the full URIs pods are given.
	CredentialsURI   = "http://" + AgentIPv4 + CredentialsPath
	CredentialsURIv6 = "http://[" + AgentIPv6 + "]" + CredentialsPath
)

// The pod's projected ServiceAccount token.
const (
	// Audience is the audience of pod tokens.
	Audience = "pods.eks.amazonaws.com"
	// TokenVolumeName, TokenMountPath and TokenPath are where EKS's webhook
	// mounts the token.
	TokenVolumeName = "eks-pod-identity-token"
	TokenMountPath  = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
	TokenPath       = "eks-pod-identity-token"
	// TokenExpirationSeconds is the lifetime EKS requests for the token.
	TokenExpirationSeconds = 86400
)

// The environment variables the AWS SDKs read.
const (
	// EnvCredentialsFullURI and EnvAuthorizationTokenFile are the container
	// credentials provider's.
	EnvCredentialsFullURI     = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
	EnvAuthorizationTokenFile = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
	// EnvRoleARN and EnvWebIdentityTokenFile are IRSA's (web identity).
	EnvRoleARN              = "AWS_ROLE_ARN"
	EnvWebIdentityTokenFile = "AWS_WEB_IDENTITY_TOKEN_FILE"
	// EnvSTSRegionalEndpoints selects STS's regional endpoints.
	EnvSTSRegionalEndpoints = "AWS_STS_REGIONAL_ENDPOINTS"
)

// IRSA's token and ServiceAccount annotations.
const (
	IRSAVolumeName = "aws-token"
	IRSAMountPath  = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
	IRSATokenPath  = "token"
	IRSAAudience   = "sts.amazonaws.com"

	// AnnotationPrefix starts every EKS annotation and label.
	AnnotationPrefix          = "eks.amazonaws.com/"
	AnnotationRoleARN         = AnnotationPrefix + "role-arn"
	AnnotationAudience        = AnnotationPrefix + "audience"
	AnnotationRegionalSTS     = AnnotationPrefix + "sts-regional-endpoints"
	AnnotationTokenExpiration = AnnotationPrefix + "token-expiration"
	// AnnotationSkipContainers names containers (comma separated) that get
	// nothing injected.
	AnnotationSkipContainers = AnnotationPrefix + "skip-containers"
	// LabelPodIdentity marks a pod the webhook gave Pod Identity, as EKS's
	// webhook does.
	LabelPodIdentity = AnnotationPrefix + "pod-identity"
)

// The session tags EKS Pod Identity sets on every role session, all
// transitive.
const (
	TagClusterARN     = "eks-cluster-arn"
	TagClusterName    = "eks-cluster-name"
	TagNamespace      = "kubernetes-namespace"
	TagServiceAccount = "kubernetes-service-account"
	TagPodName        = "kubernetes-pod-name"
	TagPodUID         = "kubernetes-pod-uid"
)
