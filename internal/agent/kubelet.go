package agent

import (
	"os"
	"path/filepath"
	"strings"
)

// KubeletTokens reads pods' projected tokens where the kubelet writes them:
// <Dir>/<pod UID>/volumes/kubernetes.io~projected/<Volume>/<File>. The agent
// mounts the kubelet's pods directory read-only for it.
type KubeletTokens struct {
	Dir    string // default /var/lib/kubelet/pods
	Volume string // the webhook's volume name, default eks-pod-identity-token
	File   string // default eks-pod-identity-token
}

// Token implements TokenSource.
func (k KubeletTokens) Token(pod Pod) (string, bool) {
	dir, volume, file := k.Dir, k.Volume, k.File
	if dir == "" {
		dir = "/var/lib/kubelet/pods"
	}
	if volume == "" {
		volume = "eks-pod-identity-token"
	}
	if file == "" {
		file = "eks-pod-identity-token"
	}
	// A UID is a Kubernetes-generated name; refuse anything that could walk
	// out of the directory.
	if pod.UID == "" || strings.ContainsAny(pod.UID, `/\`) || pod.UID == "." || pod.UID == ".." {
		return "", false
	}
	data, err := os.ReadFile(filepath.Join(dir, pod.UID, "volumes", "kubernetes.io~projected", volume, file))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(data)), true
}
