// Package integration tests podid's API and server against a real etcd and
// kube-apiserver (package localcluster): what the API server itself enforces
// through the CRD, and what a running `podid server` makes of it.
package integration

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podid/podid/internal/association"
	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/test/harness/localcluster"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var (
	cluster *localcluster.Cluster
	k8s     client.Client
	srv     *server.Server
	// fakeClock is the server's clock, so modifiedAt is predictable.
	fakeClock = clocktesting.NewFakePassiveClock(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	identity  = association.Identity{Partition: "aws", Region: "eu-west-1", AccountID: "111122223333", ClusterName: "podid-test"}
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	cluster, err = localcluster.Start(localcluster.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer func() { _ = cluster.Stop() }()
	defer os.RemoveAll(kubeletPodsDir)
	k8s = cluster.Client

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := startEmulator(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	srv, err = server.New(ctx, cluster.Config, server.Options{
		Identity:                identity,
		LeaderElection:          true,
		LeaderElectionNamespace: "default",
		MetricsAddr:             "0",
		ProbeAddr:               "0",
		Clock:                   fakeClock,
		API:                     apiOptions(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	if err := setupNodesAndAgents(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		cancel()
		<-done
		return 1
	}
	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "integration: server:", err)
		return 1
	}
	return code
}
