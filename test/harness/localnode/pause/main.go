// Command pause is the pods' sandbox process on test/harness/localnode's node,
// the job of Kubernetes' pause image: it holds the pod's namespaces, reaps
// the zombies it inherits, and exits on SIGTERM or SIGINT. It is built into
// an image here because nothing can be pulled.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
