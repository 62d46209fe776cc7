// Package registry runs a real OCI registry for tests: the distribution
// registry (the code behind Docker Hub's and Debian's docker-registry) as
// a library, in memory, on loopback, over TLS with a test CA and basic
// authentication from an htpasswd file.
package registry

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"

	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// Registry is a running test registry.
type Registry struct {
	// Host is "127.0.0.1:PORT".
	Host string
	// CAFile is the PEM CA that signed the server certificate.
	CAFile             string
	Username, Password string
	// PasswordFile holds Password, mode 0600.
	PasswordFile string
	// Requests counts requests per path prefix ("/v2/NAME/blobs/").
	mu       sync.Mutex
	requests []string
	// Tamper, if set, may rewrite a response body: tests use it to make
	// the registry lie.
	Tamper func(path string, body []byte) []byte
	// stop ends the registry (set by StartDistribution2).
	stop func()
}

// Stop ends a registry StartDistribution2 started before the test does:
// from then on its port refuses connections.
func (r *Registry) Stop() {
	if r.stop != nil {
		r.stop()
	}
}

var quietOnce sync.Once

// Start runs a registry until the test ends.
func Start(t testing.TB) *Registry {
	t.Helper()
	quietOnce.Do(func() { logrus.SetOutput(io.Discard) })
	dir := t.TempDir()
	r, htpasswd := withCredentials(t, dir)
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{"inmemory": configuration.Parameters{}, "delete": configuration.Parameters{"enabled": true}},
		Auth:    configuration.Auth{"htpasswd": configuration.Parameters{"realm": "leaf-test", "path": htpasswd}},
	}
	cfg.HTTP.Secret = "leaf-test-secret"
	cfg.Log.Level = "error"
	cfg.Catalog.MaxEntries = 1000
	ctx, cancel := context.WithCancel(context.Background())
	app := handlers.NewApp(ctx, cfg)
	srv := httptest.NewUnstartedServer(r.wrap(app))
	certPEM, keyPEM, caPEM := testCert(t)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	// Tests make handshakes fail on purpose (a client without the CA).
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(func() { srv.Close(); cancel() })
	r.Host = strings.TrimPrefix(srv.URL, "https://")
	r.CAFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(r.CAFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

// withCredentials makes a registry user: an htpasswd file for the
// server and a password file (mode 0600) for clients, both in dir.
func withCredentials(t testing.TB, dir string) (r *Registry, htpasswd string) {
	t.Helper()
	r = &Registry{Username: "leaf", Password: "s3cret-" + strings.ReplaceAll(t.Name(), "/", "-")}
	hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd = filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(r.Username+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.PasswordFile = filepath.Join(dir, "password")
	if err := os.WriteFile(r.PasswordFile, []byte(r.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return r, htpasswd
}

// Requests returns the paths requested so far.
func (r *Registry) Requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests...)
}

func (r *Registry) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests = append(r.requests, req.Method+" "+req.URL.Path)
		tamper := r.Tamper
		r.mu.Unlock()
		if tamper == nil || req.Method != http.MethodGet {
			h.ServeHTTP(w, req)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		body := tamper(req.URL.Path, rec.Body.Bytes())
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		w.Write(body)
	})
}

// testCert makes a CA and a server certificate for 127.0.0.1 signed by
// it, and returns the server certificate, its key and the CA as PEM.
func testCert(t testing.TB) (certPEM, keyPEM, caPEM []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "leaf test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}
