package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition reasons of a SecretRotator's Ready condition.
const (
	// ReasonRotated: a token is current and every matching namespace has
	// its secrets.
	ReasonRotated = "Rotated"
	// ReasonPartiallyProvisioned: the token is current, but some namespaces
	// could not get their secrets (status.failedNamespaces says why).
	ReasonPartiallyProvisioned = "PartiallyProvisioned"
	// ReasonNoAWSIdentity: the rotator could not obtain AWS credentials
	// (no Pod Identity or IRSA, or a role in the chain refused).
	ReasonNoAWSIdentity = "NoAWSIdentity"
	// ReasonTokenExchangeFailed: the registry refused or failed the exchange.
	ReasonTokenExchangeFailed = "TokenExchangeFailed"
	// ReasonInvalidSpec: the spec cannot be acted on (the message says why).
	ReasonInvalidSpec = "InvalidSpec"
)

// SecretRotator keeps docker pull secrets (and generic token secrets) for a
// container registry fresh in every namespace its selector matches, with
// short-lived registry tokens obtained from podid's AWS identity: JFrog
// Artifactory's passwordless exchange or ECR's GetAuthorizationToken. Its
// spec is JFrog Registry Operator's (apps.jfrog.com/v1alpha1): a JFrog
// manifest works after changing only its apiVersion.
//
// It is cluster-scoped; a namespaced variant of the CRD
// (config/crd/namespaced) may be installed instead, whose rotators write only
// into their own namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=secrot,categories=podid
// +kubebuilder:printcolumn:name="Provider",type=string,JSONPath=`.status.provider`
// +kubebuilder:printcolumn:name="Auth",type=string,JSONPath=`.status.authType`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Namespaces",type=integer,JSONPath=`.status.namespaceCount`
// +kubebuilder:printcolumn:name="Token Expires",type=date,JSONPath=`.status.tokenExpiresAt`
// +kubebuilder:printcolumn:name="Last Rotation",type=date,priority=1,JSONPath=`.status.lastRotationTime`
// +kubebuilder:printcolumn:name="Identity",type=string,priority=1,JSONPath=`.status.identity`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type SecretRotator struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec SecretRotatorSpec `json:"spec"`
	// +optional
	Status SecretRotatorStatus `json:"status,omitempty"`
}

