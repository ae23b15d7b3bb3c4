// Package localcluster runs a real etcd and kube-apiserver on this machine,
// with podid's CRDs installed, for integration tests and the sandbox. It wraps
// controller-runtime's envtest, pointed at the binaries hack/tools.sh builds
// into bin/ from the pinned Kubernetes release.
//
// It runs no kubelet, scheduler or controller-manager: Pods are objects that
// nobody runs, which is what tests of admission and token binding want.
package localcluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/podid/podid/config/crd"
	"github.com/podid/podid/internal/kube"
)

// AssetsEnv names the directory holding kube-apiserver and etcd, as envtest
// spells it.
const AssetsEnv = "KUBEBUILDER_ASSETS"

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	// Config reaches the API server as a cluster administrator.
	Config *rest.Config
	// Client is a client of Config with podid's scheme.
	Client client.Client
	// Kubeconfig is a kubeconfig file's content for Config.
	Kubeconfig []byte

	env *envtest.Environment
}

// Options tune Start.
type Options struct {
	// APIServerArgs are extra kube-apiserver flags, e.g. {"v": "2"}.
	APIServerArgs map[string]string
	// Verbose attaches the control plane's output to this process's.
	Verbose bool
	// CRDPaths, when set, are the CRD manifests to install instead of this
	// tree's (an earlier release's, for the upgrade test).
	CRDPaths []string
}

// Start runs etcd and kube-apiserver and installs podid's CRDs.
func Start(opts Options) (*Cluster, error) {
	assets, err := FindAssets()
	if err != nil {
		return nil, err
	}
	install := envtest.CRDInstallOptions{Paths: opts.CRDPaths}
	if len(opts.CRDPaths) == 0 {
		if install.CRDs, err = crd.CRDs(); err != nil {
			return nil, err
		}
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDInstallOptions:        install,
		ErrorIfCRDPathMissing:    true,
		AttachControlPlaneOutput: opts.Verbose,
	}
	api := env.ControlPlane.GetAPIServer()
	for k, v := range opts.APIServerArgs {
		api.Configure().Set(k, v)
	}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("starting etcd and kube-apiserver from %s: %w", assets, err)
	}
	c, err := client.New(cfg, client.Options{Scheme: kube.NewScheme()})
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("creating a client: %w", err)
	}
	return &Cluster{Config: cfg, Client: c, Kubeconfig: env.KubeConfig, env: env}, nil
}

// User is a client identity of the cluster with only the permissions RBAC
// grants it.
type User struct {
	Config *rest.Config
	// Client is a client of Config with podid's scheme.
	Client     client.Client
	Kubeconfig []byte
}

// AddUser returns a user called name, member of groups.
func (c *Cluster) AddUser(name string, groups ...string) (User, error) {
	u, err := c.env.AddUser(envtest.User{Name: name, Groups: groups}, c.Config)
	if err != nil {
		return User{}, fmt.Errorf("adding user %s: %w", name, err)
	}
	kubeconfig, err := u.KubeConfig()
	if err != nil {
		return User{}, fmt.Errorf("writing a kubeconfig for %s: %w", name, err)
	}
	cl, err := client.New(u.Config(), client.Options{Scheme: kube.NewScheme()})
	if err != nil {
		return User{}, fmt.Errorf("creating a client for %s: %w", name, err)
	}
	return User{Config: u.Config(), Client: cl, Kubeconfig: kubeconfig}, nil
}

// ServiceAccountSigningKeyFile is the PEM private key the API server signs
// ServiceAccount tokens with. Tests use it to forge tokens the cluster would
// have signed but never issues (expired, wrong audience, from the future).
func (c *Cluster) ServiceAccountSigningKeyFile() string {
	return filepath.Join(c.env.ControlPlane.GetAPIServer().CertDir, "sa-signer.key")
}

// Stop stops kube-apiserver and etcd and removes their data.
func (c *Cluster) Stop() error {
	return c.env.Stop()
}

// FindAssets returns the directory holding kube-apiserver and etcd:
// $KUBEBUILDER_ASSETS, else bin/ of the podid checkout around the working
// directory, else the directory of the running executable.
func FindAssets() (string, error) {
	var candidates []string
	if dir := os.Getenv(AssetsEnv); dir != "" {
		candidates = append(candidates, dir)
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				candidates = append(candidates, filepath.Join(dir, "bin"))
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Dir(exe))
	}
	for _, dir := range candidates {
		if isExecutable(filepath.Join(dir, "kube-apiserver")) && isExecutable(filepath.Join(dir, "etcd")) {
			return dir, nil
		}
	}
	return "", errors.New("kube-apiserver and etcd not found: run `make tools` in the podid checkout to build them into bin/ (about 5 minutes the first time), or set " + AssetsEnv + " to a directory that holds them")
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
