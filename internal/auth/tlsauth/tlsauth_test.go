package tlsauth

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/leaf-ebpf/leaf/internal/auth"
	"github.com/leaf-ebpf/leaf/internal/testenv/pki"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// world is a CA, a server certificate, files, and a TLS server answering
// with the client's first SAN.
type world struct {
	dir      string
	ca       *pki.CA
	server   *pki.Leaf
	cfg      Config
	srv      *Server
	addr     string
	logs     *syncBuf
	watcher  *Watcher
	certFile string
}

func newWorld(t *testing.T, mutate func(*Config)) *world {
	t.Helper()
	w := &world{dir: t.TempDir(), ca: pki.NewCA(t, "leaf test CA"), logs: &syncBuf{}}
	// A fresh CRL is where the world's config may point (TestStaleCRL).
	pki.WriteFile(t, filepath.Join(w.dir, "ca.crl"), w.ca.CRL(t))
	w.server = w.ca.Issue(t, pki.Options{CN: "leafd", DNS: []string{"leafd.test"}, IPs: []string{"127.0.0.1"}})
	cert, key := w.server.Write(t, w.dir, "server")
	w.certFile = cert
	caFile := filepath.Join(w.dir, "ca.pem")
	pki.WriteFile(t, caFile, w.ca.PEM())
	log := slog.New(slog.NewTextHandler(w.logs, nil))
	w.watcher = &Watcher{Window: 30 * 24 * time.Hour, Logger: log}
	w.cfg = Config{CertFile: cert, KeyFile: key, ClientCAFile: caFile, MinVersion: tls.VersionTLS13, RequireClientCert: true, Logger: log, Watcher: w.watcher}
	if mutate != nil {
		mutate(&w.cfg)
	}
	var err error
	w.srv, err = New(w.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if len(r.TLS.VerifiedChains) == 0 {
				fmt.Fprint(rw, "no certificate")
				return
			}
			fmt.Fprint(rw, auth.SANs(r.TLS.VerifiedChains[0][0])[0].Raw)
		}),
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go hs.Serve(tls.NewListener(ln, w.srv.TLSConfig()))
	t.Cleanup(func() { hs.Close() })
	w.addr = ln.Addr().String()
	return w
}

// get connects with the given client certificate (nil: none) and returns
// the answer or the error.
func (w *world) get(t *testing.T, client *pki.Leaf, mutate ...func(*tls.Config)) (string, error) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(w.ca.Cert)
	conf := &tls.Config{RootCAs: roots, ServerName: "leafd.test"}
	if client != nil {
		c := tls.Certificate{Certificate: [][]byte{client.Cert.Raw}, PrivateKey: client.Key}
		for _, ic := range client.Chain {
			c.Certificate = append(c.Certificate, ic.Raw)
		}
		// Always send it: Go's client would otherwise stay silent when the
		// certificate's issuer is not among the CAs the server names, and
		// the test would not reach the server's verification.
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	for _, m := range mutate {
		m(conf)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
	resp, err := hc.Get("https://" + w.addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestClientCertificates(t *testing.T) {
	w := newWorld(t, nil)
	other := pki.NewCA(t, "some other CA")
	publicRoot := pki.NewCA(t, "Public Root CA")
	publicIntermediate := publicRoot.Intermediate(t, "Public Issuing CA")
	ourIntermediate := w.ca.Intermediate(t, "leaf test issuing CA")
	now := time.Now()
	cases := []struct {
		name   string
		client *pki.Leaf
		ok     bool
	}{
		{"valid", w.ca.Issue(t, pki.Options{DNS: []string{"ok.leaf.test"}}), true},
		{"via our own intermediate", ourIntermediate.Issue(t, pki.Options{DNS: []string{"mid.leaf.test"}}), true},
		{"expired", w.ca.Issue(t, pki.Options{DNS: []string{"old.leaf.test"}, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)}), false},
		{"not yet valid", w.ca.Issue(t, pki.Options{DNS: []string{"new.leaf.test"}, NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)}), false},
		{"wrong CA", other.Issue(t, pki.Options{DNS: []string{"ok.leaf.test"}}), false},
		// What a public CA issues: a chain to a root leafd does not trust,
		// even though the client sends the intermediate along.
		{"public-CA-style chain", publicIntermediate.Issue(t, pki.Options{DNS: []string{"ok.leaf.test"}}), false},
		{"no certificate", nil, false},
		// crypto/x509 takes a certificate without EKU as good for any use.
		{"no extended key usage", w.ca.Issue(t, pki.Options{DNS: []string{"ok.leaf.test"}, NoEKU: true}), false},
		{"serverAuth only", w.ca.Issue(t, pki.Options{DNS: []string{"ok.leaf.test"}, EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}), false},
		{"clientAuth only", w.ca.Issue(t, pki.Options{DNS: []string{"ok.leaf.test"}, EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := w.get(t, c.client)
			if c.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !c.ok && err == nil {
				t.Fatalf("accepted (answer %q)", got)
			}
		})
	}
	// The refusals are in the log, for the operator.
	if logs := w.logs.String(); !strings.Contains(logs, "TLS handshake error") || !strings.Contains(logs, "no clientAuth extended key usage") {
		t.Errorf("handshake failures not logged:\n%s", logs)
	}
}

func TestTokenClientsNeedNoCertificate(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.RequireClientCert = false })
	if got, err := w.get(t, nil); err != nil || got != "no certificate" {
		t.Errorf("no certificate: %q %v", got, err)
	}
	// A certificate that is sent must still verify.
	bad := pki.NewCA(t, "other").Issue(t, pki.Options{DNS: []string{"x.leaf.test"}})
	if _, err := w.get(t, bad); err == nil {
		t.Error("certificate of another CA accepted when certificates are optional")
	}
}

