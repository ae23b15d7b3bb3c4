package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/podid/podid/internal/sigv4"
	"github.com/podid/podid/internal/sts"
	"github.com/podid/podid/internal/token"
)

// The EKS Auth error types (X-Amzn-ErrorType), each with its HTTP status.
const (
	AccessDenied       = "AccessDeniedException"
	ExpiredToken       = "ExpiredTokenException"
	InvalidParameter   = "InvalidParameterException"
	InvalidRequest     = "InvalidRequestException"
	InvalidToken       = "InvalidTokenException"
	ResourceNotFound   = "ResourceNotFoundException"
	Throttling         = "ThrottlingException"
	InternalServer     = "InternalServerException"
	ServiceUnavailable = "ServiceUnavailableException"
	UnknownOperation   = "UnknownOperationException"
)

var statusOf = map[string]int{
	AccessDenied:       http.StatusBadRequest,
	ExpiredToken:       http.StatusBadRequest,
	InvalidParameter:   http.StatusBadRequest,
	InvalidRequest:     http.StatusBadRequest,
	InvalidToken:       http.StatusBadRequest,
	ResourceNotFound:   http.StatusNotFound,
	Throttling:         http.StatusTooManyRequests,
	InternalServer:     http.StatusInternalServerError,
	ServiceUnavailable: http.StatusServiceUnavailable,
	UnknownOperation:   http.StatusNotFound,
	// SigV4 failures keep AWS's own codes and 403.
	string(sigv4.MissingAuthentication): http.StatusForbidden,
	string(sigv4.IncompleteSignature):   http.StatusForbidden,
	string(sigv4.UnrecognizedClient):    http.StatusForbidden,
	string(sigv4.InvalidSignature):      http.StatusForbidden,
}

// apiError is a refusal on its way to the wire: Code and Message go to the
// client, Err (never sent) to the log.
type apiError struct {
	Code    string
	Message string
	Err     error
}

func (e *apiError) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *apiError) Unwrap() error { return e.Err }

func fail(code, message string, err error) *apiError {
	return &apiError{Code: code, Message: message, Err: err}
}

// toAPIError is the one place an error of any layer becomes an EKS Auth error.
func toAPIError(err error) *apiError {
	var (
		aerr *apiError
		terr *token.Error
		serr *sts.Error
		verr *sigv4.Error
	)
	switch {
	case errors.As(err, &aerr):
		return aerr
	case errors.As(err, &verr):
		if errors.Is(err, sigv4.ErrBodyTooLarge) {
			return fail(InvalidRequest, verr.Message, err)
		}
		return fail(string(verr.Code), verr.Message, err)
	case errors.As(err, &terr):
		switch terr.Reason {
		case token.Expired:
			return fail(ExpiredToken, terr.Message, err)
		case token.KeysUnavailable:
			return fail(ServiceUnavailable, "the cluster's token signing keys are unavailable; retry later", err)
		}
		return fail(InvalidToken, terr.Message, err)
	case errors.As(err, &serr):
		switch serr.Kind {
		case sts.AccessDenied:
			return fail(AccessDenied, serr.Message, err)
		case sts.Throttled:
			return fail(Throttling, serr.Message, err)
		case sts.Invalid:
			return fail(InvalidRequest, serr.Message, err)
		case sts.Unavailable:
			return fail(ServiceUnavailable, serr.Message, err)
		}
		return fail(InternalServer, serr.Message, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fail(ServiceUnavailable, "the request timed out; retry later", err)
	}
	return fail(InternalServer, "internal error; the podid server log has the detail", err)
}

func writeError(w http.ResponseWriter, e *apiError) {
	status, ok := statusOf[e.Code]
	if !ok {
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", e.Code)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Message string `json:"message"`
	}{e.Message})
}
