// Package logging sets up podid's structured logs: log/slog for podid's own
// code, with controller-runtime's logr and client-go's klog bridged into the
// same handler, so that one process writes one format.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
)

// Fixed keys for the values podid logs, so that a query for one pod or role
// finds every line about it.
const (
	KeyNamespace      = "namespace"
	KeyServiceAccount = "serviceAccount"
	KeyPod            = "pod"
	KeyNode           = "node"
	KeyRole           = "role"
	KeyAssociationID  = "associationId"
)

// Options select the log format and level.
type Options struct {
	Format string // "json" or "text"
	Level  string // "debug", "info", "warn" or "error"
}

// Setup builds the logger, makes it slog's default and hands it to
// controller-runtime and klog.
func Setup(w io.Writer, opts Options) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(opts.Level)); err != nil {
		return nil, fmt.Errorf("log level %q is not one of debug, info, warn, error", opts.Level)
	}
	handlerOpts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch strings.ToLower(opts.Format) {
	case "json":
		h = slog.NewJSONHandler(w, handlerOpts)
	case "text":
		h = slog.NewTextHandler(w, handlerOpts)
	default:
		return nil, fmt.Errorf("log format %q is not one of json, text", opts.Format)
	}
	logger := slog.New(h)
	slog.SetDefault(logger)
	lr := logr.FromSlogHandler(h)
	ctrl.SetLogger(lr)
	klog.SetLogger(lr)
	return logger, nil
}
