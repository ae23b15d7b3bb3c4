package auth

import (
	"context"
	"errors"
	"net/http"

	"github.com/podid/podid/internal/awsjson"
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
}

// apiError is a refusal on its way to the wire.
type apiError = awsjson.Error

func fail(code, message string, err error) *apiError {
	return &apiError{Status: statusOf[code], Code: code, Message: message, Err: err}
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
		return awsjson.FromSigV4(verr, err)
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
