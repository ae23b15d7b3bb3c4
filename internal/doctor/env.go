package doctor

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// resolvedEnv is one variable of a container as the process sees it, as far
// as doctor can tell: values from ConfigMaps are read, values from Secrets
// only known to be there.
type resolvedEnv struct {
	Name, Value string
	// Source is "a literal value", "ConfigMap x" or "Secret x".
	Source string
}

// resolveEnv reads each container's environment: envFrom first, then env,
// later entries winning, as the kubelet builds it.
func (d *Doctor) resolveEnv(ctx context.Context, pod *corev1.Pod) map[string][]resolvedEnv {
	configMaps := map[string]map[string]string{}
	configMap := func(name string) map[string]string {
		if data, ok := configMaps[name]; ok {
			return data
		}
		var cm corev1.ConfigMap
		if err := d.Kube.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: name}, &cm); err == nil {
			configMaps[name] = cm.Data
		} else {
			configMaps[name] = nil
		}
		return configMaps[name]
	}
	secretKeys := map[string][]string{}
	secret := func(name string) []string {
		if keys, ok := secretKeys[name]; ok {
			return keys
		}
		var s corev1.Secret
		if err := d.Kube.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: name}, &s); err == nil {
			for k := range s.Data {
				secretKeys[name] = append(secretKeys[name], k)
			}
		} else {
			secretKeys[name] = nil
		}
		return secretKeys[name]
	}
	out := map[string][]resolvedEnv{}
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		var env []resolvedEnv
		for _, from := range c.EnvFrom {
			switch {
			case from.ConfigMapRef != nil:
				for k, v := range configMap(from.ConfigMapRef.Name) {
					env = append(env, resolvedEnv{from.Prefix + k, v, "ConfigMap " + from.ConfigMapRef.Name})
				}
			case from.SecretRef != nil:
				for _, k := range secret(from.SecretRef.Name) {
					env = append(env, resolvedEnv{from.Prefix + k, "(secret)", "Secret " + from.SecretRef.Name})
				}
			}
		}
		for _, e := range c.Env {
			r := resolvedEnv{e.Name, e.Value, "a literal value"}
			if f := e.ValueFrom; f != nil {
				switch {
				case f.ConfigMapKeyRef != nil:
					r.Value, r.Source = configMap(f.ConfigMapKeyRef.Name)[f.ConfigMapKeyRef.Key], "ConfigMap "+f.ConfigMapKeyRef.Name
				case f.SecretKeyRef != nil:
					r.Value, r.Source = "(secret)", "Secret "+f.SecretKeyRef.Name
				default:
					r.Value, r.Source = "(from the pod)", "the downward API"
				}
			}
			env = append(env, r)
		}
		out[c.Name] = env
	}
	return out
}

// envValue is the variable's value ("" when unset).
func envValue(env []resolvedEnv, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if env[i].Name == name {
			return env[i].Value
		}
	}
	return ""
}

// envSource says where a set variable comes from ("" when unset).
func envSource(env []resolvedEnv, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if env[i].Name == name && env[i].Value != "" {
			return fmt.Sprintf("%q from %s", env[i].Value, env[i].Source)
		}
	}
	return ""
}

// bypasses reports whether a NO_PROXY list exempts host: "*", the host
// itself, or a CIDR holding it, as Go's and the other SDKs' HTTP clients
// read it.
func bypasses(noProxy, host string) bool {
	ip := net.ParseIP(host)
	for _, entry := range strings.Split(noProxy, ",") {
		entry = strings.TrimSpace(entry)
		switch {
		case entry == "":
		case entry == "*", strings.EqualFold(entry, host), strings.Trim(entry, "[]") == host:
			return true
		case ip != nil && strings.Contains(entry, "/"):
			if _, n, err := net.ParseCIDR(entry); err == nil && n.Contains(ip) {
				return true
			}
		}
	}
	return false
}
