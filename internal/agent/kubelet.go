package agent

import (
	"errors"
	"io/fs"
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
	// Unreadable, when set, is told of a token file the agent may not read.
	// The kubelet writes a pod's token owned by its runAsUser with mode
	// 0600 (fsGroup pods), which root without CAP_DAC_READ_SEARCH cannot
	// read: the cache then keeps a copy of the pod's last token, which may
	// have expired by the time a background renewal needs it.
	Unreadable func(path string, err error)
}

// Path is where the kubelet writes the token of the pod with uid, or ""
// for a UID that could walk out of the directory.
func (k KubeletTokens) Path(uid string) string {
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
	// A UID is a Kubernetes-generated name; refuse anything else.
	if uid == "" || strings.ContainsAny(uid, `/\`) || uid == "." || uid == ".." {
		return ""
	}
	return filepath.Join(dir, uid, "volumes", "kubernetes.io~projected", volume, file)
}

// Token implements TokenSource.
func (k KubeletTokens) Token(pod Pod) (string, bool) {
	path := k.Path(pod.UID)
	if path == "" {
		return "", false
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) && k.Unreadable != nil {
			k.Unreadable(path, err)
		}
		return "", false
	}
	return strings.TrimSpace(string(data)), true
}
