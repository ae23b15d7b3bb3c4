// Command workload is the sample workload of podid's real-node tests and
// sandbox: an ordinary program using the aws-sdk-go-v2 default credential
// chain, as a user's would, with nothing podid-specific in it. Built into an
// image (test/harness/localnode) and run as pods whose ServiceAccount has an
// association.
//
// It prints its identity once at start (one JSON line, `kubectl logs`, and
// GET /startup), serves GET /identity (a fresh credential chain, then GetCallerIdentity)
// and GET /stats on $LISTEN (default :8080), and with $FETCH_INTERVAL set
// fetches credentials through a fresh chain at that interval, counting what
// failed after the SDK's own retries — the steady load the fault tests
// watch.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// Identity is what /identity answers and the start-up line holds.
type Identity struct {
	ARN         string    `json:"arn,omitempty"`
	AccessKeyID string    `json:"accessKeyId,omitempty"`
	Source      string    `json:"source,omitempty"`
	Expires     time.Time `json:"expires,omitzero"`
	// Started is when the process started and Obtained when the SDK held
	// credentials: the pod start → credentials figure.
	Started  time.Time `json:"started"`
	Obtained time.Time `json:"obtained,omitzero"`
	Error    string    `json:"error,omitempty"`
}

// Stats counts the steady-load fetches.
type Stats struct {
	Fetches  int64    `json:"fetches"`
	Failures int64    `json:"failures"`
	Errors   []string `json:"errors,omitempty"`
}

var started = time.Now()

func identity(ctx context.Context) Identity {
	id := Identity{Started: started}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		id.Error = err.Error()
		return id
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		id.Error = "credentials: " + err.Error()
		return id
	}
	id.Obtained = time.Now()
	id.AccessKeyID, id.Source, id.Expires = creds.AccessKeyID, creds.Source, creds.Expires.UTC()
	who, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		id.Error = "GetCallerIdentity: " + err.Error()
		return id
	}
	id.ARN = *who.Arn
	return id
}

func main() {
	ctx := context.Background()
	first := identity(ctx)
	line, _ := json.Marshal(first)
	fmt.Println(string(line))

	var mu sync.Mutex
	stats := Stats{}
	if s := os.Getenv("FETCH_INTERVAL"); s != "" {
		interval, err := time.ParseDuration(s)
		if err != nil {
			log.Fatalf("FETCH_INTERVAL: %v", err)
		}
		go func() {
			for range time.Tick(interval) {
				err := fetch(ctx)
				mu.Lock()
				stats.Fetches++
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
		_ = json.NewEncoder(w).Encode(identity(r.Context()))
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

// fetch retrieves credentials through a fresh default chain, so that every
// call reaches the node's agent (the SDK would otherwise cache them).
func fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return err
	}
	if creds.AccessKeyID == "" {
		return errors.New("no access key")
	}
	return nil
}
