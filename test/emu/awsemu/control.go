package awsemu

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// fault is an error the emulator answers with instead of doing the work.
type fault struct {
	action string
	err    apiError
	left   int
}

// InjectFault makes the next times calls of action (AssumeRole,
// GetCallerIdentity, GetAuthorizationToken or any IAM action) fail with the
// AWS error code, for instance
// "Throttling", "ServiceUnavailable" or "InternalFailure", with the status AWS
// would send. The SDK's own retries count as calls.
func (e *Emulator) InjectFault(action, code string, times int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults = append(e.faults, &fault{action: action, err: apiError{Code: code, Message: "fault injected by the emulator: " + code}, left: times})
}

func (e *Emulator) takeFault(action string) *apiError {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, f := range e.faults {
		if f.action == action && f.left > 0 {
			f.left--
			if f.left == 0 {
				e.faults = append(e.faults[:i], e.faults[i+1:]...)
			}
			err := f.err
			return &err
		}
	}
	return nil
}

// Session returns the session that issued accessKeyID.
func (e *Emulator) Session(accessKeyID string) (Session, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.keys[accessKeyID]
	if !ok {
		return Session{}, false
	}
	return *s, true
}

// AssumeRoleCalls returns every AssumeRole so far, in order.
func (e *Emulator) AssumeRoleCalls() []AssumeRoleCall {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]AssumeRoleCall(nil), e.calls...)
}

// Serve answers on l until ctx is cancelled, then shuts down.
func (e *Emulator) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
