// Command workload is the sample workload of podid's real-node tests and
// sandbox: an ordinary program using the aws-sdk-go-v2 default credential
// chain, as a user's would, with nothing podid-specific in it (package
// test/harness/workload). Built into an image (test/harness/localnode) and
// run as pods whose ServiceAccount has an association, and as a process by
// the integration tests.
//
// It prints its identity once at start (one JSON line, `kubectl logs`, and
// GET /startup; `workload once` stops there, failing if the SDK did), serves
// GET /identity (a fresh credential chain, then GetCallerIdentity) and
// GET /stats on $LISTEN (default :8080), and with $FETCH_INTERVAL set
// fetches credentials through a fresh chain at that interval, counting what
// failed after the SDK's own retries and noting the slow ones — the
// steady load the fault tests watch.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/podid/podid/test/harness/workload"
)

// Stats counts the steady-load fetches.
type Stats struct {
	Fetches  int64    `json:"fetches"`
	Failures int64    `json:"failures"`
	Errors   []string `json:"errors,omitempty"`
	// Slow are the fetches that took a second or more (the first 500):
	// when each began, and how long it took.
	Slow []SlowFetch `json:"slow,omitempty"`
}

// SlowFetch is a fetch that took a second or more.
type SlowFetch struct {
	Began    time.Time     `json:"began"`
	Duration time.Duration `json:"duration"`
	Failed   bool          `json:"failed,omitempty"`
}

var started = time.Now()

func main() {
	ctx := context.Background()
	first := workload.Ask(ctx, started)
	line, _ := json.Marshal(first)
	fmt.Println(string(line))
	if len(os.Args) > 1 && os.Args[1] == "once" {
		if first.Error != "" {
			fmt.Fprintln(os.Stderr, "workload:", first.Error)
			os.Exit(1)
		}
		return
	}

	var mu sync.Mutex
	stats := Stats{}
	if s := os.Getenv("FETCH_INTERVAL"); s != "" {
		interval, err := time.ParseDuration(s)
		if err != nil {
			log.Fatalf("FETCH_INTERVAL: %v", err)
		}
		go func() {
			for range time.Tick(interval) {
				began := time.Now()
				err := workload.Fetch(ctx)
				took := time.Since(began)
				mu.Lock()
				stats.Fetches++
				if took >= time.Second && len(stats.Slow) < 500 {
					stats.Slow = append(stats.Slow, SlowFetch{Began: began.UTC(), Duration: took, Failed: err != nil})
				}
				if err != nil {
					stats.Failures++
					if len(stats.Errors) < 20 {
						stats.Errors = append(stats.Errors, time.Now().UTC().Format(time.RFC3339Nano)+" "+err.Error())
					}
				}
				mu.Unlock()
			}
		}()
	}
	http.HandleFunc("GET /identity", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(workload.Ask(r.Context(), started))
	})
	http.HandleFunc("GET /startup", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(first)
	})
	http.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_ = json.NewEncoder(w).Encode(stats)
	})
	addr := os.Getenv("LISTEN")
	if addr == "" {
		addr = ":8080"
	}
	log.Fatal(http.ListenAndServe(addr, nil))
}