// SecretRotatorSpec is JFrog's SecretRotator spec plus provider, ecr and
// assumeRoleChain.
//
// +kubebuilder:validation:XValidation:rule="has(self.secretName) || (has(self.generatedSecrets) && size(self.generatedSecrets) > 0)",message="set generatedSecrets (or the legacy secretName): the rotator needs at least one secret to write"
// +kubebuilder:validation:XValidation:rule="(has(self.provider) && self.provider == 'ecr') || has(self.artifactoryUrl)",message="set artifactoryUrl for JFrog Artifactory, or provider: ecr for Amazon ECR"
// +kubebuilder:validation:XValidation:rule="!has(self.provider) || self.provider != 'ecr' || (has(self.ecr) && has(self.ecr.region)) || has(self.awsRegion)",message="provider ecr needs ecr.region (or awsRegion): the registries' region"
// +kubebuilder:validation:XValidation:rule="!has(self.serviceAccount) || size(self.serviceAccount.name) == 0 || !has(self.authType) || self.authType != 'podIdentity'",message="serviceAccount is for webIdentity (IRSA); with podIdentity the rotator's own association is used: leave serviceAccount out, or its name empty as JFrog's manifest does"
type SecretRotatorSpec struct {
	// authType is how the rotator obtains AWS credentials: auto (Pod
	// Identity when the pod has it, else IRSA), podIdentity or webIdentity.
	// The mechanism used is reported in status.authType; nothing else is
	// ever tried.
	// +optional
	// +kubebuilder:default=auto
	// +kubebuilder:validation:Enum=auto;podIdentity;webIdentity
	AuthType string `json:"authType,omitempty"`

	// awsRegion is the region of the rotator's STS and IAM calls (and, for
	// ECR, the registries' region unless ecr.region says otherwise).
	// Defaults to the pod's AWS_REGION, else us-west-2 (as JFrog's).
	// +optional
	AWSRegion string `json:"awsRegion,omitempty"`

	// namespaceSelector selects the namespaces that receive the secrets
	// (matchLabels and matchExpressions). An empty selector selects all.
	// +required
	NamespaceSelector metav1.LabelSelector `json:"namespaceSelector"`

	// generatedSecrets are the secrets written into each selected namespace.
	// +optional
	// +listType=map
	// +listMapKey=secretName
	// +kubebuilder:validation:MaxItems=32
	GeneratedSecrets []GeneratedSecret `json:"generatedSecrets,omitempty"`

	// secretName is JFrog's legacy form: one docker secret of this name.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	SecretName string `json:"secretName,omitempty"`

	// artifactoryUrl is the Artifactory host (a leading https:// or http://
	// is dropped; the exchange is always HTTPS). The docker secret's key.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	ArtifactoryURL string `json:"artifactoryUrl,omitempty"`

	// artifactorySubdomains are further registry hosts in the docker secret,
	// with the same credentials.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	ArtifactorySubdomains []string `json:"artifactorySubdomains,omitempty"`

	// refreshTime is how often a new token is obtained, e.g. 30m. Unset: at
	// three quarters of the token's lifetime. A refresh time longer than
	// the token lives is shortened to that.
	// +optional
	RefreshTime *metav1.Duration `json:"refreshTime,omitempty"`

	// secretMetadata are labels and annotations kept on the secrets (added
	// and updated on every rotation, not only at creation).
	// +optional
	SecretMetadata SecretMetadata `json:"secretMetadata,omitempty"`

	// security is the TLS configuration for Artifactory.
	// +optional
	Security SecurityConfig `json:"security,omitempty"`

	// serviceAccount, for webIdentity, exchanges this ServiceAccount's IRSA
	// role (eks.amazonaws.com/role-arn) with a token minted for it, instead
	// of the rotator's own. An empty name (JFrog's manifests write
	// `name: ""`) is the same as leaving it out.
	// +optional
	ServiceAccount *ServiceAccountReference `json:"serviceAccount,omitempty"`

	// provider is the registry: jfrog (the default when artifactoryUrl is
	// set) or ecr.
	// +optional
	// +kubebuilder:validation:Enum=jfrog;ecr
	Provider string `json:"provider,omitempty"`

	// ecr configures provider ecr.
	// +optional
	ECR *ECRConfig `json:"ecr,omitempty"`

	// assumeRoleChain are roles assumed in order after the first identity,
	// each with the previous one's credentials.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	AssumeRoleChain []AssumeRoleHop `json:"assumeRoleChain,omitempty"`
}

// GeneratedSecret is one secret written into each selected namespace.
type GeneratedSecret struct {
	// secretName is the Secret's name.
	// +required
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	SecretName string `json:"secretName"`
	// secretType is docker (kubernetes.io/dockerconfigjson) or generic
	// (Opaque, keys user and token).
	// +optional
	// +kubebuilder:default=docker
	// +kubebuilder:validation:Enum=docker;generic
	SecretType string `json:"secretType,omitempty"`
	// scope is accepted for compatibility with JFrog's manifests and unused.
	// +optional
	Scope string `json:"scope,omitempty"`
}

