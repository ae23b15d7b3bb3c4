// Package regcred turns an AWS identity into container registry
// credentials. Each registry's exchange is a plug-in behind one small
// interface, Exchanger (regcred/ecr: ECR's GetAuthorizationToken;
// regcred/jfrog: Artifactory's passwordless token exchange), so the
// SecretRotator and the kubelet credential provider share them.
package regcred

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Auth is a login for one registry host.
type Auth struct {
	// Host is the registry host (and port), the docker config's key.
	Host     string
	Username string
	Password string
}

// Credentials are what one exchange yields: logins for one or more hosts,
// all valid until ExpiresAt.
type Credentials struct {
	Auths     []Auth
	ExpiresAt time.Time
	// Identity is the AWS principal the registry saw (an ARN), for status
	// and logs.
	Identity string
	// Notes are what the user should know of how this token was made (a
	// default taken because a call was refused), each saying what to do;
	// for status, events and logs.
	Notes []string
}

// Exchanger exchanges AWS credentials for registry credentials. It makes
// one exchange per call; callers cache.
type Exchanger interface {
	// Provider names the registry kind ("ecr", "jfrog").
	Provider() string
	Exchange(ctx context.Context, creds aws.CredentialsProvider) (*Credentials, error)
}

// DockerConfigJSON renders the logins as a kubernetes.io/dockerconfigjson
// secret's .dockerconfigjson: {"auths":{"<host>":{"auth":"base64(user:password)"}}}.
func (c *Credentials) DockerConfigJSON() []byte {
	type entry struct {
		Auth string `json:"auth"`
	}
	auths := make(map[string]entry, len(c.Auths))
	for _, a := range c.Auths {
		auths[a.Host] = entry{Auth: base64.StdEncoding.EncodeToString([]byte(a.Username + ":" + a.Password))}
	}
	out, _ := json.Marshal(struct {
		Auths map[string]entry `json:"auths"`
	}{auths}) // a map of strings always marshals
	return out
}

// CredentialsError is a failure to obtain the AWS credentials an exchange
// starts from (no Pod Identity, a role that refuses), as opposed to the
// registry refusing them.
type CredentialsError struct{ Err error }

func (e *CredentialsError) Error() string { return "getting AWS credentials: " + e.Err.Error() }
func (e *CredentialsError) Unwrap() error { return e.Err }

// Retrieve gets credentials from p, wrapping a failure in *CredentialsError.
func Retrieve(ctx context.Context, p aws.CredentialsProvider) (aws.Credentials, error) {
	c, err := p.Retrieve(ctx)
	if err != nil {
		return aws.Credentials{}, &CredentialsError{Err: err}
	}
	return c, nil
}
