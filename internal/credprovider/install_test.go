package credprovider_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podid/podid/internal/credprovider"
)

func TestInstall(t *testing.T) {
	dir := t.TempDir()
	binary := filepath.Join(dir, "plugin")
	if err := os.WriteFile(binary, []byte("#!/bin/true\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	in := credprovider.Install{Binary: binary, BinDir: filepath.Join(dir, "node/bin"), Config: "testdata/config.yaml", ConfigDir: filepath.Join(dir, "node/config.d")}
	res, err := in.Run()
	if err != nil {
		t.Fatal(err)
	}
	if !res.BinaryChanged || !res.ConfigChanged {
		t.Errorf("first install changed nothing: %+v", res)
	}
	fi, err := os.Stat(filepath.Join(dir, "node/bin/podid-credential-provider"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("the plugin is not installed executable: %v %v", fi, err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "node/config.d/podid-credential-provider.yaml")); !strings.Contains(string(data), "pods.eks.amazonaws.com") {
		t.Errorf("the configuration is not installed: %q", data)
	}

	// Again: nothing to do, and no temporary file left behind.
	if res, err = in.Run(); err != nil || res.BinaryChanged || res.ConfigChanged {
		t.Errorf("second install: %+v, %v", res, err)
	}
	for _, d := range []string{"node/bin", "node/config.d"} {
		entries, _ := os.ReadDir(filepath.Join(dir, d))
		if len(entries) != 1 {
			t.Errorf("%s holds %d files, want 1", d, len(entries))
		}
	}

	// A new plugin replaces the old one.
	os.WriteFile(binary, []byte("#!/bin/false\n"), 0o700)
	if res, err = in.Run(); err != nil || !res.BinaryChanged || res.ConfigChanged {
		t.Errorf("install of a new binary: %+v, %v", res, err)
	}

	// A configuration the kubelet would refuse (and stop on) is not
	// installed, and what is there stays.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: [{name: podid-credential-provider}]\n"), 0o600)
	os.WriteFile(binary, []byte("#!/bin/echo\n"), 0o700)
	in.Config = bad
	if _, err := in.Run(); err == nil || !strings.Contains(err.Error(), "nothing was installed") {
		t.Fatalf("err = %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "node/bin/podid-credential-provider")); string(data) != "#!/bin/false\n" {
		t.Errorf("a refused install changed the plugin: %q", data)
	}
}

func TestValidateConfig(t *testing.T) {
	good, err := os.ReadFile("testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := credprovider.ValidateConfig(good); err != nil {
		t.Fatalf("testdata/config.yaml: %v", err)
	}
	edit := func(old, new string) string { return strings.Replace(string(good), old, new, 1) }
	for name, c := range map[string]struct{ config, want string }{
		"unknown field":     {edit("matchImages", "matchImage"), `unknown field "matchImage"`},
		"wrong kind":        {edit("kind: CredentialProviderConfig", "kind: KubeletConfiguration"), "want kubelet.config.k8s.io/v1 CredentialProviderConfig"},
		"no match":          {edit(`matchImages: ["*.dkr.ecr.*.amazonaws.com"]`, "matchImages: []"), "matchImages is empty"},
		"no cache duration": {edit("defaultCacheDuration: 10m", ""), "defaultCacheDuration must be set"},
		"old protocol":      {edit("apiVersion: credentialprovider.kubelet.k8s.io/v1", "apiVersion: credentialprovider.kubelet.k8s.io/v1beta1"), "this plugin speaks credentialprovider.kubelet.k8s.io/v1"},
		"no token":          {strings.Split(string(good), "    tokenAttributes:")[0], "serviceAccountTokenAudience is required"},
		"no requireSA":      {edit("      requireServiceAccount: true\n", ""), "requireServiceAccount is required"},
		"bad cache type":    {edit("cacheType: ServiceAccount", "cacheType: Pod"), `cacheType "Pod" must be ServiceAccount or Token`},
		"not ours":          {edit("name: podid-credential-provider", "name: ecr-credential-provider"), "no provider named podid-credential-provider"},
		"path as name":      {edit("name: podid-credential-provider", "name: ../podid-credential-provider"), "must be a file name"},
		"not YAML":          {"{", "not a valid CredentialProviderConfig"},
	} {
		t.Run(name, func(t *testing.T) {
			err := credprovider.ValidateConfig([]byte(c.config))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want %q", err, c.want)
			}
		})
	}
}
