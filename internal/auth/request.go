package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
)

// maxBody bounds a request body: a token is about 1 KiB.
const maxBody = 64 << 10

var clusterNamePattern = regexp.MustCompile(`^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$`)

// request is the AssumeRoleForPodIdentity body. Newer stock agents add the
// node's name, instance and zone.
type request struct {
	Token       string `json:"token"`
	EKSNodeName string `json:"eksNodeName,omitempty"`
	InstanceID  string `json:"instanceId,omitempty"`
	Zone        string `json:"zone,omitempty"`
}

// decodeRequest parses and checks a body.
func decodeRequest(body []byte) (*request, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var r request
	if err := dec.Decode(&r); err != nil {
		return nil, fail(InvalidRequest, fmt.Sprintf("the request body is not a JSON object of the AssumeRoleForPodIdentity shape: %s", jsonProblem(err)), err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fail(InvalidRequest, "the request body has data after its JSON object", nil)
	}
	if r.Token == "" {
		return nil, fail(InvalidParameter, "token is required: send the pod's projected ServiceAccount token", nil)
	}
	return &r, nil
}

// jsonProblem names what is wrong without echoing the body back.
func jsonProblem(err error) string {
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr):
		return fmt.Sprintf("field %q must be a %s", typeErr.Field, typeErr.Type)
	case errors.Is(err, io.EOF):
		return "the body is empty"
	}
	return "malformed JSON"
}

// checkClusterName validates the path's cluster name.
func checkClusterName(name, ours string) error {
	if !clusterNamePattern.MatchString(name) {
		return fail(InvalidParameter, "clusterName must be 1-100 characters: a letter or digit, then letters, digits, '-' or '_'", nil)
	}
	if name != ours {
		return fail(ResourceNotFound, fmt.Sprintf("No cluster found for name: %s.", name), nil)
	}
	return nil
}
