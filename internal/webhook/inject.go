package webhook

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podid/podid/internal/podidentity"
)

// LabelInject set to "false" on a pod or a namespace opts it out: the
// webhook configuration does not send it to podid at all. The names EKS
// injects are package podidentity's.
const LabelInject = "podid.io/inject"

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
		c.CredentialsURI = podidentity.CredentialsURI
	}
	if c.Audience == "" {
		c.Audience = podidentity.Audience
	}
	if c.ExpirationSeconds == 0 {
		c.ExpirationSeconds = podidentity.TokenExpirationSeconds
	}
	if c.VolumeName == "" {
		c.VolumeName = podidentity.TokenVolumeName
	}
	if c.MountPath == "" {
		c.MountPath = podidentity.TokenMountPath
	}
	if c.TokenPath == "" {
		c.TokenPath = podidentity.TokenPath
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
			{Name: podidentity.EnvCredentialsFullURI, Value: c.CredentialsURI},
			{Name: podidentity.EnvAuthorizationTokenFile, Value: c.MountPath + "/" + c.TokenPath},
		},
		region:    c.Region,
		proxyHost: []string{podidentity.AgentIPv4, podidentity.AgentIPv6},
	}
}

// irsaProjection is IRSA's injection for a ServiceAccount's annotations, or
// an error naming the annotation that is wrong.
func irsaProjection(c Config, annotations map[string]string) (projection, error) {
	role := annotations[podidentity.AnnotationRoleARN]
	audience := podidentity.IRSAAudience
	if a := annotations[podidentity.AnnotationAudience]; a != "" {
		audience = a
	}
	expiration := int64(podidentity.TokenExpirationSeconds)
	if v := annotations[podidentity.AnnotationTokenExpiration]; v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 3600 || n > podidentity.TokenExpirationSeconds {
			return projection{}, fmt.Errorf("annotation %s=%q is not a number of seconds from 3600 to 86400", podidentity.AnnotationTokenExpiration, v)
		}
		expiration = n
	}
	p := projection{
		volume: tokenVolume(podidentity.IRSAVolumeName, audience, expiration, podidentity.IRSATokenPath),
		mount:  corev1.VolumeMount{Name: podidentity.IRSAVolumeName, MountPath: podidentity.IRSAMountPath, ReadOnly: true},
		env: []corev1.EnvVar{
			{Name: podidentity.EnvRoleARN, Value: role},
			{Name: podidentity.EnvWebIdentityTokenFile, Value: podidentity.IRSAMountPath + "/" + podidentity.IRSATokenPath},
		},
		region: c.Region,
	}
	if annotations[podidentity.AnnotationRegionalSTS] == "true" {
		p.env = append(p.env, corev1.EnvVar{Name: podidentity.EnvSTSRegionalEndpoints, Value: "regional"})
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
	for _, name := range strings.Split(pod.Annotations[podidentity.AnnotationSkipContainers], ",") {
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
