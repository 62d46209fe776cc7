package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/auth"
	"github.com/leaf-ebpf/leaf/internal/auth/token"
	"github.com/leaf-ebpf/leaf/internal/server"
	"github.com/leaf-ebpf/leaf/internal/testenv"
	"github.com/leaf-ebpf/leaf/internal/testenv/pki"
)

// secureLeafd is a leafd with every security feature on: socket roles,
// tokens, and the TLS listener with subject rules.
type secureLeafd struct {
	d                  *testenv.Daemon
	ca                 *pki.CA
	dir, keyFile, addr string
	serverCert         string
	caFile             string
	metrics            string
}

// Test identities on the socket. Group 3000 owns the socket (so these
// users can connect at all); the rules below give the roles.
const socketGroup = 3000

func startSecureLeafd(t *testing.T, extraConfig string, args ...string) *secureLeafd {
	t.Helper()
	return startSecureLeafdWithCA(t, pki.NewCA(t, "leaf e2e CA"), extraConfig, args...)
}

// startSecureLeafdWithCA is startSecureLeafd with a CA of the test's,
// for files (a CRL) that must exist before leafd starts.
func startSecureLeafdWithCA(t *testing.T, ca *pki.CA, extraConfig string, args ...string) *secureLeafd {
	t.Helper()
	s := &secureLeafd{dir: t.TempDir(), ca: ca}
	s.keyFile = filepath.Join(s.dir, "token.key")
	if _, err := token.GenerateKeyFile(s.keyFile); err != nil {
		t.Fatal(err)
	}
	srv := s.ca.Issue(t, pki.Options{CN: "leafd", DNS: []string{"leafd.test"}, IPs: []string{"127.0.0.1"}})
	var key string
	s.serverCert, key = srv.Write(t, s.dir, "server")
	s.caFile = filepath.Join(s.dir, "ca.pem")
	pki.WriteFile(t, s.caFile, s.ca.PEM())
	s.addr = fmt.Sprintf("127.0.0.1:%d", metricsPort(t))
	s.metrics = fmt.Sprintf("127.0.0.1:%d", metricsPort(t))
	cfg := fmt.Sprintf(`apiVersion: leaf.dev/v1alpha1
kind: DaemonConfig
socketGroup: "%d"
socketRoles:
  - {user: "2001", role: operator}
  - {group: "3001", role: reader}
tokens: {keyFile: %s}
tls:
  address: %s
  certFile: %s
  keyFile: %s
  clientCAFile: %s
  subjects:
    - {glob: "spiffe://leaf.test/ops/*", role: admin}
    - {exact: operator.leaf.test, role: operator}
    - {type: dns, regex: 'reader-[0-9]+\.leaf\.test', role: reader}
%s`, socketGroup, s.keyFile, s.addr, s.serverCert, key, s.caFile, extraConfig)
	cfgFile := filepath.Join(s.dir, "leafd.yaml")
	os.WriteFile(cfgFile, []byte(cfg), 0o600)
	s.d = testenv.StartDaemon(t, testenv.DaemonOptions{
		Socket: filepath.Join(testenv.SharedDir(t), "leafd.sock"),
		Args:   append([]string{"--config", cfgFile, "--metrics-address", s.metrics}, args...),
	})
	return s
}

// tlsClient is an HTTP client of the TLS listener with an optional client
// certificate, sent whatever CAs the server names.
func (s *secureLeafd) tlsClient(cert *pki.Leaf) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(s.ca.Cert)
	conf := &tls.Config{RootCAs: roots, ServerName: "leafd.test"}
	if cert != nil {
		c := tls.Certificate{Certificate: [][]byte{cert.Cert.Raw}, PrivateKey: cert.Key}
		for _, ic := range cert.Chain {
			c.Certificate = append(c.Certificate, ic.Raw)
		}
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: conf}}
}

func (s *secureLeafd) issue(t *testing.T, subject, role string) v1.IssuedToken {
	t.Helper()
	tok, err := s.d.Client.IssueToken(ctx(t), v1.TokenRequest{Subject: subject, Role: role, TTL: "1h"})
	if err != nil {
		t.Fatalf("issue token: %v", err)
	}
	return *tok
}

