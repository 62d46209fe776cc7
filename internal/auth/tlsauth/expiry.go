package tlsauth

import (
	"context"
	"crypto/x509"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/auth"
)

// Certificate kinds, the values of the metric's kind label.
const (
	KindServer = "server"
	KindCA     = "ca"
	KindClient = "client"
)

// DefaultMaxClients caps the client certificates watched (the most
// recently seen), so the metric's label values stay bounded.
const DefaultMaxClients = 50

// Watcher knows the server certificate, the CA bundle and the client
// certificates seen, warns about those inside the warning window, and
// exports the seconds each has left. It never stops leafd: an expired
// certificate is logged and shown, not fatal.
type Watcher struct {
	Window     time.Duration
	MaxClients int
	Logger     *slog.Logger
	Now        func() time.Time

	mu      sync.Mutex
	server  *x509.Certificate
	cas     []*x509.Certificate
	crls    []*x509.RevocationList
	clients map[string]*seenClient
}

type seenClient struct {
	notAfter time.Time
	lastSeen time.Time
}

var (
	descExpiry = prometheus.NewDesc("leaf_tls_cert_expiry_seconds",
		"Seconds until a certificate expires (negative once expired), by kind (server, ca) and subject.",
		[]string{"kind", "subject"}, nil)
	// Clients are not named: /metrics answers anyone, and who talks to
	// leafd (the admin's SPIFFE ID among them) is not for anyone.
	descClientExpiry = prometheus.NewDesc("leaf_tls_client_cert_expiry_min_seconds",
		"Seconds until the soonest-expiring of the recently seen client certificates expires (negative once expired); their names are in leafd's log.",
		nil, nil)
	descClientsExpiring = prometheus.NewDesc("leaf_tls_client_certs_expiring",
		"Recently seen client certificates with less time left than the warning window (expired ones included).",
		nil, nil)
	descCRLNextUpdate = prometheus.NewDesc("leaf_tls_crl_next_update_seconds",
		"Seconds until the CRL's nextUpdate (negative once it has passed and the CRL is stale), by issuer.",
		[]string{"issuer"}, nil)
	descWindow = prometheus.NewDesc("leaf_tls_cert_warning_window_seconds",
		"The expiry warning window: leafd warns about certificates with less time left than this.", nil, nil)
)

func (w *Watcher) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *Watcher) log() *slog.Logger {
	if w.Logger != nil {
		return w.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// SetServer records the loaded server certificate and CA bundle and checks
// them at once, so a reload of an expiring certificate warns immediately.
func (w *Watcher) SetServer(leaf *x509.Certificate, cas []*x509.Certificate) {
	w.mu.Lock()
	w.server, w.cas = leaf, cas
	w.mu.Unlock()
	w.warn(KindServer, leaf)
	for _, ca := range cas {
		w.warn(KindCA, ca)
	}
}

// SetCRLs records the CRLs in force and warns at once about a stale one.
func (w *Watcher) SetCRLs(crls []*x509.RevocationList) {
	w.mu.Lock()
	w.crls = crls
	w.mu.Unlock()
	w.warnCRLs()
}

func (w *Watcher) warnCRLs() {
	w.mu.Lock()
	crls := w.crls
	w.mu.Unlock()
	now := w.now()
	for _, c := range crls {
		if stale(c, now) {
			w.log().Warn("CRL is stale: its nextUpdate has passed; revocations since are unknown to leafd", "issuer", c.Issuer.String(), "next_update", c.NextUpdate)
		}
	}
}

// stale reports whether a CRL's nextUpdate has passed (a CRL without one
// never goes stale).
func stale(c *x509.RevocationList, now time.Time) bool {
	return !c.NextUpdate.IsZero() && now.After(c.NextUpdate)
}

// SeenClient records a verified client certificate, warning the first time
// one inside the window is seen.
func (w *Watcher) SeenClient(cert *x509.Certificate) {
	subject := clientSubject(cert)
	now := w.now()
	w.mu.Lock()
	if w.clients == nil {
		w.clients = map[string]*seenClient{}
	}
	c, known := w.clients[subject]
	if !known {
		c = &seenClient{}
		w.clients[subject] = c
	}
	renewed := c.notAfter != cert.NotAfter
	c.notAfter, c.lastSeen = cert.NotAfter, now
	w.evictLocked()
	w.mu.Unlock()
	if renewed {
		w.warn(KindClient, cert)
	}
}

// evictLocked forgets the least recently seen clients beyond the cap.
func (w *Watcher) evictLocked() {
	max := w.MaxClients
	if max <= 0 {
		max = DefaultMaxClients
	}
	for len(w.clients) > max {
		oldest := ""
		for s, c := range w.clients {
			if oldest == "" || c.lastSeen.Before(w.clients[oldest].lastSeen) {
				oldest = s
			}
		}
		delete(w.clients, oldest)
	}
}

func clientSubject(cert *x509.Certificate) string {
	if sans := auth.SANs(cert); len(sans) > 0 {
		return sans[0].Raw
	}
	return cert.Subject.String()
}

func certSubject(cert *x509.Certificate) string {
	if cert.Subject.CommonName != "" {
		return cert.Subject.CommonName
	}
	return clientSubject(cert)
}

// Check warns about every certificate inside the window.
func (w *Watcher) Check() {
	w.mu.Lock()
	server, cas := w.server, w.cas
	w.mu.Unlock()
	if server != nil {
		w.warn(KindServer, server)
	}
	for _, ca := range cas {
		w.warn(KindCA, ca)
	}
	for _, c := range w.clientList() {
		w.warnTimes(KindClient, c.subject, c.notAfter)
	}
	w.warnCRLs()
}

func (w *Watcher) warn(kind string, cert *x509.Certificate) {
	subject := certSubject(cert)
	if kind == KindClient {
		subject = clientSubject(cert)
	}
	w.warnTimes(kind, subject, cert.NotAfter)
}

func (w *Watcher) warnTimes(kind, subject string, notAfter time.Time) {
	left := notAfter.Sub(w.now())
	switch {
	case left <= 0:
		w.log().Error("certificate expired", "kind", kind, "subject", subject, "not_after", notAfter, "seconds_left", int64(left.Seconds()))
	case left < w.Window:
		w.log().Warn("certificate expires soon", "kind", kind, "subject", subject, "not_after", notAfter, "seconds_left", int64(left.Seconds()), "window", w.Window)
	}
}

type clientEntry struct {
	subject  string
	notAfter time.Time
}

func (w *Watcher) clientList() []clientEntry {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]clientEntry, 0, len(w.clients))
	for s, c := range w.clients {
		out = append(out, clientEntry{s, c.notAfter})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].subject < out[j].subject })
	return out
}

