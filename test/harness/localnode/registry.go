package localnode

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// MirrorRegistry makes containerd pull images named registry/… from
// endpoint instead (e.g. the emulated ECR registry
// 111122223333.dkr.ecr.us-east-1.amazonaws.com served at
// http://10.88.0.1:5000), as a mirror in containerd's hosts directory, which
// it reads on every pull. The kubelet still matches pull secrets and
// credential providers against the image's own registry name, as on a real
// node.
func (n *Node) MirrorRegistry(registry, endpoint string) error {
	dir := filepath.Join(n.Dir, "certs.d", registry)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	hosts := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", endpoint, endpoint)
	return os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644)
}

// TrustRegistry makes containerd pull images of registry (host:port,
// served over TLS) trusting the certificates caFile holds.
func (n *Node) TrustRegistry(registry, caFile string) error {
	dir := filepath.Join(n.Dir, "certs.d", registry)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	server := "https://" + registry
	hosts := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = %q\n", server, server, caFile)
	return os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644)
}

// CAFile is the node's CA certificate, which signs ServingCertificate's.
func (n *Node) CAFile() string { return n.pki.path("ca.crt") }

// ServingCertificate issues name.crt and name.key, a serving certificate
// for the node's address from the node's CA, for a test server on the
// node's bridge (a registry over TLS).
func (n *Node) ServingCertificate(name string) (certFile, keyFile string, err error) {
	if err := n.pki.issue(certSpec{name: name, cn: name, server: true, ips: ips(nodeIP)}); err != nil {
		return "", "", err
	}
	return n.pki.path(name + ".crt"), n.pki.path(name + ".key"), nil
}

// Image returns an image the node was started with, as built (to push it
// into a registry).
func (n *Node) Image(ref string) (v1.Image, error) {
	for i, img := range n.images {
		if img.Ref != ref {
			continue
		}
		tag, err := name.NewTag(ref)
		if err != nil {
			return nil, err
		}
		return tarball.ImageFromPath(filepath.Join(n.Dir, "images", fmt.Sprintf("%d.tar", i)), &tag)
	}
	return nil, fmt.Errorf("the node was not started with image %s", ref)
}
