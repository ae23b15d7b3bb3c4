package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// APIServer is how the agent reaches the Kubernetes API server: an address
// and an HTTP client carrying the agent's credentials. The agent needs two
// things from it, the ServiceAccount token keys and a watch on its node's
// pods, and asks for both with plain HTTP: client-go and the API types would
// add some 30 MB of resident memory to a process that runs on every node.
type APIServer struct {
	Host   string // https://host:port
	Client *http.Client
}

// In-cluster defaults: what the kubelet gives every pod.
const (
	inClusterTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	inClusterCAFile    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

// InCluster returns the API server a pod reaches: host (default
// https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT), authenticated
// with the ServiceAccount token in tokenFile (re-read as the kubelet rotates
// it) and trusted through caFile. Empty arguments take the in-cluster
// defaults.
func InCluster(host, tokenFile, caFile string) (*APIServer, error) {
	if host == "" {
		h, p := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if h == "" || p == "" {
			return nil, errors.New("not running in a pod (KUBERNETES_SERVICE_HOST is unset): give the API server's address with --kube-api-server")
		}
		host = "https://" + net.JoinHostPort(h, p)
	}
	if tokenFile == "" {
		tokenFile = inClusterTokenFile
	}
	if caFile == "" {
		caFile = inClusterCAFile
	}
	if _, err := os.Stat(tokenFile); err != nil {
		return nil, fmt.Errorf("the agent's ServiceAccount token: %w", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("the API server's CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("the API server's CA bundle %s holds no PEM certificate", caFile)
	}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	return &APIServer{Host: host, Client: &http.Client{Transport: &bearer{file: tokenFile, next: transport}}}, nil
}