// call is one endpoint of the route table made concrete.
type call struct {
	method, path, body string
	need               auth.Role
	ok                 int
	// prepare runs before the call (as root) and may return the path.
	prepare func(t *testing.T) string
	// restore runs after a successful call (as root).
	restore func(t *testing.T)
}

func (c call) String() string { return c.method + " " + c.path }

// matrixCalls turns every route of the table into calls. A route without
// a recipe fails the test: a new endpoint must join the matrix.
func matrixCalls(t *testing.T, s *secureLeafd, document []byte) []call {
	t.Helper()
	restoreDoc := func(t *testing.T) { apply(t, s.d, document) }
	revocable := func(t *testing.T) string { return v1.PathTokens + "/" + s.issue(t, "throwaway", "reader").Info.ID }
	// The roles are written out here, apart from the table, so a change
	// of an endpoint's role in the table fails this test until it is
	// made on purpose in both places.
	const N, R, O, A = auth.None, auth.Reader, auth.Operator, auth.Admin
	recipes := map[string][]call{
		"GET /healthz":                          {{path: "/healthz", need: N}},
		"GET /readyz":                           {{path: "/readyz", need: N}},
		"GET /v1/events":                        {{path: "/v1/events", need: R}},
		"GET /v1/whoami":                        {{path: "/v1/whoami", need: N}},
		"GET /console/":                         {{path: "/console/", need: R}},
		"GET /v1/history":                       {{path: "/v1/history", need: R}},
		"GET /v1/certificates":                  {{path: "/v1/certificates", need: R}},
		"GET /v1/state":                         {{path: "/v1/state", need: R}},
		"PUT /v1/state":                         {{path: "/v1/state?dryRun=true", body: string(document), need: O}, {path: "/v1/state", body: string(document), need: A}},
		"GET /v1/status":                        {{path: "/v1/status", need: R}},
		"DELETE /v1/attachments/{name}":         {{path: "/v1/attachments/filter?dryRun=true", need: O}, {path: "/v1/attachments/filter", restore: restoreDoc, need: A}},
		"GET /v1/attachments/{name}/maps":       {{path: "/v1/attachments/filter/maps", need: R}},
		"GET /v1/attachments/{name}/maps/{map}": {{path: "/v1/attachments/filter/maps/blocked_ports", need: R}},
		// A hash map is no ring buffer: 422 once the role is enough.
		"GET /v1/attachments/{name}/maps/{map}/records": {{path: "/v1/attachments/filter/maps/blocked_ports/records", ok: 422, need: O}},
		"GET /v1/packages":                    {{path: "/v1/packages", need: R}},
		"GET /v1/stats":                       {{path: "/v1/stats", need: R}},
		"PUT /v1/stats":                       {{path: "/v1/stats", body: `{"enabled":false}`, need: O}},
		"GET /v1/tokens":                      {{path: "/v1/tokens", need: A}},
		"POST /v1/tokens":                     {{path: "/v1/tokens", body: `{"subject":"matrix","role":"reader","ttl":"1h"}`, ok: 201, need: A}},
		"DELETE /v1/tokens/{id}":              {{prepare: revocable, need: A}},
		"POST /l3af/configs/{version}/add":    {{path: "/l3af/configs/v1/add?dryRun=true", body: "[]", need: O}, {path: "/l3af/configs/v1/add", body: "[]", need: A}},
		"POST /l3af/configs/{version}/update": {{path: "/l3af/configs/v1/update?dryRun=true", body: "[]", need: O}, {path: "/l3af/configs/v1/update", body: "[]", need: A}},
		"POST /l3af/configs/{version}/delete": {{path: "/l3af/configs/v1/delete?dryRun=true", body: "[]", need: O}, {path: "/l3af/configs/v1/delete", body: "[]", need: A}},
		"GET /l3af/configs/{version}":         {{path: "/l3af/configs/v1", need: R}},
		"GET /l3af/configs/{version}/{iface}": {{path: "/l3af/configs/v1/eth0", need: R}},
		"PUT /l3af/configs/{version}/restart": {{path: "/l3af/configs/v1/restart", body: "{}", need: A}},
		" /debug/pprof/":                      {{method: "GET", path: "/debug/pprof/", need: A}},
		" /debug/pprof/cmdline":               {{method: "GET", path: "/debug/pprof/cmdline", need: A}},
		" /debug/pprof/profile":               {{method: "GET", path: "/debug/pprof/profile?seconds=1", need: A}},
		" /debug/pprof/symbol":                {{method: "GET", path: "/debug/pprof/symbol", need: A}},
		" /debug/pprof/trace":                 {{method: "GET", path: "/debug/pprof/trace?seconds=0.05", need: A}},
		" /":                                  {{method: "GET", path: "/no/such/endpoint", ok: 404, need: N}},
	}
	var out []call
	for _, ep := range server.Endpoints() {
		key := ep.Method + " " + ep.Path
		rs, ok := recipes[key]
		if !ok {
			t.Fatalf("route %q has no recipe in the role matrix: add one", key)
		}
		delete(recipes, key)
		for _, c := range rs {
			if c.method == "" {
				c.method = ep.Method
			}
			table := ep.Role
			if strings.Contains(c.path, "dryRun=true") {
				table = ep.DryRunRole
			}
			if table != c.need {
				t.Errorf("%s %s: the route table says role %s, the matrix expects %s", c.method, c.path, table, c.need)
			}
			if c.ok == 0 {
				c.ok = 200
			}
			out = append(out, c)
		}
	}
	for k := range recipes {
		t.Errorf("recipe %q matches no route of the table", k)
	}
	return out
}

