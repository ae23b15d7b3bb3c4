// Command workload is what a pod's program does with podid: nothing but the
// standard aws-sdk-go-v2 credential chain, configured by the environment the
// webhook injects. It prints who it is as one JSON line.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fail(err)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		fail(err)
	}
	who, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		fail(err)
	}
	json.NewEncoder(os.Stdout).Encode(map[string]any{
		"arn": *who.Arn, "accessKeyId": creds.AccessKeyID, "source": creds.Source,
		"expires": creds.Expires.UTC().Format(time.RFC3339), "accountId": creds.AccountID,
	})
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "workload:", err)
	os.Exit(1)
}
