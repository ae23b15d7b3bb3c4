package eksapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/podid/podid/api/v1alpha1"
	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/awsjson"
	"github.com/podid/podid/internal/sigv4"
)

// The EKS error types this API answers with (X-Amzn-ErrorType).
const (
	InvalidParameter      = "InvalidParameterException"
	InvalidRequest        = "InvalidRequestException"
	ResourceInUse         = "ResourceInUseException"
	ResourceNotFound      = "ResourceNotFoundException"
	ResourceLimitExceeded = "ResourceLimitExceededException"
	AccessDenied          = "AccessDeniedException"
	Server                = "ServerException"
	ServiceUnavailable    = "ServiceUnavailableException"
	UnknownOperation      = "UnknownOperationException"
	Throttling            = "ThrottlingException"
	// The tagging operations' codes.
	BadRequest = "BadRequestException"
	NotFound   = "NotFoundException"
)

var statusOf = map[string]int{
	InvalidParameter:      http.StatusBadRequest,
	InvalidRequest:        http.StatusBadRequest,
	ResourceInUse:         http.StatusConflict,
	ResourceNotFound:      http.StatusNotFound,
	ResourceLimitExceeded: http.StatusBadRequest,
	AccessDenied:          http.StatusForbidden,
	Server:                http.StatusInternalServerError,
	ServiceUnavailable:    http.StatusServiceUnavailable,
	UnknownOperation:      http.StatusNotFound,
	Throttling:            http.StatusTooManyRequests,
	BadRequest:            http.StatusBadRequest,
	NotFound:              http.StatusNotFound,
}

// apiError is a refusal on its way to the wire.
type apiError = awsjson.Error

func fail(code, format string, args ...any) *apiError {
	return &apiError{Status: statusOf[code], Code: code, Message: fmt.Sprintf(format, args...)}
}

// wrap is fail for an underlying error the log should see.
func wrap(code, message string, err error) *apiError {
	return &apiError{Status: statusOf[code], Code: code, Message: message, Err: err}
}

// writeError sends err as an EKS error and returns what it sent.
func writeError(w http.ResponseWriter, err error) *apiError {
	var e *apiError
	var verr *sigv4.Error
	switch {
	case errors.As(err, &e):
	case errors.As(err, &verr):
		e = awsjson.FromSigV4(verr, err)
	default:
		e = &apiError{Status: http.StatusInternalServerError, Code: Server, Message: "internal error; the podid server log has the detail", Err: err}
	}
	awsjson.WriteError(w, e)
	return e
}

// Association is EKS's PodIdentityAssociation; timestamps are epoch seconds.
type Association struct {
	ClusterName        string            `json:"clusterName"`
	Namespace          string            `json:"namespace"`
	ServiceAccount     string            `json:"serviceAccount"`
	RoleARN            string            `json:"roleArn"`
	AssociationARN     string            `json:"associationArn"`
	AssociationID      string            `json:"associationId"`
	Tags               map[string]string `json:"tags,omitempty"`
	CreatedAt          float64           `json:"createdAt"`
	ModifiedAt         float64           `json:"modifiedAt"`
	DisableSessionTags bool              `json:"disableSessionTags"`
	TargetRoleARN      string            `json:"targetRoleArn,omitempty"`
	ExternalID         string            `json:"externalId,omitempty"`
	Policy             string            `json:"policy,omitempty"`
}

// Summary is EKS's PodIdentityAssociationSummary.
type Summary struct {
	ClusterName    string `json:"clusterName"`
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
	AssociationARN string `json:"associationArn"`
	AssociationID  string `json:"associationId"`
}

// toWire describes pia with IDs computed from its UID, so an association is
// complete the moment it is created, before the controller writes status.
func toWire(id association.Identity, pia *v1alpha1.PodIdentityAssociation) Association {
	assocID := association.IDFor(pia.UID)
	created := float64(pia.CreationTimestamp.Unix())
	modified := created
	if pia.Status.ModifiedAt != nil {
		modified = float64(pia.Status.ModifiedAt.Unix())
	}
	return Association{
		ClusterName: id.ClusterName, Namespace: pia.Namespace, ServiceAccount: pia.Spec.ServiceAccount,
		RoleARN: pia.Spec.RoleARN, AssociationARN: id.AssociationARN(assocID), AssociationID: assocID,
		Tags: pia.Spec.Tags, CreatedAt: created, ModifiedAt: modified,
		DisableSessionTags: pia.Spec.DisableSessionTags, TargetRoleARN: pia.Spec.TargetRoleARN,
		ExternalID: association.ExternalIDFor(pia.UID), Policy: pia.Spec.Policy,
	}
}

func summaryOf(id association.Identity, pia *v1alpha1.PodIdentityAssociation) Summary {
	assocID := association.IDFor(pia.UID)
	return Summary{ClusterName: id.ClusterName, Namespace: pia.Namespace, ServiceAccount: pia.Spec.ServiceAccount,
		AssociationARN: id.AssociationARN(assocID), AssociationID: assocID}
}

type createRequest struct {
	Namespace          string            `json:"namespace"`
	ServiceAccount     string            `json:"serviceAccount"`
	RoleARN            string            `json:"roleArn"`
	ClientRequestToken string            `json:"clientRequestToken"`
	Tags               map[string]string `json:"tags"`
	DisableSessionTags *bool             `json:"disableSessionTags"`
	TargetRoleARN      *string           `json:"targetRoleArn"`
	Policy             *string           `json:"policy"`
}

type updateRequest struct {
	RoleARN            *string `json:"roleArn"`
	ClientRequestToken string  `json:"clientRequestToken"`
	DisableSessionTags *bool   `json:"disableSessionTags"`
	TargetRoleARN      *string `json:"targetRoleArn"`
	Policy             *string `json:"policy"`
}

// decode reads one JSON object into v, refusing unknown fields so that a
// misspelt parameter is an error rather than silently ignored.
func decode(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typeErr):
			return fail(InvalidParameter, "%s must be a %s", typeErr.Field, typeErr.Type)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return fail(InvalidParameter, "unknown parameter %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return fail(InvalidRequest, "the request body is not valid JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return fail(InvalidRequest, "the request body has data after its JSON object")
	}
	return nil
}
