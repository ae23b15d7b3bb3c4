// Package version says which podid build is running, for `version`
// commands and logs.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is set at link time:
// -ldflags "-X github.com/podid/podid/internal/version.Version=v0.1.0".
var Version = "dev"

// String describes the build of program: version, commit, Go and platform.
func String(program string) string {
	commit := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	return fmt.Sprintf("%s %s (commit %s, %s, %s/%s)", program, Version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