func TestMinVersion(t *testing.T) {
	tls12 := func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }
	w := newWorld(t, nil)
	client := w.ca.Issue(t, pki.Options{DNS: []string{"ok.leaf.test"}})
	if _, err := w.get(t, client, tls12); err == nil {
		t.Error("TLS 1.2 client accepted by a 1.3-minimum server")
	}
	w12 := newWorld(t, func(c *Config) { c.MinVersion = tls.VersionTLS12 })
	client = w12.ca.Issue(t, pki.Options{DNS: []string{"ok.leaf.test"}})
	if _, err := w12.get(t, client, tls12); err != nil {
		t.Errorf("TLS 1.2 client refused by a 1.2-minimum server: %v", err)
	}
	tls11 := func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 }
	if _, err := w12.get(t, client, tls11); err == nil {
		t.Error("TLS 1.1 client accepted")
	}
	for _, v := range []string{"1.0", "1.1", "tls13"} {
		if _, err := ParseMinVersion(v); err == nil {
			t.Errorf("min version %q accepted", v)
		}
	}
}

func TestCRL(t *testing.T) {
	w := newWorld(t, nil)
	good := w.ca.Issue(t, pki.Options{DNS: []string{"good.leaf.test"}})
	revoked := w.ca.Issue(t, pki.Options{DNS: []string{"revoked.leaf.test"}})
	crl := filepath.Join(w.dir, "ca.crl")
	pki.WriteFile(t, crl, w.ca.CRL(t, revoked))
	cfg := w.cfg
	cfg.CRLFile = crl
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.srv.mu.Lock()
	w.srv.cfg.CRLFile = crl // the running world's server now reads it too
	w.srv.mu.Unlock()
	if err := w.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.get(t, revoked); err == nil {
		t.Error("revoked certificate accepted")
	}
	if _, err := w.get(t, good); err != nil {
		t.Errorf("good certificate refused: %v", err)
	}
	_ = srv
	// A CRL signed by a CA outside the bundle is refused, not trusted.
	foreign := filepath.Join(w.dir, "foreign.crl")
	pki.WriteFile(t, foreign, pki.NewCA(t, "other").CRL(t))
	cfg.CRLFile = foreign
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "not a CA of the client CA bundle") {
		t.Errorf("foreign CRL: %v", err)
	}
}

// TestHotReload replaces the server certificate, the CA bundle and the
// CRL on disk; new handshakes use them without a restart, and a broken
// file keeps the previous material.
func TestHotReload(t *testing.T) {
	w := newWorld(t, nil)
	client := w.ca.Issue(t, pki.Options{DNS: []string{"c.leaf.test"}})
	if _, err := w.get(t, client); err != nil {
		t.Fatal(err)
	}
	var seen *x509.Certificate
	peek := func(c *tls.Config) {
		c.VerifyConnection = func(cs tls.ConnectionState) error { seen = cs.PeerCertificates[0]; return nil }
	}
	// New server certificate, same CA.
	renewed := w.ca.Issue(t, pki.Options{CN: "leafd", DNS: []string{"leafd.test"}, NotAfter: time.Now().Add(500 * 24 * time.Hour)})
	w.server.Write(t, w.dir, "server") // rewrite the same files...
	renewed.Write(t, w.dir, "server")  // ...then the renewed pair
	if err := w.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.get(t, client, peek); err != nil || seen.SerialNumber.Cmp(renewed.Cert.SerialNumber) != 0 {
		t.Fatalf("after renewal the server presents serial %v (err %v), want %v", seen.SerialNumber, err, renewed.Cert.SerialNumber)
	}
	// The reload happens by itself on a handshake, no Reload call needed.
	again := w.ca.Issue(t, pki.Options{CN: "leafd", DNS: []string{"leafd.test"}})
	again.Write(t, w.dir, "server")
	time.Sleep(reloadEvery + 100*time.Millisecond)
	if _, err := w.get(t, client, peek); err != nil || seen.SerialNumber.Cmp(again.Cert.SerialNumber) != 0 {
		t.Fatalf("handshake after a change presents serial %v (err %v), want %v", seen.SerialNumber, err, again.Cert.SerialNumber)
	}
	// A new CA bundle: clients of the old CA are refused, the new CA's accepted.
	newCA := pki.NewCA(t, "leaf test CA 2")
	pki.WriteFile(t, w.cfg.ClientCAFile, newCA.PEM())
	if err := w.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.get(t, client); err == nil {
		t.Error("old CA's client accepted after the bundle changed")
	}
	if _, err := w.get(t, newCA.Issue(t, pki.Options{DNS: []string{"n.leaf.test"}})); err != nil {
		t.Errorf("new CA's client refused: %v", err)
	}
	// A broken file: the reload fails, the old material stays.
	os.WriteFile(w.cfg.ClientCAFile, []byte("garbage"), 0o600)
	if err := w.srv.Reload(); err == nil {
		t.Error("reload of a garbage CA bundle: no error")
	}
	if _, err := w.get(t, newCA.Issue(t, pki.Options{DNS: []string{"n.leaf.test"}})); err != nil {
		t.Errorf("after a failed reload: %v", err)
	}
	if !strings.Contains(w.logs.String(), "TLS reload failed") {
		t.Error("failed reload not logged")
	}
}

