package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Distribution2Binary is Debian's docker-registry package: the CNCF
// distribution registry 2.8, the registry most people self-host. It
// has no referrers API, so signatures live in the tag-schema fallback
// index.
const Distribution2Binary = "/usr/bin/docker-registry"

// Flavour is one registry implementation the tests run against.
type Flavour struct {
	Name  string
	Start func(testing.TB) *Registry
}

// Flavours are the registries signed packages are tested against: the
// distribution v3 library in process, and the distribution 2.8 binary.
var Flavours = []Flavour{{"distribution-v3", Start}, {"distribution-2.8", StartDistribution2}}

// StartDistribution2 runs Debian's docker-registry (distribution 2.8) on
// a loopback port with a generated configuration in a temporary
// directory: filesystem storage, TLS with a test CA, htpasswd
// authentication, and deletes disabled (its upstream default). The test
// is skipped when the binary is absent.
func StartDistribution2(t testing.TB) *Registry {
	t.Helper()
	if _, err := os.Stat(Distribution2Binary); err != nil {
		t.Skipf("distribution 2.8 registry not installed (%s: %v); scripts/install-deps.sh installs Debian's docker-registry", Distribution2Binary, err)
	}
	dir := t.TempDir()
	r, htpasswd := withCredentials(t, dir)
	certPEM, keyPEM, caPEM := testCert(t)
	files := map[string][]byte{"cert.pem": certPEM, "key.pem": keyPEM, "ca.pem": caPEM}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r.CAFile = filepath.Join(dir, "ca.pem")
	// The binary picks no free port itself: take one and retry if another
	// process grabs it between our probe and its listen.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		r.Host = fmt.Sprintf("127.0.0.1:%d", port)
		if lastErr = runDistribution2(t, dir, htpasswd, r); lastErr == nil {
			return r
		}
	}
	t.Fatalf("distribution 2.8 registry did not start: %v", lastErr)
	return nil
}

func runDistribution2(t testing.TB, dir, htpasswd string, r *Registry) error {
	storage := filepath.Join(dir, "storage")
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog: {disabled: true}
storage:
  filesystem: {rootdirectory: %q}
  delete: {enabled: false}
http:
  addr: %q
  secret: leaf-test-secret
  tls: {certificate: %q, key: %q}
auth:
  htpasswd: {realm: leaf-test, path: %q}
`, storage, r.Host, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), htpasswd)
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(Distribution2Binary, "serve", cfgFile)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Kill()
			<-exited
		})
	}
	if err := waitReady(r, exited); err != nil {
		stop()
		log, _ := os.ReadFile(logFile.Name())
		return fmt.Errorf("%w; log: %s", err, strings.TrimSpace(string(log)))
	}
	t.Cleanup(stop)
	r.stop = stop
	return nil
}

// waitReady polls /v2/ until the registry answers (401 without
// credentials) or the process exits.
func waitReady(r *Registry, exited <-chan struct{}) error {
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(r.CAFile)
	if err != nil {
		return err
	}
	pool.AppendCertsFromPEM(ca)
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+r.Host+"/v2/", nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before answering on %s", r.Host)
		case <-ctx.Done():
			return fmt.Errorf("not ready on %s: %v", r.Host, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
