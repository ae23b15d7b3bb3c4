package webhook

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Names and defaults of what EKS injects (contracts §1 and §6).
const (
	EnvCredentialsURI = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
	EnvTokenFile      = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
	EnvRoleARN        = "AWS_ROLE_ARN"
	EnvWebIdentity    = "AWS_WEB_IDENTITY_TOKEN_FILE"
	EnvSTSRegional    = "AWS_STS_REGIONAL_ENDPOINTS"

	DefaultCredentialsURI   = "http://169.254.170.23/v1/credentials"
	DefaultCredentialsURIv6 = "http://[fd00:ec2::23]/v1/credentials"
	DefaultAudience         = "pods.eks.amazonaws.com"
	DefaultVolumeName       = "eks-pod-identity-token"
	DefaultMountPath        = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
	DefaultTokenPath        = "eks-pod-identity-token"
	DefaultExpirationSecs   = 86400

	IRSAVolumeName = "aws-token"
	IRSAMountPath  = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
	IRSATokenPath  = "token"
	IRSAAudience   = "sts.amazonaws.com"

	// AnnotationSkipContainers names containers (comma separated) that get
	// nothing injected.
	AnnotationSkipContainers = "eks.amazonaws.com/skip-containers"
	// LabelPodIdentity marks a pod the webhook gave Pod Identity, as EKS's
	// webhook does.
	LabelPodIdentity = "eks.amazonaws.com/pod-identity"
	// LabelInject set to "false" on a pod or a namespace opts it out: the
	// webhook configuration does not send it to podid at all.
	LabelInject = "podid.io/inject"

	// IRSA's ServiceAccount annotations.
	AnnotationRoleARN         = "eks.amazonaws.com/role-arn"
	AnnotationAudience        = "eks.amazonaws.com/audience"
	AnnotationRegionalSTS     = "eks.amazonaws.com/sts-regional-endpoints"
	AnnotationTokenExpiration = "eks.amazonaws.com/token-expiration"
)

// Config is what the webhook injects; zero fields take EKS's defaults.
type Config struct {
	// CredentialsURI is the agent's endpoint the SDKs call.
	CredentialsURI string
	// Audience and ExpirationSeconds of the projected token.
	Audience          string
	ExpirationSeconds int64
	VolumeName        string
	MountPath         string
	TokenPath         string
	// Region, when set, is injected as AWS_REGION and AWS_DEFAULT_REGION
	// into containers that set neither.
	Region string
	// IRSA turns on the IRSA mode for ServiceAccounts with the role-arn
	// annotation and no association.
	IRSA bool
}

func (c Config) withDefaults() Config {
	if c.CredentialsURI == "" {
		c.CredentialsURI = DefaultCredentialsURI
	}
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	if c.ExpirationSeconds == 0 {
		c.ExpirationSeconds = DefaultExpirationSecs
	}
	if c.VolumeName == "" {
		c.VolumeName = DefaultVolumeName
	}
	if c.MountPath == "" {
		c.MountPath = DefaultMountPath
	}
	if c.TokenPath == "" {
		c.TokenPath = DefaultTokenPath
	}
	return c
}

// Validate reports settings the API server would refuse in a pod.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.ExpirationSeconds < 600 {
		return fmt.Errorf("token expiration %ds is under the API server's minimum of 600s", c.ExpirationSeconds)
	}
	if !strings.HasPrefix(c.MountPath, "/") {
		return fmt.Errorf("token mount path %q is not absolute", c.MountPath)
	}
	if !strings.HasPrefix(c.CredentialsURI, "http://") && !strings.HasPrefix(c.CredentialsURI, "https://") {
		return fmt.Errorf("credentials URI %q is not an http(s) URL", c.CredentialsURI)
	}
	return nil
}

// projection is a projected ServiceAccount token to mount in containers and
// the variables that point the SDKs at it.
type projection struct {
	volume    corev1.Volume
	mount     corev1.VolumeMount
	env       []corev1.EnvVar
	region    string
	proxyHost []string // addresses a proxy must not be used for
}

func podIdentityProjection(c Config) projection {
	c = c.withDefaults()
	return projection{
		volume: tokenVolume(c.VolumeName, c.Audience, c.ExpirationSeconds, c.TokenPath),
		mount:  corev1.VolumeMount{Name: c.VolumeName, MountPath: c.MountPath, ReadOnly: true},
		env: []corev1.EnvVar{
			{Name: EnvCredentialsURI, Value: c.CredentialsURI},
			{Name: EnvTokenFile, Value: c.MountPath + "/" + c.TokenPath},
		},
		region:    c.Region,
		proxyHost: []string{"169.254.170.23", "fd00:ec2::23"},
	}
}

