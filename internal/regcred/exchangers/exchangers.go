// Package exchangers is the one place registry kinds are registered, as
// external-secrets registers its generators: each kind's name (a
// SecretRotator's provider), how a registry host is recognised as one (the
// kubelet credential provider's choice), and how its Exchanger is built. The
// SecretRotator picks a kind by name and the credential provider by host;
// adding a registry is adding a Kind here and a package beside regcred/ecr.
package exchangers

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/podid/podid/internal/regcred"
	"github.com/podid/podid/internal/regcred/ecr"
	"github.com/podid/podid/internal/regcred/jfrog"
)

// Names of the kinds.
const (
	ECR   = "ecr"
	JFrog = "jfrog"
)

// Spec is what an exchanger is built from, whichever caller: a SecretRotator
// fills it from its spec, the credential provider from the image's host.
type Spec struct {
	// AWS is the SDK configuration, with the region of STS and the
	// registry's API.
	AWS aws.Config
	// Timeout bounds every registry and AWS call; zero means 30 s.
	Timeout time.Duration
	// HTTPClient reaches the registry (nil: http.DefaultClient).
	HTTPClient *http.Client
	// URL is the registry's address or host (Artifactory).
	URL string
	// Subdomains are Artifactory's Docker subdomains, each given the same
	// login.
	Subdomains []string
	// Region and RegistryIDs choose ECR's registries.
	Region string
	// STSRegion, for JFrog, signs for that region's STS instead of the
	// global one.
	STSRegion   string
	RegistryIDs []string
	// Identify asks who the registry saw (ECR: sts:GetCallerIdentity), for
	// status.
	Identify bool
}

// Kind is a registry kind.
type Kind struct {
	Name string
	// RecognizeHost reports whether a registry host is of this kind by its
	// name alone, filling what the name says into spec (an ECR host names
	// its account and region); nil when only configuration can say
	// (Artifactory's hosts are the cluster's own).
	RecognizeHost func(host string, spec *Spec) bool
	New           func(Spec) regcred.Exchanger
}

var kinds = []Kind{
	{
		Name: ECR,
		RecognizeHost: func(host string, spec *Spec) bool {
			account, region, ok := ecr.ParseHost(host)
			if ok {
				spec.Region, spec.RegistryIDs = region, []string{account}
				spec.AWS = spec.AWS.Copy()
				spec.AWS.Region = region
			}
			return ok
		},
		New: func(s Spec) regcred.Exchanger {
			return &ecr.Exchanger{AWS: s.AWS, Region: s.Region, RegistryIDs: s.RegistryIDs, Timeout: s.Timeout, Identify: s.Identify}
		},
	},
	{
		Name: JFrog,
		New: func(s Spec) regcred.Exchanger {
			return &jfrog.Exchanger{URL: s.URL, Subdomains: s.Subdomains, Region: s.STSRegion, HTTPClient: s.HTTPClient, AWS: s.AWS, Timeout: s.Timeout}
		},
	},
}

// Names lists the registered kinds.
func Names() []string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.Name
	}
	return names
}

// Named builds the exchanger of the kind called name.
func Named(name string, spec Spec) (regcred.Exchanger, error) {
	for _, k := range kinds {
		if k.Name == name {
			return k.New(spec), nil
		}
	}
	return nil, fmt.Errorf("registry provider %q is not one of %v", name, Names())
}

// ForHost builds the exchanger for a registry host: a kind that recognises
// the host by its name, or Artifactory for a host the caller is configured
// with (jfrogHosts).
func ForHost(host string, jfrogHosts []string, spec Spec) (regcred.Exchanger, error) {
	for _, k := range kinds {
		if k.RecognizeHost != nil && k.RecognizeHost(host, &spec) {
			return k.New(spec), nil
		}
	}
	if slices.Contains(jfrogHosts, host) {
		spec.URL = host
		return Named(JFrog, spec)
	}
	return nil, fmt.Errorf("registry %s is neither an ECR registry nor one of the Artifactory hosts this plugin is configured with (--jfrog-host); check matchImages", host)
}
