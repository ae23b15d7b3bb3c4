// Package kube holds what every podid command needs to reach the Kubernetes
// API: the scheme with podid's types, and kubectl-style connection flags
// (--kubeconfig, --context, --namespace, …) resolved the way kubectl does.
package kube

import (
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podid/podid/api/v1alpha1"
)

// NewScheme returns a scheme with the built-in Kubernetes types and podid's.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	// Both only fail on conflicting registrations, a programming error.
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// ConnectionFlags are kubectl's connection flags. The zero value is not
// usable; call NewConnectionFlags.
type ConnectionFlags struct {
	rules     *clientcmd.ClientConfigLoadingRules
	overrides *clientcmd.ConfigOverrides
	loader    clientcmd.ClientConfig
}

// NewConnectionFlags returns flags that load the kubeconfig as kubectl does:
// --kubeconfig, then $KUBECONFIG, then ~/.kube/config, then in-cluster.
func NewConnectionFlags() *ConnectionFlags {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	overrides := &clientcmd.ConfigOverrides{}
	return &ConnectionFlags{
		rules:     rules,
		overrides: overrides,
		loader:    clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides),
	}
}

// AddFlags binds --kubeconfig and kubectl's override flags (--context,
// --cluster, --user, --namespace/-n, --server, --token, …) to fs.
func (f *ConnectionFlags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.rules.ExplicitPath, clientcmd.RecommendedConfigPathFlag, "", "path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster)")
	clientcmd.BindOverrideFlags(f.overrides, fs, clientcmd.RecommendedConfigOverrideFlags(""))
}

// RESTConfig returns the client configuration the flags select.
func (f *ConnectionFlags) RESTConfig() (*rest.Config, error) {
	cfg, err := f.loader.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, fmt.Errorf("no Kubernetes cluster configured: pass --kubeconfig, set KUBECONFIG, or run inside a cluster")
		}
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.UserAgent = "podid"
	// kubectl's limits: a migration or an apply of hundreds of objects
	// should not crawl at client-go's 5 requests a second.
	cfg.QPS, cfg.Burst = 50, 300
	return cfg, nil
}

// Namespace returns the namespace the flags select: --namespace, else the
// current context's, else "default". explicit reports whether --namespace was
// given.
func (f *ConnectionFlags) Namespace() (namespace string, explicit bool, err error) {
	if f.overrides.Context.Namespace != "" {
		return f.overrides.Context.Namespace, true, nil
	}
	ns, _, err := f.loader.Namespace()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return "default", false, nil
		}
		return "", false, fmt.Errorf("reading the namespace from kubeconfig: %w", err)
	}
	return ns, false, nil
}
