package bpffs_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/leaf-ebpf/leaf/internal/bpffs"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// TestDirsFollowTheFileSystem: listings through held descriptors on a real
// bpffs show what is there now, after entries come and go, after the
// directory is removed (not there) and made again, exactly as listings by
// path do.
func TestDirsFollowTheFileSystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a bpffs")
	}
	root := testenv.BPFFS(t)
	held := bpffs.Layout{Root: root, Dirs: &bpffs.Dirs{}}
	defer held.Dirs.Close()
	byPath := bpffs.Layout{Root: root}
	check := func(step string, want []string) {
		t.Helper()
		for _, l := range []bpffs.Layout{held, byPath} {
			got, err := l.Attachments()
			if err != nil {
				t.Fatalf("%s: %v", step, err)
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s (held %v): attachments %v, want %v", step, l.Dirs != nil, got, want)
			}
		}
	}
	check("no attachments directory", nil)
	if _, err := held.AttachmentEntries(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("entries of a missing directory: %v, want ErrNotExist", err)
	}
	for _, d := range []string{"a", "b", "_new_c"} {
		if err := os.MkdirAll(held.Dir(d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	check("two attachments and a staging directory", []string{"a", "b"})
	entries, err := held.AttachmentEntries()
	if err != nil || len(entries) != 3 {
		t.Errorf("entries: %d, %v; want 3 (staging included)", len(entries), err)
	}
	if err := os.Remove(held.Dir("a")); err != nil {
		t.Fatal(err)
	}
	check("one removed", []string{"b"})
	if err := os.RemoveAll(held.AttachmentsDir()); err != nil {
		t.Fatal(err)
	}
	check("directory removed", nil)
	if err := os.MkdirAll(held.Dir("d"), 0o700); err != nil {
		t.Fatal(err)
	}
	check("directory made again", []string{"d"})
	if err := os.MkdirAll(filepath.Join(held.HooksDir(), "xdp-eth0-1"), 0o700); err != nil {
		t.Fatal(err)
	}
	if ids, err := held.Hooks(); err != nil || !slices.Equal(ids, []string{"xdp-eth0-1"}) {
		t.Errorf("hooks: %v, %v", ids, err)
	}
}