// SecretMetadata are labels and annotations for the generated secrets.
type SecretMetadata struct {
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// SecurityConfig is TLS to Artifactory.
//
// +kubebuilder:validation:XValidation:rule="!has(self.enabled) || !self.enabled || has(self.certificateSecretName)",message="security.enabled needs certificateSecretName: the Secret holding ca.crt (or ca.pem) and optionally tls.crt/tls.key"
type SecurityConfig struct {
	// enabled turns on the certificate Secret below.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
	// certificateSecretName holds ca.crt or ca.pem (trusted CAs) and,
	// optionally, a client certificate as tls.crt/tls.key or cert.pem/key.pem.
	// +optional
	CertificateSecretName string `json:"certificateSecretName,omitempty"`
	// secretNamespace is that Secret's namespace; defaults to the rotator's
	// own namespace (podid's namespace for a cluster-scoped rotator).
	// +optional
	SecretNamespace string `json:"secretNamespace,omitempty"`
	// insecureSkipVerify turns off server certificate verification. Never
	// use it outside a test.
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// ServiceAccountReference names a ServiceAccount.
type ServiceAccountReference struct {
	// +required
	Name string `json:"name"`
	// +required
	Namespace string `json:"namespace"`
}

// ECRConfig selects the ECR registries.
type ECRConfig struct {
	// region of the registries.
	// +optional
	Region string `json:"region,omitempty"`
	// registryIds are the registries' account IDs; unset means the account
	// of the rotator's role.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^[0-9]{12}$`
	RegistryIDs []string `json:"registryIds,omitempty"`
}

// AssumeRoleHop is one role of the chain (Crossplane's assumeRoleChain).
type AssumeRoleHop struct {
	// +required
	// +kubebuilder:validation:Pattern=`^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/.+$`
	RoleARN string `json:"roleARN"`
	// +optional
	ExternalID string `json:"externalID,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxItems=50
	Tags []SessionTag `json:"tags,omitempty"`
	// +optional
	TransitiveTagKeys []string `json:"transitiveTagKeys,omitempty"`
	// sessionName defaults to podid-<unix time>.
	// +optional
	// +kubebuilder:validation:Pattern=`^[\w+=,.@-]{2,64}$`
	SessionName string `json:"sessionName,omitempty"`
	// duration of the hop's session; defaults to 15m, at most 1h (AWS's
	// limit for chained roles).
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`
}

// SessionTag is a session tag of a hop.
type SessionTag struct {
	// +required
	Key string `json:"key"`
	// +required
	Value string `json:"value"`
}

// SecretRotatorStatus is JFrog's status plus the Ready condition's
// companions: what was observed, when the token expires and was made.
type SecretRotatorStatus struct {
	// authType is the mechanism actually used: podIdentity or webIdentity.
	// +optional
	AuthType string `json:"authType,omitempty"`
	// provider is the registry exchange used: jfrog or ecr.
	// +optional
	Provider string `json:"provider,omitempty"`
	// identity is the AWS principal the registry saw.
	// +optional
	Identity string `json:"identity,omitempty"`
	// conditions: Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// provisionedNamespaces have all their secrets.
	// +optional
	ProvisionedNamespaces []string `json:"provisionedNamespaces,omitempty"`
	// namespaceCount is len(provisionedNamespaces), for the printer column.
	// +optional
	NamespaceCount int `json:"namespaceCount,omitempty"`
	// secretManagedByNamespaces maps each namespace to the secrets the
	// rotator owns there.
	// +optional
	SecretManagedByNamespaces map[string][]string `json:"secretManagedByNamespaces,omitempty"`
	// failedNamespaces could not get (some of) their secrets.
	// +optional
	FailedNamespaces []NamespaceFailure `json:"failedNamespaces,omitempty"`
	// tokenExpiresAt is when the current registry token expires.
	// +optional
	TokenExpiresAt *metav1.Time `json:"tokenExpiresAt,omitempty"`
	// lastRotationTime is when the current token was obtained.
	// +optional
	LastRotationTime *metav1.Time `json:"lastRotationTime,omitempty"`
}

// NamespaceFailure says why a namespace lacks its secrets.
type NamespaceFailure struct {
	Namespace string `json:"namespace"`
	Reason    string `json:"reason"`
}

// SecretRotatorList is a list of SecretRotators.
//
// +kubebuilder:object:root=true
type SecretRotatorList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SecretRotator `json:"items"`
}

func init() {
	SchemeBuilder.Register(&SecretRotator{}, &SecretRotatorList{})
}
