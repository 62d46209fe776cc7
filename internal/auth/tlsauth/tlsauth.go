// Package tlsauth serves leafd's TLS listener: the server certificate, the
// client CA bundle (the ONLY roots client certificates may chain to, never
// the system pool) and an optional CRL, all re-read from disk when they
// change, so rotating a certificate needs no restart. It also watches
// certificate expiry (expiry.go).
package tlsauth

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/leaf-ebpf/leaf/internal/secretfile"
)

// Config says where the TLS material is.
type Config struct {
	CertFile, KeyFile string
	// ClientCAFile is a PEM bundle of the CAs client certificates must
	// chain to.
	ClientCAFile string
	// CRLFile, if set, is a PEM or DER CRL (or several, PEM) signed by a CA
	// of the bundle; certificates it lists are refused at the handshake.
	CRLFile string
	// RefuseStaleCRL refuses every client certificate while a CRL's
	// nextUpdate has passed (fail closed); without it a stale CRL is still
	// used, with a warning and a metric.
	RefuseStaleCRL bool
	// MinVersion is tls.VersionTLS12 or tls.VersionTLS13.
	MinVersion uint16
	// RequireClientCert refuses the handshake without a client
	// certificate; false lets token clients connect without one (a
	// certificate, if sent, must still verify).
	RequireClientCert bool
	Logger            *slog.Logger
	// Watcher learns every certificate loaded and every client
	// certificate seen, for expiry warnings; may be nil.
	Watcher *Watcher
}

// ParseMinVersion reads "1.2" or "1.3" (empty means 1.3).
func ParseMinVersion(s string) (uint16, error) {
	switch s {
	case "", "1.3":
		return tls.VersionTLS13, nil
	case "1.2":
		return tls.VersionTLS12, nil
	}
	return 0, fmt.Errorf("TLS minimum version %q: want 1.2 or 1.3 (older versions are not supported)", s)
}

// Server holds the current TLS material and reloads it when the files
// change.
type Server struct {
	cfg Config

	mu        sync.Mutex
	mat       *material
	stamps    [4]secretfile.Stat
	lastCheck time.Time
}

// material is one consistent load of every file.
type material struct {
	cert tls.Certificate
	leaf *x509.Certificate
	pool *x509.CertPool
	cas  []*x509.Certificate
	crls []*x509.RevocationList
}

// reloadEvery bounds how often a handshake stats the files.
const reloadEvery = time.Second

// New loads the material; an unreadable or inconsistent file is an error.
// An expired server certificate is not: leafd serves (and warns) so that
// an operator can still reach the unix socket and fix it.
func New(cfg Config) (*Server, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" || cfg.ClientCAFile == "" {
		return nil, errors.New("tls: certFile, keyFile and clientCAFile are all required")
	}
	if cfg.MinVersion < tls.VersionTLS12 {
		return nil, errors.New("tls: minimum version below 1.2 is not supported")
	}
	s := &Server{cfg: cfg}
	s.stamps = s.stat()
	m, err := load(cfg)
	if err != nil {
		return nil, err
	}
	s.install(m)
	return s, nil
}

// TLSConfig returns the listener's config. Each handshake gets the
// current material through GetConfigForClient.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: s.cfg.MinVersion,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.handshakeConfig(s.current()), nil
		},
	}
}

func (s *Server) handshakeConfig(m *material) *tls.Config {
	clientAuth := tls.VerifyClientCertIfGiven
	if s.cfg.RequireClientCert {
		clientAuth = tls.RequireAndVerifyClientCert
	}
	return &tls.Config{
		MinVersion:   s.cfg.MinVersion,
		Certificates: []tls.Certificate{m.cert},
		// ClientCAs is the only root pool the client's chain is verified
		// against; the system pool is never consulted.
		ClientCAs:  m.pool,
		ClientAuth: clientAuth,
		NextProtos: []string{"http/1.1"},
		VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
			return s.verifyPeer(m, chains)
		},
	}
}

// verifyPeer runs after crypto/tls verified the chain to the bundle: it
// checks revocation and records the certificate for expiry warnings.
func (s *Server) verifyPeer(m *material, chains [][]*x509.Certificate) error {
	if len(chains) == 0 {
		return nil // no certificate (allowed only when tokens may be used)
	}
	if err := s.checkChains(m, chains); err != nil {
		return err
	}
	if s.cfg.Watcher != nil {
		s.cfg.Watcher.SeenClient(chains[0][0])
	}
	return nil
}

// requireClientAuth refuses a client certificate that does not name
// clientAuth among its extended key usages. crypto/x509 treats a
// certificate without the extension as good for every use; leafd does
// not: a server or code-signing certificate from the same CA must not log
// in.
func requireClientAuth(c *x509.Certificate) error {
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth {
			return nil
		}
	}
	return fmt.Errorf("client certificate %q has no clientAuth extended key usage", c.Subject)
}

