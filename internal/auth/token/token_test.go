package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/auth"
	"github.com/leaf-ebpf/leaf/internal/store"
)

func newKeyFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token.key")
	if _, err := GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKeyFileMode(t *testing.T) {
	path := newKeyFile(t)
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("GenerateKeyFile wrote mode %04o, want 0600", fi.Mode().Perm())
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		os.Chmod(path, mode)
		if _, err := OpenFile(path); err != nil {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620, 0o660} {
		os.Chmod(path, mode)
		_, err := OpenFile(path)
		if err == nil || !strings.Contains(err.Error(), "group or others") || !strings.Contains(err.Error(), path) {
			t.Errorf("mode %04o: error %v, want a refusal naming the file", mode, err)
		}
	}
	os.Chmod(path, 0o600)
	if os.Geteuid() == 0 {
		os.Chown(path, 65534, 65534)
		if _, err := OpenFile(path); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Errorf("key owned by another user: %v", err)
		}
		os.Chown(path, 0, 0)
	}
	if _, err := OpenFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing key file: no error")
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	if _, err := OpenFile(bad); err == nil || !strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Errorf("garbage key: %v", err)
	}
}

func TestKeyCredential(t *testing.T) {
	dir := t.TempDir()
	if _, err := GenerateKeyFile(filepath.Join(dir, "leaf-token-key")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	if _, err := OpenCredential("leaf-token-key"); err != nil {
		t.Errorf("credential: %v", err)
	}
	if _, err := OpenCredential("../etc/passwd"); err == nil {
		t.Error("credential name with a path: accepted")
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if _, err := OpenCredential("leaf-token-key"); err == nil || !strings.Contains(err.Error(), "CREDENTIALS_DIRECTORY") {
		t.Errorf("no credentials directory: %v", err)
	}
}

func newService(t *testing.T) (*Service, string, *store.Store) {
	t.Helper()
	path := newKeyFile(t)
	ks, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &Service{Keys: ks, Store: st, DefaultTTL: time.Hour, MaxTTL: 24 * time.Hour}, path, st
}

func TestIssueVerify(t *testing.T) {
	s, _, _ := newService(t)
	tok, err := s.Issue(v1.TokenRequest{Subject: "ci-bot", Role: "operator", TTL: "2h"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Verify(tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	if id.Role != auth.Operator || id.Subject != "ci-bot" || id.Via != auth.ViaToken || id.TokenID != tok.Info.ID {
		t.Errorf("identity %+v", id)
	}
	if got := tok.Info.ExpiresAt.Sub(tok.Info.IssuedAt); got != 2*time.Hour {
		t.Errorf("ttl %s, want 2h", got)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].State != v1.TokenValid || list[0].ID != tok.Info.ID {
		t.Errorf("list %+v %v", list, err)
	}
	// Tampering with any byte of the payload breaks the signature.
	parts := strings.Split(tok.Token, ".")
	claims, _ := jwt.NewParser().DecodeSegment(parts[1])
	forged := strings.Replace(string(claims), `"operator"`, `"admin"`, 1)
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(forged))
	if _, err := s.Verify(strings.Join(parts, ".")); err == nil {
		t.Error("token with role changed to admin: accepted")
	}
}

func TestIssueBadRequests(t *testing.T) {
	s, _, _ := newService(t)
	for _, req := range []v1.TokenRequest{
		{Subject: "x", Role: "root"},
		{Subject: "", Role: "reader"},
		{Subject: "a\nb", Role: "reader"},
		{Subject: strings.Repeat("a", 300), Role: "reader"},
		{Subject: "x", Role: "reader", TTL: "forever"},
		{Subject: "x", Role: "reader", TTL: "-1h"},
		{Subject: "x", Role: "reader", TTL: "48h"}, // over MaxTTL
	} {
		if _, err := s.Issue(req); err == nil || !strings.Contains(err.Error(), ErrBadRequest.Error()) {
			t.Errorf("%+v: error %v, want a bad request", req, err)
		}
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Errorf("refused requests recorded tokens: %+v", list)
	}
}

func TestExpiry(t *testing.T) {
	s, _, _ := newService(t)
	now := time.Now()
	s.Now = func() time.Time { return now }
	tok, err := s.Issue(v1.TokenRequest{Subject: "a", Role: "reader", TTL: "1m"})
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	if _, err := s.Verify(tok.Token); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: %v", err)
	}
	if list, _ := s.List(); list[0].State != v1.TokenExpired {
		t.Errorf("state %s, want expired", list[0].State)
	}
}

func TestRevocationPersists(t *testing.T) {
	s, _, st := newService(t)
	tok, _ := s.Issue(v1.TokenRequest{Subject: "a", Role: "admin"})
	keep, _ := s.Issue(v1.TokenRequest{Subject: "b", Role: "reader"})
	if _, err := s.Revoke(tok.Info.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(tok.Token); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("revoked token: %v", err)
	}
	if _, err := s.Verify(keep.Token); err != nil {
		t.Errorf("other token: %v", err)
	}
	if _, err := s.Revoke("nope"); err == nil {
		t.Error("revoking an unknown token: no error")
	}
	// A token leafd has no record of (a wiped store, another leafd with
	// the same key) is refused.
	dir := t.TempDir()
	other, _ := store.Open(dir)
	defer other.Close()
	s2 := &Service{Keys: s.Keys, Store: other, DefaultTTL: time.Hour, MaxTTL: time.Hour}
	if _, err := s2.Verify(keep.Token); err == nil || !strings.Contains(err.Error(), "no record") {
		t.Errorf("unrecorded token: %v", err)
	}
	_ = st
}

func TestRotationInvalidatesOlderTokens(t *testing.T) {
	s, path, _ := newService(t)
	old, _ := s.Issue(v1.TokenRequest{Subject: "a", Role: "admin"})
	oldKey, _ := s.Keys.Current()
	newID, err := GenerateKeyFile(path) // what `leaf token keygen` does
	if err != nil {
		t.Fatal(err)
	}
	if newID == oldKey.ID {
		t.Fatal("new key has the old ID")
	}
	if _, err := s.Verify(old.Token); err == nil || !strings.Contains(err.Error(), "rotated") {
		t.Errorf("token of the old key: %v", err)
	}
	fresh, err := s.Issue(v1.TokenRequest{Subject: "a", Role: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(fresh.Token); err != nil {
		t.Errorf("token of the new key: %v", err)
	}
	list, _ := s.List()
	state := map[string]string{}
	for _, info := range list {
		state[info.ID] = info.State
	}
	// Both were issued within the same second: compare by ID, not order.
	if len(list) != 2 || state[old.Info.ID] != v1.TokenStaleKey || state[fresh.Info.ID] != v1.TokenValid || fresh.Info.KeyID != newID {
		t.Errorf("list after rotation: %+v", list)
	}
	// A key file made readable by others stops all tokens (fail closed).
	os.Chmod(path, 0o644)
	if _, err := s.Verify(fresh.Token); !errors.Is(err, ErrKeyUnavailable) {
		t.Errorf("key readable by others: %v", err)
	}
}

// TestAlgorithmConfusion: tokens signed another way, or not at all, are
// refused even if they name the current key.
func TestAlgorithmConfusion(t *testing.T) {
	s, _, st := newService(t)
	key, _ := s.Keys.Current()
	st.PutToken(store.TokenRecord{ID: "forged", Subject: "x", Role: "admin", KeyID: key.ID, IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)})
	c := claims{Role: "admin", RegisteredClaims: jwt.RegisteredClaims{Issuer: issuer, Subject: "x", ID: "forged",
		IssuedAt: jwt.NewNumericDate(time.Now()), ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}}
	// HS256 keyed with the public key: the classic confusion attack.
	h := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	h.Header["kid"] = key.ID
	hs, _ := h.SignedString([]byte(key.Public()))
	none := jwt.NewWithClaims(jwt.SigningMethodNone, c)
	none.Header["kid"] = key.ID
	ns, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	// Signed by another Ed25519 key that claims the current key's ID.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	o := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	o.Header["kid"] = key.ID
	os, _ := o.SignedString(other)
	for name, tok := range map[string]string{"HS256": hs, "none": ns, "other key": os, "garbage": "a.b.c", "empty": ""} {
		if _, err := s.Verify(tok); err == nil {
			t.Errorf("%s token: accepted", name)
		}
	}
}

// TestExpiryFromTheRecord: the token's exp claim is compared with leafd's
// record of it. A token re-signed with the key (stolen, or a rotation
// gone wrong) claiming a longer life than leafd recorded is refused, and
// so is any token past the record's expiry, whatever it claims.
func TestExpiryFromTheRecord(t *testing.T) {
	s, _, st := newService(t)
	key, _ := s.Keys.Current()
	tok, err := s.Issue(v1.TokenRequest{Subject: "ci", Role: "reader", TTL: "1m"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	longer := claims{Role: "reader", RegisteredClaims: jwt.RegisteredClaims{Issuer: issuer, Subject: "ci", ID: tok.Info.ID,
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(365 * 24 * time.Hour))}}
	j := jwt.NewWithClaims(jwt.SigningMethodEdDSA, longer)
	j.Header["kid"] = key.ID
	signed, _ := j.SignedString(key.Private)
	if _, err := s.Verify(signed); err == nil || !strings.Contains(err.Error(), "do not match leafd's record") {
		t.Errorf("token claiming a year when leafd recorded a minute: %v", err)
	}
	// The record ended already; the token claims another hour.
	st.PutToken(store.TokenRecord{ID: "ended", Subject: "ci", Role: "reader", KeyID: key.ID, IssuedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Second)})
	late := claims{Role: "reader", RegisteredClaims: jwt.RegisteredClaims{Issuer: issuer, Subject: "ci", ID: "ended",
		IssuedAt: jwt.NewNumericDate(now.Add(-time.Hour)), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}}
	j = jwt.NewWithClaims(jwt.SigningMethodEdDSA, late)
	j.Header["kid"] = key.ID
	signed, _ = j.SignedString(key.Private)
	if _, err := s.Verify(signed); err == nil || !strings.Contains(err.Error(), "expired at") {
		t.Errorf("token past its recorded expiry: %v", err)
	}
}

// TestKeyProblemStaysInTheLog: when the key file turns unusable (made
// readable by others), a token caller's 401 says only that the key is
// unusable; the path and mode go to leafd's log.
func TestKeyProblemStaysInTheLog(t *testing.T) {
	s, path, _ := newService(t)
	tok, err := s.Issue(v1.TokenRequest{Subject: "a", Role: "reader"})
	if err != nil {
		t.Fatal(err)
	}
	var logged error
	s.KeyProblem = func(err error) { logged = err }
	os.Chmod(path, 0o644)
	_, err = s.Verify(tok.Token)
	if err == nil || strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "0644") {
		t.Errorf("caller is told %v, want no path or mode", err)
	}
	if logged == nil || !strings.Contains(logged.Error(), path) || !strings.Contains(logged.Error(), "0644") {
		t.Errorf("log got %v, want the path and mode", logged)
	}
}
