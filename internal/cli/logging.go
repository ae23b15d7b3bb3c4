package cli

import (
	"io"
	"log/slog"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/podid/podid/internal/logging"
)

// setupLogging builds the process's logger and hands the same handler to
// controller-runtime and client-go, so that one process writes one format.
func setupLogging(w io.Writer, opts logging.Options) (*slog.Logger, error) {
	logger, err := logging.New(w, opts)
	if err != nil {
		return nil, err
	}
	lr := logr.FromSlogHandler(logger.Handler())
	ctrl.SetLogger(lr)
	klog.SetLogger(lr)
	return logger, nil
}
