package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func selfSignedServer(t *testing.T) (*httptest.Server, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "podid"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// A renewed CA written into the mounted file is trusted without a restart.
func TestServerCAFollowsTheFile(t *testing.T) {
	oldSrv, oldPEM := selfSignedServer(t)
	newSrv, newPEM := selfSignedServer(t)
	file := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(file, oldPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	ca, err := NewServerCA(file)
	if err != nil {
		t.Fatal(err)
	}
	get := func(url string) error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.TLSConfig(), DisableKeepAlives: true}}
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(oldSrv.URL); err != nil {
		t.Fatalf("the bundle's server: %v", err)
	}
	if err := get(newSrv.URL); err == nil {
		t.Fatal("a server the bundle does not hold was trusted")
	}
	// The renewal: both CAs, as podid publishes them during the overlap.
	if err := os.WriteFile(file, append(newPEM, oldPEM...), 0o644); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Minute)
	os.Chtimes(file, future, future)
	ca.mu.Lock()
	ca.checked = time.Time{} // skip the 5 s between checks
	ca.mu.Unlock()
	for _, u := range []string{oldSrv.URL, newSrv.URL} {
		if err := get(u); err != nil {
			t.Fatalf("after the renewal: %v", err)
		}
	}
	if _, err := NewServerCA(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
}