func TestNewErrors(t *testing.T) {
	w := newWorld(t, nil)
	for name, mutate := range map[string]func(*Config){
		"missing cert": func(c *Config) { c.CertFile = filepath.Join(w.dir, "nope.crt") },
		"key mismatch": func(c *Config) {
			_, c.KeyFile = w.ca.Issue(t, pki.Options{DNS: []string{"x"}}).Write(t, w.dir, "other")
		},
		"missing CA":  func(c *Config) { c.ClientCAFile = "" },
		"CA not a CA": func(c *Config) { c.ClientCAFile = w.certFile },
		"TLS 1.1":     func(c *Config) { c.MinVersion = tls.VersionTLS11 },
		"garbage bundle": func(c *Config) {
			c.ClientCAFile = filepath.Join(w.dir, "g")
			os.WriteFile(c.ClientCAFile, []byte("x"), 0o600)
		},
	} {
		cfg := w.cfg
		mutate(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func gather(t *testing.T, w *Watcher) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(w)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			out[mf.GetName()+labels(m)] = m.GetGauge().GetValue()
		}
	}
	return out
}

func labels(m *dto.Metric) string {
	var parts []string
	for _, l := range m.Label {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	if len(parts) == 0 {
		return ""
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// TestExpiryWarningAndMetric: a server certificate 10 days from expiry,
// a client certificate 5 days from it, and an expired server certificate
// that must not stop anything.
func TestExpiryWarningAndMetric(t *testing.T) {
	soon := time.Now().Add(10 * 24 * time.Hour)
	w := newWorld(t, nil)
	short := w.ca.Issue(t, pki.Options{CN: "leafd", DNS: []string{"leafd.test"}, NotAfter: soon})
	short.Write(t, w.dir, "server")
	if err := w.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(w.logs.String(), `msg="certificate expires soon" kind=server subject=leafd`) {
		t.Errorf("no warning for the server certificate:\n%s", w.logs.String())
	}
	client := w.ca.Issue(t, pki.Options{DNS: []string{"c.leaf.test"}, NotAfter: time.Now().Add(5 * 24 * time.Hour)})
	if _, err := w.get(t, client); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(w.logs.String(), `kind=client subject=c.leaf.test`) {
		t.Errorf("no warning for the client certificate:\n%s", w.logs.String())
	}
	m := gather(t, w.watcher)
	near := func(key string, want time.Duration) {
		got, ok := m[key]
		if !ok || math.Abs(got-want.Seconds()) > 120 {
			t.Errorf("%s = %v (present %v), want about %v", key, got, ok, want.Seconds())
		}
	}
	near("leaf_tls_cert_expiry_seconds{kind=server,subject=leafd}", 10*24*time.Hour)
	near("leaf_tls_client_cert_expiry_min_seconds", 5*24*time.Hour)
	near("leaf_tls_client_certs_expiring", 0) // one certificate: compared as a count below
	if m["leaf_tls_client_certs_expiring"] != 1 {
		t.Errorf("client certificates expiring: %v, want 1", m["leaf_tls_client_certs_expiring"])
	}
	// /metrics answers anyone: no client's name is in it.
	for k := range m {
		if strings.Contains(k, "c.leaf.test") || strings.Contains(k, "kind=client") {
			t.Errorf("client identity in the metrics: %s", k)
		}
	}
	near("leaf_tls_cert_expiry_seconds{kind=ca,subject=leaf test CA}", time.Until(w.ca.Cert.NotAfter))
	near("leaf_tls_cert_warning_window_seconds", 30*24*time.Hour)

	// The API's view (the console's certificate panel) says the same,
	// and marks what is inside the window; the client stays unnamed.
	certs := w.watcher.Certificates()
	if !certs.TLS || certs.WarningWindow != (30*24*time.Hour).Seconds() || len(certs.Certificates) != 2 {
		t.Fatalf("certificates: %+v", certs)
	}
	for _, c := range certs.Certificates {
		wantLeft, wantWarn := time.Until(w.ca.Cert.NotAfter), false
		if c.Kind == KindServer {
			wantLeft, wantWarn = 10*24*time.Hour, true
		}
		if math.Abs(c.SecondsLeft-wantLeft.Seconds()) > 120 || c.Warning != wantWarn || c.Subject == "" {
			t.Errorf("%s certificate: %+v, want about %v left, warning %v", c.Kind, c, wantLeft, wantWarn)
		}
	}
	if c := certs.Clients; c == nil || c.Seen != 1 || c.Expiring != 1 || math.Abs(time.Until(c.SoonestExpiry).Hours()-5*24) > 1 {
		t.Errorf("clients: %+v, want one seen, expiring in about 5 days", c)
	}

	// Expired server certificate: New and serving go on; leafd logs it.
	expired := w.ca.Issue(t, pki.Options{CN: "leafd", DNS: []string{"leafd.test"}, NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	expired.Write(t, w.dir, "server")
	if err := w.srv.Reload(); err != nil {
		t.Fatalf("reload of an expired certificate: %v", err)
	}
	if !strings.Contains(w.logs.String(), `msg="certificate expired" kind=server`) {
		t.Errorf("expired server certificate not logged:\n%s", w.logs.String())
	}
	if m := gather(t, w.watcher); m["leaf_tls_cert_expiry_seconds{kind=server,subject=leafd}"] >= 0 {
		t.Errorf("expired certificate shows %v seconds left, want < 0", m["leaf_tls_cert_expiry_seconds{kind=server,subject=leafd}"])
	}
	cfg := w.cfg
	if _, err := New(cfg); err != nil {
		t.Errorf("start with an expired server certificate: %v", err)
	}
}

func TestClientCap(t *testing.T) {
	ca := pki.NewCA(t, "ca")
	w := &Watcher{Window: time.Hour, MaxClients: 3}
	for i := range 5 {
		w.SeenClient(ca.Issue(t, pki.Options{DNS: []string{fmt.Sprintf("c%d.test", i)}}).Cert)
		time.Sleep(time.Millisecond)
	}
	if got := len(w.clientList()); got != 3 {
		t.Errorf("%d clients watched, want 3 (the cap)", got)
	}
	for _, c := range w.clientList() {
		if c.subject == "c0.test" || c.subject == "c1.test" {
			t.Errorf("oldest client %s kept over newer ones", c.subject)
		}
	}
	for k := range gather(t, w) {
		if strings.Contains(k, ".test") {
			t.Errorf("client identity in the metrics: %s", k)
		}
	}
}

// TestStaleCRL: a CRL whose nextUpdate has passed is used with a warning
// and a negative leaf_tls_crl_next_update_seconds; with RefuseStaleCRL
// every client certificate is refused until a fresh CRL arrives.
func TestStaleCRL(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("refuse=%v", refuse), func(t *testing.T) {
			w := newWorld(t, func(c *Config) {
				c.CRLFile = filepath.Join(filepath.Dir(c.ClientCAFile), "ca.crl")
				c.RefuseStaleCRL = refuse
			})
			good := w.ca.Issue(t, pki.Options{DNS: []string{"good.leaf.test"}})
			if _, err := w.get(t, good); err != nil {
				t.Fatalf("fresh CRL: %v", err)
			}
			pki.WriteFile(t, w.cfg.CRLFile, w.ca.CRLUntil(t, time.Now().Add(-time.Hour)))
			if err := w.srv.Reload(); err != nil {
				t.Fatal(err)
			}
			_, err := w.get(t, good)
			if refuse && err == nil {
				t.Error("stale CRL with RefuseStaleCRL: certificate accepted")
			}
			if !refuse && err != nil {
				t.Errorf("stale CRL: certificate refused: %v", err)
			}
			if !strings.Contains(w.logs.String(), "CRL is stale") {
				t.Errorf("no warning about the stale CRL:\n%s", w.logs.String())
			}
			if v, ok := gather(t, w.watcher)["leaf_tls_crl_next_update_seconds{issuer=CN=leaf test CA}"]; !ok || v > -3000 {
				t.Errorf("leaf_tls_crl_next_update_seconds = %v (present %v), want about -3600", v, ok)
			}
		})
	}
}