// caller is one identity of the matrix and how it makes a request.
type caller struct {
	name          string
	role          auth.Role
	authenticated bool
	// badToken callers are refused everywhere with 401.
	badToken bool
	do       func(t *testing.T, method, path, body string) (int, string)
}

func (c caller) want(need auth.Role, ok int) int {
	switch {
	case c.badToken:
		return 401
	case c.role.Allows(need):
		return ok
	case !c.authenticated:
		return 401
	}
	return 403
}

func socketCaller(s *secureLeafd, name string, role auth.Role, cred *syscall.Credential, tok string) caller {
	return caller{name: name, role: role, authenticated: true, do: func(t *testing.T, method, path, body string) (int, string) {
		a := testenv.AsUser(t, cred, s.d.Socket, method, path, body, tok)
		if a.Error != "" {
			t.Fatalf("%s: %s %s: %s", name, method, path, a.Error)
		}
		return a.Code, a.Body
	}}
}

func tlsCaller(s *secureLeafd, name string, role auth.Role, cert *pki.Leaf, tok string) caller {
	hc := s.tlsClient(cert)
	return caller{name: name, role: role, authenticated: cert != nil || tok != "", do: func(t *testing.T, method, path, body string) (int, string) {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequestWithContext(ctx(t), method, "https://"+s.addr+path, rd)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s: %s %s: %v", name, method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}}
}

func cred(uid, gid uint32, groups ...uint32) *syscall.Credential {
	return &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}
}

// TestRoleMatrix walks every endpoint of the route table with every kind
// of caller, on the unix socket (different uids, groups, tokens) and on
// the TLS listener (certificates matching each subject rule, certificates
// matching none, tokens, nothing): every allowed call succeeds, every
// other is a 401 (not authenticated) or a 403 naming the missing role.
func TestRoleMatrix(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	p := testenv.NewPair(t)
	s := startSecureLeafd(t, "")
	document := doc(portFilter(p, "filter", "1.0.0", 7001))
	apply(t, s.d, document)

	admin, operator, reader := s.issue(t, "admin-bot", "admin"), s.issue(t, "operator-bot", "operator"), s.issue(t, "reader-bot", "reader")
	revoked := s.issue(t, "revoked-bot", "admin")
	if _, err := s.d.Client.RevokeToken(ctx(t), revoked.Info.ID); err != nil {
		t.Fatal(err)
	}
	cert := func(dns, uri string) *pki.Leaf {
		o := pki.Options{}
		if dns != "" {
			o.DNS = []string{dns}
		}
		if uri != "" {
			o.URIs = []string{uri}
		}
		return s.ca.Issue(t, o)
	}
	callers := []caller{
		socketCaller(s, "socket root", auth.Admin, cred(0, 0), ""),
		socketCaller(s, "socket uid 2001 (user rule)", auth.Operator, cred(2001, 2001, socketGroup), ""),
		socketCaller(s, "socket uid 2002 (supplementary group rule)", auth.Reader, cred(2002, 2002, socketGroup, 3001), ""),
		socketCaller(s, "socket uid 2003 (primary group rule)", auth.Reader, cred(2003, 3001, socketGroup), ""),
		socketCaller(s, "socket uid 2004 (no rule)", auth.None, cred(2004, 2004, socketGroup), ""),
		socketCaller(s, "socket uid 2004 with admin token", auth.Admin, cred(2004, 2004, socketGroup), admin.Token),
		socketCaller(s, "socket uid 2004 with reader token", auth.Reader, cred(2004, 2004, socketGroup), reader.Token),
		tlsCaller(s, "cert SPIFFE admin (glob)", auth.Admin, cert("", "spiffe://leaf.test/ops/alice"), ""),
		tlsCaller(s, "cert operator (exact)", auth.Operator, cert("operator.leaf.test", ""), ""),
		tlsCaller(s, "cert reader (regex)", auth.Reader, cert("reader-7.leaf.test", ""), ""),
		tlsCaller(s, "cert matching only an unanchored regex", auth.None, cert("reader-7.leaf.test.evil.example", ""), ""),
		tlsCaller(s, "cert with a SAN no rule matches", auth.None, cert("intruder.leaf.test", "spiffe://leaf.test/ops/alice/../x"), ""),
		tlsCaller(s, "token admin", auth.Admin, nil, admin.Token),
		tlsCaller(s, "token operator", auth.Operator, nil, operator.Token),
		tlsCaller(s, "token reader", auth.Reader, nil, reader.Token),
		tlsCaller(s, "nothing", auth.None, nil, ""),
	}
	bad := tlsCaller(s, "revoked token", auth.None, nil, revoked.Token)
	bad.badToken = true
	garbage := socketCaller(s, "socket root with a garbage token", auth.None, cred(0, 0), "not.a.token")
	garbage.badToken = true
	callers = append(callers, bad, garbage)

	calls := matrixCalls(t, s, document)
	for _, cl := range callers {
		t.Run(cl.name, func(t *testing.T) {
			for _, c := range calls {
				path := c.path
				if c.prepare != nil {
					path = c.prepare(t)
				}
				want := cl.want(c.need, c.ok)
				code, body := cl.do(t, c.method, path, c.body)
				if code != want {
					t.Errorf("%s %s: %d, want %d (needs %s): %s", c.method, path, code, want, c.need, body)
					continue
				}
				if code == 403 && !strings.Contains(body, "needs role "+c.need.String()) {
					t.Errorf("%s %s: 403 does not name the missing role %s: %s", c.method, path, c.need, body)
				}
				if code < 300 && c.restore != nil {
					c.restore(t)
				}
			}
		})
	}
	// Audit: one line per request, with who, role, request and result.
	logs := s.d.Logs()
	for _, want := range []string{
		`msg=audit via=unix subject="uid=2001" san="" role=operator method=PUT path=/v1/state code=403`,
		`msg=audit via=cert subject=spiffe://leaf.test/ops/alice san=URI:spiffe://leaf.test/ops/alice role=admin method=PUT path=/v1/state code=200`,
		`msg=audit via=token subject=reader-bot san="" role=reader method=GET path=/v1/status code=200`,
		`msg=audit via=none subject=anonymous san="" role=none method=GET path=/v1/status code=401`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("audit log lacks %q", want)
		}
	}
	// A user outside the socket's group cannot even connect.
	a := testenv.AsUser(t, cred(2005, 2005), s.d.Socket, "GET", "/healthz", "", "")
	if a.Error == "" || !strings.Contains(a.Error, "permission denied") {
		t.Errorf("uid 2005 outside group %d: %+v, want permission denied", socketGroup, a)
	}
}

