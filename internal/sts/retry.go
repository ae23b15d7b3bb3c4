package sts

import (
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
)

// Retry policy of podid server's STS calls. A burst of new pods (a CronJob
// of hundreds starting at once) is a burst of AssumeRole calls, and STS
// answers it with throttling: each call is retried up to MaxAttempts times
// with jittered exponential backoff up to MaxBackoff, and without the
// SDK's client-side retry quota, whose exhaustion would fail every
// exchange at once just when the burst needs them retried.
const (
	MaxAttempts = 6
	MaxBackoff  = 20 * time.Second
)

// NewRetryer is the retryer of podid server's STS client; each throttled
// attempt (retried or not) counts in throttled. maxBackoff caps the backoff
// (0: MaxBackoff; tests shorten it).
func NewRetryer(throttled prometheus.Counter, maxBackoff time.Duration) func() aws.Retryer {
	if maxBackoff == 0 {
		maxBackoff = MaxBackoff
	}
	return func() aws.Retryer {
		return &countThrottles{
			RetryerV2: retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = MaxAttempts
				o.MaxBackoff = maxBackoff
				o.RateLimiter = ratelimit.None
			}),
			throttled: throttled,
		}
	}
}

// countThrottles is a retryer that counts the throttling it sees.
type countThrottles struct {
	aws.RetryerV2
	throttled prometheus.Counter
}

func (c *countThrottles) IsErrorRetryable(err error) bool {
	var api smithy.APIError
	if errors.As(err, &api) {
		if _, throttle := retry.DefaultThrottleErrorCodes[api.ErrorCode()]; throttle {
			c.throttled.Inc()
		}
	}
	return c.RetryerV2.IsErrorRetryable(err)
}

// ThrottledCounter is the metric NewRetryer counts in.
func ThrottledCounter() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{
		Name: "podid_sts_throttled_total",
		Help: "STS responses that throttled podid server's calls (each attempt; most are retried with backoff).",
	})
}
