package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/internal/auth/token"
	"github.com/leaf-ebpf/leaf/internal/testenv"
	"github.com/leaf-ebpf/leaf/internal/testenv/pki"
)

// runLeaf runs the leaf binary with env (besides a clean LEAF_*).
func runLeaf(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(c, filepath.Join(testenv.Binaries(t), "leaf"), args...)
	cmd.Env = append(os.Environ(), "LEAF_SOCKET=", "LEAF_SERVER=", "LEAF_TOKEN=", "LEAF_CONFIG="+filepath.Join(t.TempDir(), "none.yaml"))
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestTokensCLI issues, uses, lists and revokes tokens with the leaf
// command, reaches leafd over TLS with a token and with a client
// certificate through client-config contexts, and rotates the signing
// key: every older token stops working.
func TestTokensCLI(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	s := startSecureLeafd(t, "")
	sock := []string{"--socket", s.d.Socket}
	r := runLeaf(t, nil, append(sock, "token", "issue", "--subject", "ci", "--role", "operator", "--ttl", "2h")...)
	if r.Code != 0 {
		t.Fatalf("token issue: %+v", r)
	}
	tok := strings.TrimSpace(r.Stdout)
	tokFile := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(tokFile, []byte(tok+"\n"), 0o600)
	remote := []string{"--server", "https://" + s.addr, "--ca", s.caFile}

	// A token over TLS, without a client certificate.
	r = runLeaf(t, nil, append(remote, "--token-file", tokFile, "whoami")...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "subject: ci\nvia: token\nrole: operator") {
		t.Fatalf("whoami with the token: %+v", r)
	}
	r = runLeaf(t, nil, append(remote, "--token-file", tokFile, "stats", "on")...)
	if r.Code != 0 {
		t.Errorf("operator: stats on: %+v", r)
	}
	r = runLeaf(t, []string{"LEAF_TOKEN=" + tok}, append(remote, "apply", "-f", "-")...)
	if r.Code != 3 || !strings.Contains(r.Stderr, "needs role admin") {
		t.Errorf("operator applying: exit %d %q, want 3 and a 403 naming admin", r.Code, r.Stderr)
	}
	r = runLeaf(t, nil, append(sock, "token", "list")...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "ci") || !strings.Contains(r.Stdout, "valid") {
		t.Errorf("token list: %+v", r)
	}

	// Contexts: one over TLS with a client certificate, one on the socket.
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	env := []string{"LEAF_CONFIG=" + cfgFile}
	certFile, keyFile := s.ca.Issue(t, pki.Options{URIs: []string{"spiffe://leaf.test/ops/bob"}}).Write(t, t.TempDir(), "bob")
	for _, args := range [][]string{
		{"config", "set-context", "remote", "--server", "https://" + s.addr, "--ca", s.caFile, "--client-cert", certFile, "--client-key", keyFile},
		{"config", "set-context", "local", "--socket", s.d.Socket},
		{"config", "use-context", "remote"},
	} {
		if r := runLeaf(t, env, args...); r.Code != 0 {
			t.Fatalf("leaf %v: %+v", args, r)
		}
	}
	if fi, _ := os.Stat(cfgFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("client config mode %04o, want 0600", fi.Mode().Perm())
	}
	if r := runLeaf(t, env, "whoami"); r.Code != 0 || !strings.Contains(r.Stdout, "subject: spiffe://leaf.test/ops/bob\nvia: cert\nrole: admin") {
		t.Errorf("whoami through the remote context: %+v", r)
	}
	if r := runLeaf(t, env, "--context", "local", "whoami"); r.Code != 0 || !strings.Contains(r.Stdout, "via: unix\nrole: admin") {
		t.Errorf("whoami through the local context: %+v", r)
	}
	if r := runLeaf(t, env, "config", "view"); r.Code != 0 || !strings.Contains(r.Stdout, "currentContext: remote") {
		t.Errorf("config view: %+v", r)
	}
	if r := runLeaf(t, env, "config", "use-context", "nope"); r.Code == 0 || !strings.Contains(r.Stderr, `no context "nope"`) {
		t.Errorf("use-context of an unknown context: %+v", r)
	}

	// Revoke: the token is refused from now on.
	var id string
	for _, line := range strings.Split(runLeaf(t, nil, append(sock, "token", "list")...).Stdout, "\n") {
		if strings.Contains(line, " ci ") {
			id = strings.Fields(line)[0]
		}
	}
	if r := runLeaf(t, nil, append(sock, "token", "revoke", id)...); r.Code != 0 {
		t.Fatalf("revoke: %+v", r)
	}
	r = runLeaf(t, nil, append(remote, "--token-file", tokFile, "status")...)
	if r.Code != 3 || !strings.Contains(r.Stderr, "revoked") {
		t.Errorf("revoked token: exit %d %q, want 3 and revoked", r.Code, r.Stderr)
	}
	// Token IDs are half of what a forger needs: leafd says them at debug
	// level only (the audit line of the admin's own DELETE names it).
	for _, line := range strings.Split(s.d.Logs(), "\n") {
		if id == "" || strings.Contains(line, "level=INFO") && strings.Contains(line, id) && !strings.Contains(line, "path=/v1/tokens/"+id) {
			t.Errorf("token ID %q is empty or in leafd's info log: %s", id, line)
		}
	}
	if r := runLeaf(t, nil, append(sock, "token", "revoke", "no-such-id")...); r.Code != 3 {
		t.Errorf("revoking an unknown token: %+v", r)
	}

	// Rotation: a new key in the file; leafd picks it up at once.
	fresh := strings.TrimSpace(runLeaf(t, nil, append(sock, "token", "issue", "--subject", "before", "--role", "reader")...).Stdout)
	if r := runLeaf(t, nil, "token", "keygen", s.keyFile); r.Code != 0 {
		t.Fatalf("keygen: %+v", r)
	}
	r = runLeaf(t, []string{"LEAF_TOKEN=" + fresh}, append(remote, "status")...)
	if r.Code != 3 || !strings.Contains(r.Stderr, "rotated") {
		t.Errorf("token of the old key: exit %d %q, want 3 and rotated", r.Code, r.Stderr)
	}
	after := strings.TrimSpace(runLeaf(t, nil, append(sock, "token", "issue", "--subject", "after", "--role", "reader")...).Stdout)
	if r := runLeaf(t, []string{"LEAF_TOKEN=" + after}, append(remote, "status")...); r.Code != 0 {
		t.Errorf("token of the new key: %+v", r)
	}
	if out := runLeaf(t, nil, append(sock, "token", "list")...).Stdout; !strings.Contains(out, "stale-key") {
		t.Errorf("token list after rotation shows no stale-key token:\n%s", out)
	}
	// Bad flags change nothing and say what is wrong.
	if r := runLeaf(t, nil, "--server", "http://"+s.addr, "status"); r.Code == 0 || !strings.Contains(r.Stderr, "https://") {
		t.Errorf("plain http server: %+v", r)
	}
}

// TestTokenKeyPermissions: leafd refuses to start when its token key is
// readable by group or others, or is not its own.
func TestTokenKeyPermissions(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	dir := t.TempDir()
	key := filepath.Join(dir, "token.key")
	if _, err := token.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	base := []string{"--state-dir", filepath.Join(dir, "state"), "--bpffs", testenv.BPFFS(t), "--socket", filepath.Join(dir, "s.sock"), "--metrics-address", "", "--token-key-file", key}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
		os.Chmod(key, mode)
		out := testenv.StartDaemonExpectFailure(t, base...)
		if !strings.Contains(out, "group or others") || !strings.Contains(out, key) {
			t.Errorf("mode %04o: leafd said %q, want a refusal naming the key file", mode, out)
		}
	}
	os.Chmod(key, 0o600)
	os.Chown(key, 65534, 65534)
	if out := testenv.StartDaemonExpectFailure(t, base...); !strings.Contains(out, "owned by uid 65534") {
		t.Errorf("key of another user: %q", out)
	}
	os.Chown(key, 0, 0)
	// A directory others can write: they could swap the key under leafd.
	os.Chmod(dir, 0o777)
	if out := testenv.StartDaemonExpectFailure(t, base...); !strings.Contains(out, "directory "+dir+" (mode 0777) is writable by group or others") {
		t.Errorf("key in a world-writable directory: %q", out)
	}
	os.Chmod(dir, 0o700)
	// Through a systemd credential directory.
	cred := t.TempDir()
	if _, err := token.GenerateKeyFile(filepath.Join(cred, "leaf-token")); err != nil {
		t.Fatal(err)
	}
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--token-key-credential", "leaf-token"}, Env: []string{"CREDENTIALS_DIRECTORY=" + cred}})
	if !strings.Contains(d.Logs(), "bearer tokens enabled") {
		t.Errorf("tokens from a systemd credential not enabled:\n%s", d.Logs())
	}
}

