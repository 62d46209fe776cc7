package store

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/leaf-ebpf/leaf/internal/desired"
)

func intentDoc(name string) *desired.State {
	st := desired.Empty()
	st.Spec.Attachments = []desired.Attachment{{Name: name, Package: "portfilter@1.0.0"}}
	return st
}

// TestIntentJournal: an intent survives leafd's death (a reopened store
// reads it), names its packages, is gone after the commit or an abort, and
// does not count when it was written in another boot, was cut short
// mid-write, or is garbage; an intent an older leafd journaled inside the
// database is still found and cleared.
func TestIntentJournal(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	reopen := func() {
		t.Helper()
		s.Close()
		if s, err = Open(dir); err != nil {
			t.Fatal(err)
		}
	}
	open := func(step string) *Intent {
		t.Helper()
		in, err := s.OpenIntent()
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		return in
	}
	if in := open("fresh store"); in != nil {
		t.Fatalf("fresh store has an intent: %+v", in)
	}
	begin := func(name string) {
		t.Helper()
		err := s.Begin(Intent{Desired: intentDoc(name), Started: time.Now().UTC(), Packages: []PackageRef{{Name: "portfilter", Version: "1.0.0", Digest: "sha256:ab"}}})
		if err != nil {
			t.Fatal(err)
		}
	}

	begin("one")
	reopen() // leafd killed and started again, same boot
	in := open("after a restart")
	if in == nil || in.Desired.Spec.Attachments[0].Name != "one" || len(in.Packages) != 1 || in.Packages[0].Digest != "sha256:ab" {
		t.Fatalf("intent after a restart: %+v", in)
	}
	if err := s.Commit(in.Desired, map[string]*Record{}); err != nil {
		t.Fatal(err)
	}
	if in := open("after the commit"); in != nil {
		t.Errorf("intent left after the commit: %+v", in)
	}

	begin("a-longer-name-than-before")
	begin("two") // a shorter intent over a longer one
	if in := open("overwritten"); in == nil || in.Desired.Spec.Attachments[0].Name != "two" {
		t.Errorf("overwritten intent reads %+v", in)
	}
	if err := s.Abort(); err != nil {
		t.Fatal(err)
	}
	if in := open("after an abort"); in != nil {
		t.Errorf("intent left after an abort: %+v", in)
	}

	// Another boot: the kernel objects it was about are gone.
	begin("three")
	s.bootID = "another-boot"
	if in := open("another boot"); in != nil {
		t.Errorf("an intent of another boot counts: %+v", in)
	}
	s.bootID = bootID()
	if in := open("dropped"); in != nil {
		t.Errorf("the other boot's intent was not dropped: %+v", in)
	}

	// Cut short: a body written without its header, and one whose body
	// changed under its header.
	begin("four")
	f, err := os.OpenFile(filepath.Join(dir, intentFile), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(`{"bootID":"x"`), intentHeader); err != nil {
		t.Fatal(err)
	}
	if in := open("body changed under its header"); in != nil {
		t.Errorf("a torn intent counts: %+v", in)
	}
	if _, err := f.WriteAt([]byte("garbage, not a header, at all"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if in := open("garbage"); in != nil {
		t.Errorf("garbage counts as an intent: %+v", in)
	}

	// An older leafd's intent inside the database.
	legacy := []byte(`{"desired":{"apiVersion":"leaf.dev/v1alpha1","kind":"DesiredState","spec":{"attachments":[{"name":"old"}]}},"started":"2026-01-01T00:00:00Z"}`)
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyIntent, legacy) }); err != nil {
		t.Fatal(err)
	}
	if err := s.clearIntent(); err != nil {
		t.Fatal(err)
	}
	if in := open("legacy"); in == nil || len(in.Desired.Spec.Attachments) != 1 || in.Desired.Spec.Attachments[0].Name != "old" {
		t.Errorf("legacy intent reads %+v", in)
	}
	if err := s.Abort(); err != nil {
		t.Fatal(err)
	}
	if in := open("legacy aborted"); in != nil {
		t.Errorf("legacy intent left after an abort: %+v", in)
	}
}
