//go:build tools

// Package tools records the commands this module builds (containerd, its runc
// shim and ctr for importing images), so that `go mod tidy` keeps their
// dependencies.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
