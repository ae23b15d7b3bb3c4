// Package logging sets up podid's structured logs with log/slog, and fixes
// the keys every component logs its values under. It links nothing from
// Kubernetes: the CLI bridges controller-runtime's logr and client-go's klog
// into the same handler, and podid agent stays slim.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
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

// New builds the logger and makes it slog's default.
func New(w io.Writer, opts Options) (*slog.Logger, error) {
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
	return logger, nil
}