// irsaProjection is IRSA's injection for a ServiceAccount's annotations, or
// an error naming the annotation that is wrong.
func irsaProjection(c Config, annotations map[string]string) (projection, error) {
	role := annotations[AnnotationRoleARN]
	audience := IRSAAudience
	if a := annotations[AnnotationAudience]; a != "" {
		audience = a
	}
	expiration := int64(DefaultExpirationSecs)
	if v := annotations[AnnotationTokenExpiration]; v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 3600 || n > DefaultExpirationSecs {
			return projection{}, fmt.Errorf("annotation %s=%q is not a number of seconds from 3600 to 86400", AnnotationTokenExpiration, v)
		}
		expiration = n
	}
	p := projection{
		volume: tokenVolume(IRSAVolumeName, audience, expiration, IRSATokenPath),
		mount:  corev1.VolumeMount{Name: IRSAVolumeName, MountPath: IRSAMountPath, ReadOnly: true},
		env: []corev1.EnvVar{
			{Name: EnvRoleARN, Value: role},
			{Name: EnvWebIdentity, Value: IRSAMountPath + "/" + IRSATokenPath},
		},
		region: c.Region,
	}
	if annotations[AnnotationRegionalSTS] == "true" {
		p.env = append(p.env, corev1.EnvVar{Name: EnvSTSRegional, Value: "regional"})
	}
	return p, nil
}

func tokenVolume(name, audience string, expiration int64, path string) corev1.Volume {
	mode := int32(0o644) // 420, as EKS sets it
	return corev1.Volume{
		Name: name,
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			DefaultMode: &mode,
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: audience, ExpirationSeconds: &expiration, Path: path,
			}}},
		}},
	}
}

// apply injects p into pod: the volume once, and into every container and
// init container not named in the skip annotation, the mount (unless one is
// already at that name or path) and the variables (unless the container sets
// any of them itself). Applying it twice changes nothing, so reinvocation is
// safe.
func (p projection) apply(pod *corev1.Pod) {
	skip := map[string]bool{}
	for _, name := range strings.Split(pod.Annotations[AnnotationSkipContainers], ",") {
		if name = strings.TrimSpace(name); name != "" {
			skip[name] = true
		}
	}
	injected := false
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if skip[list[i].Name] {
				continue
			}
			p.applyToContainer(&list[i])
			injected = true
		}
	}
	if !injected || hasVolume(pod, p.volume.Name) {
		return
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, p.volume)
}

func (p projection) applyToContainer(c *corev1.Container) {
	mounted := false
	for _, m := range c.VolumeMounts {
		if m.Name == p.mount.Name || m.MountPath == p.mount.MountPath {
			mounted = true
		}
	}
	if !mounted {
		c.VolumeMounts = append(c.VolumeMounts, p.mount)
	}
	setsAny := false
	for _, e := range p.env {
		if hasEnv(c, e.Name) {
			setsAny = true
		}
	}
	if !setsAny {
		c.Env = append(c.Env, p.env...)
	}
	if p.region != "" && !hasEnv(c, "AWS_REGION") && !hasEnv(c, "AWS_DEFAULT_REGION") {
		c.Env = append(c.Env, corev1.EnvVar{Name: "AWS_REGION", Value: p.region}, corev1.EnvVar{Name: "AWS_DEFAULT_REGION", Value: p.region})
	}
	p.bypassProxy(c)
}

// bypassProxy keeps a container's HTTP proxy away from the agent: the SDKs
// honour HTTP_PROXY for the credential endpoint too, and a proxy cannot
// reach a node's link-local address. A literal NO_PROXY gets the addresses
// appended; one set from a ConfigMap or Secret is left as it is.
func (p projection) bypassProxy(c *corev1.Container) {
	if len(p.proxyHost) == 0 || !(hasEnv(c, "HTTP_PROXY") || hasEnv(c, "http_proxy") || hasEnv(c, "HTTPS_PROXY") || hasEnv(c, "https_proxy")) {
		return
	}
	found := false
	for _, name := range []string{"NO_PROXY", "no_proxy"} {
		for i := range c.Env {
			e := &c.Env[i]
			if e.Name != name {
				continue
			}
			found = true
			if e.ValueFrom != nil {
				continue
			}
			e.Value = appendHosts(e.Value, p.proxyHost)
		}
	}
	if !found {
		c.Env = append(c.Env, corev1.EnvVar{Name: "NO_PROXY", Value: strings.Join(p.proxyHost, ",")})
	}
}

func appendHosts(list string, hosts []string) string {
	have := map[string]bool{}
	for _, h := range strings.Split(list, ",") {
		have[strings.TrimSpace(h)] = true
	}
	for _, h := range hosts {
		if !have[h] {
			if strings.TrimSpace(list) == "" {
				list = h
			} else {
				list += "," + h
			}
		}
	}
	return list
}

func hasEnv(c *corev1.Container, name string) bool {
	for _, e := range c.Env {
		if e.Name == name {
			return true
		}
	}
	return false
}

func hasVolume(pod *corev1.Pod, name string) bool {
	for _, v := range pod.Spec.Volumes {
		if v.Name == name {
			return true
		}
	}
	return false
}