// TestTLSClientCertificates: leafd's TLS listener refuses, at the
// handshake, certificates that are expired, not yet valid, from another
// CA, chained to a root outside the bundle (as a public CA's would be), or
// revoked by the CRL.
func TestTLSClientCertificates(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	s := startSecureLeafd(t, "")
	now := time.Now()
	publicRoot := pki.NewCA(t, "Public Root")
	revoked := s.ca.Issue(t, pki.Options{DNS: []string{"reader-2.leaf.test"}})
	good := s.ca.Issue(t, pki.Options{DNS: []string{"reader-1.leaf.test"}})
	// The CRL arrives while leafd runs: picked up without a restart.
	crl := filepath.Join(s.dir, "ca.crl")
	pki.WriteFile(t, crl, s.ca.CRL(t, revoked))
	s.d.Stop()
	s.d.Args = append(s.d.Args, "--tls-crl", crl)
	s.d.Restart()
	cases := map[string]*pki.Leaf{
		"expired":       s.ca.Issue(t, pki.Options{DNS: []string{"reader-1.leaf.test"}, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)}),
		"not yet valid": s.ca.Issue(t, pki.Options{DNS: []string{"reader-1.leaf.test"}, NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)}),
		"wrong CA":      pki.NewCA(t, "leaf e2e CA").Issue(t, pki.Options{DNS: []string{"reader-1.leaf.test"}}),
		"public chain":  publicRoot.Intermediate(t, "Public Issuing CA").Issue(t, pki.Options{DNS: []string{"reader-1.leaf.test"}}),
		"revoked":       revoked,
		"no EKU":        s.ca.Issue(t, pki.Options{DNS: []string{"reader-1.leaf.test"}, NoEKU: true}),
	}
	for name, cert := range cases {
		resp, err := s.tlsClient(cert).Get("https://" + s.addr + "/v1/status")
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s: answered %s, want a refused handshake", name, resp.Status)
		}
	}
	resp, err := s.tlsClient(good).Get("https://" + s.addr + "/v1/whoami")
	if err != nil {
		t.Fatalf("good certificate: %v", err)
	}
	var w v1.Whoami
	json.NewDecoder(resp.Body).Decode(&w)
	resp.Body.Close()
	if w.Via != "cert" || w.Subject != "reader-1.leaf.test" || w.Role != "reader" {
		t.Errorf("whoami %+v", w)
	}
	logs := s.d.Logs()
	for _, want := range []string{"TLS handshake error", "revoked by the CRL", "certificate has expired or is not yet valid", "unknown authority", "no clientAuth extended key usage"} {
		if !strings.Contains(logs, want) {
			t.Errorf("leafd log lacks %q", want)
		}
	}

	// Near misses of the admin rule (glob spiffe://leaf.test/ops/*) by SAN
	// type, case and fragment get no role; the real one is admin, and the
	// audit line shows its SAN raw.
	for san, want := range map[string]int{
		"URI:spiffe://leaf.test/ops/alice":  http.StatusOK,
		"URI:spiffe://leaf.test/ops/alice#": http.StatusForbidden,
		"URI:SPIFFE://leaf.test/ops/alice":  http.StatusForbidden,
		"URI:spiffe://LEAF.test/ops/alice":  http.StatusForbidden,
		"DNS:spiffe://leaf.test/ops/alice":  http.StatusForbidden,
	} {
		resp, err := s.tlsClient(s.ca.Issue(t, pki.Options{CN: "x", RawSANs: []string{san}})).Get("https://" + s.addr + "/v1/status")
		if err != nil {
			t.Errorf("%s: %v", san, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %s, want %d", san, resp.Status, want)
		}
	}
	if logs := s.d.Logs(); !strings.Contains(logs, `san=URI:spiffe://leaf.test/ops/alice# role=none`) || !strings.Contains(logs, `san=URI:spiffe://leaf.test/ops/alice role=admin`) {
		t.Errorf("audit lines lack the raw SANs:\n%s", logs)
	}
}
