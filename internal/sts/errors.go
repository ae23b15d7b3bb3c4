package sts

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
)

// Kind groups STS failures by what the caller and the operator can do.
type Kind string

const (
	// AccessDenied: the role's trust policy does not let podid assume it.
	AccessDenied Kind = "AccessDenied"
	// Throttled: STS (or the SDK's retry quota) says slow down.
	Throttled Kind = "Throttled"
	// Invalid: the association asks for something STS refuses (duration,
	// policy, tags); an administrator must change it or the server's flags.
	Invalid Kind = "Invalid"
	// Unavailable: STS failed or could not be reached; retrying may help.
	Unavailable Kind = "Unavailable"
	// Internal: podid's own AWS identity is missing or refused.
	Internal Kind = "Internal"
)

// Error is a classified STS failure. Message is safe for the client (it names
// roles, never credentials); Err carries the detail for the log.
type Error struct {
	Kind    Kind
	Code    string // the STS error code, when there was one
	Message string
	Err     error
}

func (e *Error) Error() string { return e.Message + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// classify turns an AssumeRole failure into an *Error. Cancellation passes
// through unchanged.
func classify(err error, role string) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	e := &Error{Err: err}
	var apiErr smithy.APIError
	var quota ratelimit.QuotaExceededError
	var respErr *awshttp.ResponseError
	switch {
	case errors.As(err, &apiErr):
		e.Code = apiErr.ErrorCode()
		switch e.Code {
		case "AccessDenied", "AccessDeniedException":
			e.Kind = AccessDenied
			e.Message = fmt.Sprintf("STS denied sts:AssumeRole on %s: its trust policy must allow podid server's AWS identity sts:AssumeRole and sts:TagSession", role)
		case "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException":
			e.Kind = Throttled
			e.Message = "STS is throttling podid's AssumeRole calls; retry later"
		case "ValidationError", "MalformedPolicyDocument", "PackedPolicyTooLarge", "InvalidParameterValue":
			e.Kind = Invalid
			e.Message = fmt.Sprintf("STS refused AssumeRole on %s (%s: %s)%s", role, e.Code, apiErr.ErrorMessage(), remedy(e.Code))
		case "RegionDisabledException":
			e.Kind = Invalid
			e.Message = "STS is not activated in podid server's region; activate it in IAM or point --sts-region elsewhere"
		case "ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException", "IncompleteSignature":
			e.Kind = Internal
			e.Message = fmt.Sprintf("STS refused podid server's own AWS credentials (%s); check the server's credential source", e.Code)
		default:
			if errors.As(err, &respErr) && respErr.HTTPStatusCode() >= 500 {
				e.Kind = Unavailable
				e.Message = fmt.Sprintf("STS failed (%s); retry later", e.Code)
			} else {
				e.Kind = Internal
				e.Message = fmt.Sprintf("STS refused AssumeRole on %s with %s", role, e.Code)
			}
		}
	case errors.As(err, &quota):
		e.Kind = Throttled
		e.Message = "podid's STS retry quota is exhausted after repeated failures; retry later"
	case isCredentialsError(err):
		e.Kind = Internal
		e.Message = "podid server has no usable AWS credentials; configure its credential source (environment, web identity, instance profile)"
		e.Err = fmt.Errorf("%w: %w", ErrNoCredentials, err)
	default:
		e.Kind = Unavailable
		e.Message = "STS could not be reached; retry later"
	}
	return e
}

func remedy(code string) string {
	switch code {
	case "PackedPolicyTooLarge":
		return "; set disableSessionTags on the association or shorten its policy"
	case "ValidationError":
		return "; if it is about DurationSeconds, lower --session-duration or raise the role's MaxSessionDuration"
	}
	return ""
}

// isCredentialsError reports whether the SDK failed before sending because
// its credential chain found nothing; the SDK has no exported type for it.
func isCredentialsError(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "failed to retrieve credentials") || strings.Contains(msg, "failed to refresh cached credentials")
}