// TestCertificateExpiryAndReload: a server certificate 10 days from expiry
// is warned about at start-up and shown in the metric; replacing it on
// disk takes effect without a restart; an expired server certificate at
// start does not stop leafd.
func TestCertificateExpiryAndReload(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	s := startSecureLeafd(t, "", "--cert-check-interval", "1s")
	client := s.ca.Issue(t, pki.Options{DNS: []string{"reader-3.leaf.test"}, NotAfter: time.Now().Add(5 * 24 * time.Hour)})
	serverCert := func() *x509.Certificate {
		var seen *x509.Certificate
		hc := s.tlsClient(client)
		hc.Transport.(*http.Transport).TLSClientConfig.VerifyConnection = func(cs tls.ConnectionState) error {
			seen = cs.PeerCertificates[0]
			return nil
		}
		hc.Transport.(*http.Transport).DisableKeepAlives = true
		resp, err := hc.Get("https://" + s.addr + "/v1/status")
		if err != nil {
			t.Fatalf("TLS request: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("TLS request: %s", resp.Status)
		}
		return seen
	}
	serverCert()
	// Renew the server certificate with one that expires in 10 days.
	short := s.ca.Issue(t, pki.Options{CN: "leafd", DNS: []string{"leafd.test"}, IPs: []string{"127.0.0.1"}, NotAfter: time.Now().Add(10 * 24 * time.Hour)})
	short.Write(t, s.dir, "server")
	waitFor(t, 10*time.Second, "the renewed certificate served", func() bool {
		return serverCert().SerialNumber.Cmp(short.Cert.SerialNumber) == 0
	})
	waitFor(t, 10*time.Second, "expiry warnings in the log", func() bool {
		l := s.d.Logs()
		return strings.Contains(l, `msg="certificate expires soon" kind=server subject=leafd`) &&
			strings.Contains(l, `msg="certificate expires soon" kind=client subject=reader-3.leaf.test`)
	})
	m := scrapeMetrics(t, s.metrics)
	near := func(got, want float64, what string) {
		if got < want-300 || got > want+300 {
			t.Errorf("%s = %v, want about %v", what, got, want)
		}
	}
	near(metricValue(t, m, "leaf_tls_cert_expiry_seconds", map[string]string{"kind": "server", "subject": "leafd"}), (10 * 24 * time.Hour).Seconds(), "server")
	near(metricValue(t, m, "leaf_tls_client_cert_expiry_min_seconds", nil), (5 * 24 * time.Hour).Seconds(), "client")
	// /metrics answers anyone: no client identity in it.
	if raw := string(scrapeRaw(t, s.metrics)); strings.Contains(raw, "reader-3.leaf.test") || strings.Contains(raw, "spiffe://") {
		t.Errorf("client identities in /metrics")
	}
	near(metricValue(t, m, "leaf_tls_cert_expiry_seconds", map[string]string{"kind": "ca", "subject": "leaf e2e CA"}), time.Until(s.ca.Cert.NotAfter).Seconds(), "ca")
	near(metricValue(t, m, "leaf_tls_cert_warning_window_seconds", map[string]string{}), (30 * 24 * time.Hour).Seconds(), "window")

	// Restart with an expired server certificate: leafd runs, says so.
	expired := s.ca.Issue(t, pki.Options{CN: "leafd", DNS: []string{"leafd.test"}, NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	expired.Write(t, s.dir, "server")
	s.d.Stop()
	s.d.Restart()
	if _, err := s.d.Client.Status(ctx(t)); err != nil {
		t.Fatalf("socket with an expired TLS certificate: %v", err)
	}
	if !strings.Contains(s.d.Logs(), `msg="certificate expired" kind=server`) {
		t.Errorf("expired server certificate not logged")
	}
	if v := metricValue(t, scrapeMetrics(t, s.metrics), "leaf_tls_cert_expiry_seconds", map[string]string{"kind": "server", "subject": "leafd"}); v >= 0 {
		t.Errorf("expired certificate: %v seconds left, want < 0", v)
	}
}

// TestRateLimit: mutating calls and expensive reads beyond a caller's
// rate get 429 with Retry-After; cheap reads and other callers are not
// affected.
func TestRateLimit(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	s := startSecureLeafd(t, "rateLimit: {perSecond: 0.1, burst: 2}\n")
	hc := apiHTTP(s.d.Socket)
	for i := range 2 {
		if a := apiRequest(t, hc, "PUT", "/v1/stats", []byte(`{"enabled":false}`)); a.Code != 200 {
			t.Fatalf("call %d within the burst: %d %s", i, a.Code, a.Body)
		}
	}
	req, _ := http.NewRequestWithContext(ctx(t), "PUT", "http://leafd/v1/stats", strings.NewReader(`{"enabled":false}`))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("call over the burst: %s Retry-After %q, want 429 with Retry-After", resp.Status, resp.Header.Get("Retry-After"))
	}
	if a := apiRequest(t, hc, "GET", "/v1/stats", nil); a.Code != 200 {
		t.Errorf("a read while rate-limited: %d", a.Code)
	}
	// Listing packages walks every repository: it spends from the same
	// bucket, so a reader in a loop is limited too.
	if a := apiRequest(t, hc, "GET", "/v1/packages", nil); a.Code != 429 {
		t.Errorf("an expensive read while rate-limited: %d, want 429", a.Code)
	}
	// Another caller has its own bucket.
	if a := testenv.AsUser(t, cred(2001, 2001, socketGroup), s.d.Socket, "PUT", "/v1/stats", `{"enabled":false}`, ""); a.Code != 200 {
		t.Errorf("another caller: %+v", a)
	}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// followUntilEnd opens GET /v1/events?follow=true with client (and a
// bearer token, if given), checks it is answered 200, then reads it in the
// background; the returned channel closes when the stream ends.
func followUntilEnd(t *testing.T, client *http.Client, base, tok string) <-chan struct{} {
	t.Helper()
	c, cancel := context.WithCancel(ctx(t))
	req, _ := http.NewRequestWithContext(c, "GET", base+"/v1/events?follow=true", nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		t.Fatalf("follow: %s", resp.Status)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		client.CloseIdleConnections()
	})
	return done
}

// TestStreamsEndWhenCredentialsGo is issue 10's open stream: a follower
// whose token is revoked, whose token's key is rotated, or whose client
// certificate a new CRL revokes, is cut off within seconds, not when the
// connection happens to drop; a follower whose credentials hold stays.
func TestStreamsEndWhenCredentialsGo(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	bootstrap := t.TempDir()
	ca := pki.NewCA(t, "leaf e2e CA")
	crl := filepath.Join(bootstrap, "clients.crl")
	pki.WriteFile(t, crl, ca.CRL(t))
	s := startSecureLeafdWithCA(t, ca, "", "--tls-crl", crl)
	sock := apiHTTP(s.d.Socket)
	ended := func(what string, done <-chan struct{}) {
		t.Helper()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s: the stream still runs 10 s later", what)
		}
	}

	steady := followUntilEnd(t, sock, "http://leafd", "")
	revoked := s.issue(t, "follower", "reader")
	stream := followUntilEnd(t, sock, "http://leafd", revoked.Token)
	if _, err := s.d.Client.RevokeToken(ctx(t), revoked.Info.ID); err != nil {
		t.Fatal(err)
	}
	ended("token revoked", stream)

	rotated := s.issue(t, "follower-2", "reader")
	stream = followUntilEnd(t, sock, "http://leafd", rotated.Token)
	if _, err := token.GenerateKeyFile(s.keyFile); err != nil {
		t.Fatal(err)
	}
	ended("signing key rotated", stream)

	cert := s.ca.Issue(t, pki.Options{DNS: []string{"reader-7.leaf.test"}})
	stream = followUntilEnd(t, s.tlsClient(cert), "https://"+s.addr, "")
	pki.WriteFile(t, crl, s.ca.CRL(t, cert))
	ended("client certificate revoked by a new CRL", stream)

	select {
	case <-steady:
		t.Error("root's stream on the socket ended, though its credentials hold")
	default:
	}
	if !strings.Contains(s.d.Logs(), "the caller's credentials no longer hold") {
		t.Error("leafd did not log why it ended the streams")
	}
}

// TestProbeDryRunHidesRootOnlyFiles: an operator's dry run of a uprobe
// used to tell a root-only file from a missing one (leafd opens it as
// root). Below admin both get the same answer; an admin still learns
// which; a binary anyone can read plans as before.
func TestProbeDryRunHidesRootOnlyFiles(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	s := startSecureLeafd(t, "")
	hidden := t.TempDir() // 0700, root's
	secret := filepath.Join(hidden, "secret-tool")
	self, _ := os.ReadFile("/bin/true")
	os.WriteFile(secret, self, 0o755)
	missing := filepath.Join(hidden, "no-such-tool")
	body := func(binary string) string {
		return string(doc("name: probe\npackage: callcount@1.0.0\nprogram: count_uprobe\nhook: {type: uprobe, binary: " + binary + ", function: main}"))
	}
	operator := cred(2001, 2001, socketGroup)
	answer := func(binary string) testenv.PeerAnswer {
		return testenv.AsUser(t, operator, s.d.Socket, "PUT", "/v1/state?dryRun=true", body(binary), "")
	}
	a, b := answer(secret), answer(missing)
	if a.Code != 422 || b.Code != 422 {
		t.Fatalf("operator dry runs: %d %s / %d %s, want 422 for both", a.Code, a.Body, b.Code, b.Body)
	}
	if strings.ReplaceAll(a.Body, secret, "X") != strings.ReplaceAll(b.Body, missing, "X") {
		t.Errorf("an operator tells a root-only file from a missing one:\n%s\n%s", a.Body, b.Body)
	}
	// An admin (root on the socket) learns which.
	hc := apiHTTP(s.d.Socket)
	ra := apiRequest(t, hc, "PUT", "/v1/state?dryRun=true", []byte(body(secret)))
	rb := apiRequest(t, hc, "PUT", "/v1/state?dryRun=true", []byte(body(missing)))
	if strings.ReplaceAll(string(ra.Body), secret, "X") == strings.ReplaceAll(string(rb.Body), missing, "X") {
		t.Errorf("admin dry runs answer alike (%d %s), want the real reasons", ra.Code, ra.Body)
	}
	// Anyone may plan a probe on a binary anyone can read.
	if c := answer("/bin/true"); c.Code == 422 && strings.Contains(c.Body, "readable by every user") {
		t.Errorf("operator probing /bin/true: %d %s", c.Code, c.Body)
	}
}
