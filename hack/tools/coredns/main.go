// Command coredns is CoreDNS with only the plugins a cluster's DNS needs
// (kubernetes, cache, bind, errors, health, ready), the way CoreDNS documents
// external builds: fewer dependencies and a shorter build than the full
// distribution. test/harness/localnode runs it as the real node's cluster DNS; it
// never forwards a query off the machine.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	// The order in which plugins see a query: the standard order restricted
	// to the plugins linked in.
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "cache", "kubernetes"}
}

func main() { coremain.Run() }