// Recheck verifies a client certificate chain the handshake accepted
// against the material in force now: the CA bundle and CRL as reloaded
// since, the clientAuth usage, the validity period. It lets a request on
// a kept-alive connection, or a long stream, end when the certificate no
// longer holds.
func (s *Server) Recheck(chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("no client certificate")
	}
	m := s.current()
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	chains, err := chain[0].Verify(x509.VerifyOptions{Roots: m.pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return fmt.Errorf("client certificate no longer verifies: %w", err)
	}
	return s.checkChains(m, chains)
}

// checkChains is what leafd adds to crypto/x509's verification of a
// client's chains, at the handshake and on every recheck: the clientAuth
// usage, a fresh CRL if required, and revocation.
func (s *Server) checkChains(m *material, chains [][]*x509.Certificate) error {
	if err := requireClientAuth(chains[0][0]); err != nil {
		return err
	}
	if err := s.checkFresh(m); err != nil {
		return err
	}
	for _, c := range chains {
		if err := checkRevoked(m.crls, c); err != nil {
			return err
		}
	}
	return nil
}

// checkFresh refuses client certificates while a CRL is stale, if so
// configured.
func (s *Server) checkFresh(m *material) error {
	if !s.cfg.RefuseStaleCRL {
		return nil
	}
	now := time.Now()
	for _, c := range m.crls {
		if stale(c, now) {
			return fmt.Errorf("the CRL of %q is stale (nextUpdate %s passed) and refuseStaleCRL is set", c.Issuer, c.NextUpdate.Format(time.RFC3339))
		}
	}
	return nil
}

// current returns the material, reloading it first if a file changed.
func (s *Server) current() *material {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.lastCheck) >= reloadEvery {
		s.reloadLocked()
	}
	return s.mat
}

// Reload re-reads the files if any changed. A failed reload keeps the
// previous material (a half-written file must not take the listener down)
// and returns the error.
func (s *Server) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadLocked()
}

func (s *Server) reloadLocked() error {
	s.lastCheck = time.Now()
	stamps := s.stat()
	if stamps == s.stamps {
		return nil
	}
	s.stamps = stamps
	m, err := load(s.cfg)
	if err != nil {
		s.log().Error("TLS reload failed; keeping the previous certificates", "error", err)
		return err
	}
	s.installLocked(m)
	s.log().Info("TLS material reloaded", "cert", s.cfg.CertFile, "ca", s.cfg.ClientCAFile, "crl", s.cfg.CRLFile, "not_after", m.leaf.NotAfter)
	return nil
}

func (s *Server) install(m *material) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.installLocked(m)
}

func (s *Server) installLocked(m *material) {
	s.mat = m
	if s.cfg.Watcher != nil {
		s.cfg.Watcher.SetServer(m.leaf, m.cas)
		s.cfg.Watcher.SetCRLs(m.crls)
	}
}

func (s *Server) log() *slog.Logger {
	if s.cfg.Logger != nil {
		return s.cfg.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// stat tells whether a file changed; what is loaded is read and checked
// by secretfile.
func (s *Server) stat() [4]secretfile.Stat {
	var out [4]secretfile.Stat
	for i, p := range []string{s.cfg.CertFile, s.cfg.KeyFile, s.cfg.ClientCAFile, s.cfg.CRLFile} {
		if p == "" {
			continue
		}
		out[i], _ = secretfile.StatPath(p)
	}
	return out
}

func load(cfg Config) (*material, error) {
	certPEM, err := secretfile.Read(cfg.CertFile, secretfile.Public)
	if err != nil {
		return nil, fmt.Errorf("tls: server certificate: %w", err)
	}
	keyPEM, err := secretfile.Read(cfg.KeyFile, secretfile.Private)
	if err != nil {
		return nil, fmt.Errorf("tls: server key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM.Data, keyPEM.Data)
	if err != nil {
		return nil, fmt.Errorf("tls: server certificate %s / key %s: %w", cfg.CertFile, cfg.KeyFile, err)
	}
	m := &material{cert: cert, leaf: cert.Leaf}
	m.cas, err = loadCAs(cfg.ClientCAFile)
	if err != nil {
		return nil, err
	}
	m.pool = x509.NewCertPool()
	for _, c := range m.cas {
		m.pool.AddCert(c)
	}
	if cfg.CRLFile != "" {
		if m.crls, err = loadCRLs(cfg.CRLFile, m.cas); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func loadCAs(path string) ([]*x509.Certificate, error) {
	f, err := secretfile.Read(path, secretfile.Public)
	if err != nil {
		return nil, fmt.Errorf("tls: client CA bundle: %w", err)
	}
	data := f.Data
	var cas []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tls: client CA bundle %s: %w", path, err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("tls: client CA bundle %s: %q is not a CA certificate", path, c.Subject)
		}
		cas = append(cas, c)
	}
	if len(cas) == 0 {
		return nil, fmt.Errorf("tls: client CA bundle %s holds no PEM certificate", path)
	}
	return cas, nil
}
