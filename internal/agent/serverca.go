package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// ServerCA trusts the CA bundle in a file that changes: podid server's own
// CA, published in a ConfigMap the agent mounts, is renewed with the old and
// new CAs side by side, and the kubelet updates the mounted file in place. The
// file is re-read when its modification time changes, checked at most every
// few seconds, so a renewal needs no agent restart.
type ServerCA struct {
	file string

	mu      sync.Mutex
	pool    *x509.CertPool
	modTime time.Time
	checked time.Time
}

// NewServerCA loads file, failing if it holds no certificate.
func NewServerCA(file string) (*ServerCA, error) {
	s := &ServerCA{file: file}
	if _, err := s.roots(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *ServerCA) roots() (*x509.CertPool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pool != nil && time.Since(s.checked) < 5*time.Second {
		return s.pool, nil
	}
	s.checked = time.Now()
	info, err := os.Stat(s.file)
	if err != nil {
		if s.pool != nil {
			return s.pool, nil // keep trusting what we had while the file is swapped
		}
		return nil, fmt.Errorf("the server's CA bundle: %w", err)
	}
	if s.pool != nil && info.ModTime().Equal(s.modTime) {
		return s.pool, nil
	}
	pem, err := os.ReadFile(s.file)
	if err != nil {
		return nil, fmt.Errorf("the server's CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		if s.pool != nil {
			return s.pool, nil
		}
		return nil, fmt.Errorf("the server's CA bundle %s holds no PEM certificate", s.file)
	}
	s.pool, s.modTime = pool, info.ModTime()
	return pool, nil
}

// TLSConfig verifies the server against the current bundle.
func (s *ServerCA) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is done below, against the bundle as it is now;
		// crypto/tls's own would use a pool fixed at start.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			pool, err := s.roots()
			if err != nil {
				return err
			}
			intermediates := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				intermediates.AddCert(c)
			}
			_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: intermediates, DNSName: cs.ServerName})
			return err
		},
	}
}
