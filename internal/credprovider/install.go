package credprovider

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	kubeletconfigv1 "k8s.io/kubelet/config/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
	"sigs.k8s.io/yaml"
)

// PluginName is the plugin's binary name in the kubelet's
// --image-credential-provider-bin-dir, and its provider name in the
// CredentialProviderConfig.
const PluginName = "podid-credential-provider"

// Install is what the chart's init container does on every node: put the
// plugin binary into the kubelet's plugin directory and the
// CredentialProviderConfig into its configuration directory.
type Install struct {
	// Binary is the plugin to install (the running executable).
	Binary string
	// BinDir is the kubelet's --image-credential-provider-bin-dir.
	BinDir string
	// Config is the CredentialProviderConfig to install (the chart's
	// ConfigMap); ConfigDir the directory the kubelet's
	// --image-credential-provider-config names.
	Config, ConfigDir string
}

// InstallResult says what changed on the node.
type InstallResult struct {
	BinaryChanged, ConfigChanged bool
	BinaryPath, ConfigPath       string
}

// Run checks the configuration as the kubelet will, then writes what
// differs, each file whole or not at all: the kubelet may exec the plugin
// at any moment, and reads its configuration when it starts, where an
// invalid one stops it.
func (in Install) Run() (InstallResult, error) {
	res := InstallResult{
		BinaryPath: filepath.Join(in.BinDir, PluginName),
		ConfigPath: filepath.Join(in.ConfigDir, PluginName+".yaml"),
	}
	config, err := os.ReadFile(in.Config)
	if err != nil {
		return res, fmt.Errorf("reading the CredentialProviderConfig: %w", err)
	}
	if err := ValidateConfig(config); err != nil {
		return res, fmt.Errorf("%s: %w; nothing was installed", in.Config, err)
	}
	binary, err := os.ReadFile(in.Binary)
	if err != nil {
		return res, fmt.Errorf("reading the plugin binary: %w", err)
	}
	if res.BinaryChanged, err = replace(res.BinaryPath, binary, 0o755); err != nil {
		return res, err
	}
	if res.ConfigChanged, err = replace(res.ConfigPath, config, 0o644); err != nil {
		return res, err
	}
	return res, nil
}

// replace writes data to path unless it already holds it, through a
// temporary file renamed over it.
func replace(path string, data []byte, mode os.FileMode) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm() == mode {
			return false, nil
		}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("creating %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return false, fmt.Errorf("writing into %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	if _, err := io.Copy(tmp, bytes.NewReader(data)); err != nil {
		tmp.Close()
		return false, fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("installing %s: %w", path, err)
	}
	return true, nil
}

// ValidateConfig checks a CredentialProviderConfig for what the kubelet
// refuses at start (which stops it) and for what this plugin needs: its
// provider entry, speaking v1, with a ServiceAccount token.
func ValidateConfig(data []byte) error {
	var cfg kubeletconfigv1.CredentialProviderConfig
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return fmt.Errorf("not a valid CredentialProviderConfig: %w", err)
	}
	if cfg.APIVersion != kubeletconfigv1.SchemeGroupVersion.String() || cfg.Kind != "CredentialProviderConfig" {
		return fmt.Errorf("apiVersion %q kind %q: want %s CredentialProviderConfig", cfg.APIVersion, cfg.Kind, kubeletconfigv1.SchemeGroupVersion)
	}
	var errs []error
	names := map[string]bool{}
	ours := 0
	for i, p := range cfg.Providers {
		at := fmt.Sprintf("providers[%d]", i)
		if names[p.Name] {
			errs = append(errs, fmt.Errorf("%s: name %q is repeated", at, p.Name))
		}
		names[p.Name] = true
		if p.Name == "" || strings.ContainsAny(p.Name, `/\`) || p.Name == "." || p.Name == ".." {
			errs = append(errs, fmt.Errorf("%s: name %q must be a file name in the plugin directory", at, p.Name))
		}
		if len(p.MatchImages) == 0 {
			errs = append(errs, fmt.Errorf("%s: matchImages is empty", at))
		}
		if p.DefaultCacheDuration == nil || p.DefaultCacheDuration.Duration < 0 {
			errs = append(errs, fmt.Errorf("%s: defaultCacheDuration must be set and not negative", at))
		}
		if p.APIVersion == "" {
			errs = append(errs, fmt.Errorf("%s: apiVersion is required", at))
		}
		if p.Name != PluginName {
			continue
		}
		ours++
		if p.APIVersion != credentialproviderv1.SchemeGroupVersion.String() {
			errs = append(errs, fmt.Errorf("%s: apiVersion %q: this plugin speaks %s", at, p.APIVersion, credentialproviderv1.SchemeGroupVersion))
		}
		ta := p.TokenAttributes
		switch {
		case ta == nil || ta.ServiceAccountTokenAudience == "":
			errs = append(errs, fmt.Errorf("%s: tokenAttributes.serviceAccountTokenAudience is required: the plugin gets the pod's role with the pod's token", at))
		case ta.RequireServiceAccount == nil:
			errs = append(errs, fmt.Errorf("%s: tokenAttributes.requireServiceAccount is required", at))
		case !slices.Contains([]kubeletconfigv1.ServiceAccountTokenCacheType{kubeletconfigv1.ServiceAccountServiceAccountTokenCacheType, kubeletconfigv1.TokenServiceAccountTokenCacheType}, ta.CacheType):
			errs = append(errs, fmt.Errorf("%s: tokenAttributes.cacheType %q must be ServiceAccount or Token", at, ta.CacheType))
		}
	}
	if ours == 0 {
		errs = append(errs, fmt.Errorf("no provider named %s", PluginName))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}
