package store

import (
	"errors"
	"testing"
	"time"
)

func TestTokenRecords(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	a := TokenRecord{ID: "a", Subject: "ci", Role: "reader", KeyID: "k1", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	b := TokenRecord{ID: "b", Subject: "ops", Role: "admin", KeyID: "k1", IssuedAt: now.Add(time.Second), ExpiresAt: now.Add(time.Hour)}
	for _, r := range []TokenRecord{b, a} {
		if err := s.PutToken(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutToken(a); err == nil {
		t.Error("recording a token ID twice: no error")
	}
	first := now.Add(time.Minute)
	if _, err := s.RevokeToken("a", first); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.RevokeToken("a", first.Add(time.Hour)); !r.RevokedAt.Equal(first) {
		t.Errorf("revoking again moved the time to %v", r.RevokedAt)
	}
	if _, err := s.RevokeToken("nope", now); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("unknown token: %v", err)
	}
	// Revocations survive a restart.
	s.Close()
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	list, err := s.Tokens()
	if err != nil || len(list) != 2 || list[0].ID != "a" || list[1].ID != "b" {
		t.Fatalf("tokens after reopen, oldest first: %+v %v", list, err)
	}
	if list[0].RevokedAt == nil || list[1].RevokedAt != nil {
		t.Errorf("revocation not kept: %+v", list)
	}
	if _, err := s.Token("nope"); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("Token of an unknown ID: %v", err)
	}
}

func TestPruneTokens(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC().Truncate(time.Second)
	for id, exp := range map[string]time.Time{"old": now.Add(-10 * 24 * time.Hour), "recent": now.Add(-time.Hour), "live": now.Add(time.Hour)} {
		if err := s.PutToken(TokenRecord{ID: id, Subject: id, Role: "reader", KeyID: "k", IssuedAt: exp.Add(-time.Hour), ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.PruneTokens(now.Add(-7 * 24 * time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("PruneTokens = %d, %v; want 1", n, err)
	}
	if _, err := s.Token("old"); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("old token still recorded: %v", err)
	}
	for _, id := range []string{"recent", "live"} {
		if _, err := s.Token(id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
}
