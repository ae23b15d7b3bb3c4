// Package awsjson is the error and body format podid's AWS REST-JSON APIs
// (EKS Auth in internal/auth, EKS in internal/eksapi) share with AWS: an
// X-Amzn-ErrorType header naming the error, and {"message": …}. Each API
// keeps its own codes and statuses; this package writes them, and turns a
// SigV4 refusal into the code AWS would send.
package awsjson

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/podid/podid/internal/sigv4"
)

// Error is a refusal on its way to the client: Status, Code and Message are
// sent, Err (never sent) is for the log.
type Error struct {
	Status  int // zero means 500
	Code    string
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// InvalidRequest is the code both APIs give a body over the size limit.
const InvalidRequest = "InvalidRequestException"

// FromSigV4 turns a signature refusal into the error AWS sends: the SigV4
// codes with 403 (429 when throttled), and a body too large for the
// signature check as InvalidRequestException with 400.
func FromSigV4(verr *sigv4.Error, err error) *Error {
	switch {
	case errors.Is(err, sigv4.ErrBodyTooLarge):
		return &Error{Status: http.StatusBadRequest, Code: InvalidRequest, Message: verr.Message, Err: err}
	case verr.Code == sigv4.Throttled:
		return &Error{Status: http.StatusTooManyRequests, Code: string(verr.Code), Message: verr.Message, Err: err}
	}
	return &Error{Status: http.StatusForbidden, Code: string(verr.Code), Message: verr.Message, Err: err}
}

// WriteError sends e.
func WriteError(w http.ResponseWriter, e *Error) {
	status := e.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", e.Code)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Message string `json:"message"`
	}{e.Message})
}

// WriteJSON sends a 200 with v as its body.
func WriteJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