// Run checks at start and then every interval until ctx is done. reload,
// if not nil, runs first each time, so certificates changed on disk are
// picked up even when no client connects.
func (w *Watcher) Run(ctx context.Context, interval time.Duration, reload func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if reload != nil {
			reload()
		}
		w.Check()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Describe implements prometheus.Collector.
func (w *Watcher) Describe(ch chan<- *prometheus.Desc) {
	ch <- descExpiry
	ch <- descWindow
	ch <- descClientExpiry
	ch <- descClientsExpiring
	ch <- descCRLNextUpdate
}

// Collect implements prometheus.Collector: the seconds left are computed
// at scrape time.
func (w *Watcher) Collect(ch chan<- prometheus.Metric) {
	now := w.now()
	gauge := func(kind, subject string, notAfter time.Time) {
		ch <- prometheus.MustNewConstMetric(descExpiry, prometheus.GaugeValue, notAfter.Sub(now).Seconds(), kind, subject)
	}
	w.mu.Lock()
	server, cas := w.server, w.cas
	w.mu.Unlock()
	if server != nil {
		gauge(KindServer, certSubject(server), server.NotAfter)
	}
	seen := map[string]bool{}
	for _, ca := range cas {
		// Two CAs with one name would collide as one series: keep the first.
		if s := certSubject(ca); !seen[s] {
			seen[s] = true
			gauge(KindCA, s, ca.NotAfter)
		}
	}
	if c := w.clientSummary(now); c != nil {
		ch <- prometheus.MustNewConstMetric(descClientExpiry, prometheus.GaugeValue, c.SoonestExpiry.Sub(now).Seconds())
		ch <- prometheus.MustNewConstMetric(descClientsExpiring, prometheus.GaugeValue, float64(c.Expiring))
	}
	w.mu.Lock()
	crls := w.crls
	w.mu.Unlock()
	seenIssuer := map[string]bool{}
	for _, c := range crls {
		if issuer := c.Issuer.String(); !c.NextUpdate.IsZero() && !seenIssuer[issuer] {
			seenIssuer[issuer] = true
			ch <- prometheus.MustNewConstMetric(descCRLNextUpdate, prometheus.GaugeValue, c.NextUpdate.Sub(now).Seconds(), issuer)
		}
	}
	ch <- prometheus.MustNewConstMetric(descWindow, prometheus.GaugeValue, w.Window.Seconds())
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Certificates reports the server certificate, the CA bundle and a
// summary of the recently seen clients (not named: see
// descClientExpiry), with the time each has left.
func (w *Watcher) Certificates() v1.Certificates {
	now := w.now()
	out := v1.Certificates{TLS: true, WarningWindow: w.Window.Seconds(), Certificates: []v1.Certificate{}}
	add := func(kind string, c *x509.Certificate) {
		left := c.NotAfter.Sub(now)
		out.Certificates = append(out.Certificates, v1.Certificate{Kind: kind, Subject: certSubject(c), NotAfter: c.NotAfter,
			SecondsLeft: left.Seconds(), Warning: left < w.Window})
	}
	w.mu.Lock()
	server, cas := w.server, w.cas
	w.mu.Unlock()
	if server != nil {
		add(KindServer, server)
	}
	for _, ca := range cas {
		add(KindCA, ca)
	}
	out.Clients = w.clientSummary(now)
	return out
}

// clientSummary is the soonest expiry of the recently seen client
// certificates and how many are inside the window; nil if none was seen.
func (w *Watcher) clientSummary(now time.Time) *v1.ClientCertificates {
	clients := w.clientList()
	if len(clients) == 0 {
		return nil
	}
	sum := &v1.ClientCertificates{Seen: len(clients), SoonestExpiry: clients[0].notAfter}
	for _, c := range clients {
		sum.SoonestExpiry = minTime(sum.SoonestExpiry, c.notAfter)
		if c.notAfter.Sub(now) < w.Window {
			sum.Expiring++
		}
	}
	return sum
}
