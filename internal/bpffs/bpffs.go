// Package bpffs owns leaf's pins: where they live under the bpffs root, and
// mounting a bpffs there when none is.
//
// Layout under the root (default /sys/fs/bpf/leaf):
//
//	attachments/<attachment>/link        the bpf_link holding the hook
//	attachments/<attachment>/prog        the program the link runs
//	attachments/<attachment>/maps/<map>  the program's maps
//	attachments/<attachment>/next        chain members: the PROG_ARRAY
//	                                     holding the next member
//	hooks/<hook>/link                    the link of an XDP or TC hook's
//	                                     chain; it runs the first member
//
// Staging pins carry suffixes (prog_next, maps_next/, _new_<attachment>)
// rather than dots, because bpffs refuses names containing a dot.
// Attachment names never start with "_", so staging directories cannot
// collide with them.
//
// Pins are what keep programs attached while leafd is not running, so that
// stopping, killing or upgrading leafd never detaches anything.
package bpffs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Layout computes pin paths under a bpffs root.
type Layout struct {
	Root string
	// Dirs, when set, lists the attachments and hooks directories through
	// descriptors it keeps open (leafd sets it; a zero Layout lists by
	// path).
	Dirs *Dirs
}

// AttachmentsDir holds one directory per attachment.
func (l Layout) AttachmentsDir() string { return filepath.Join(l.Root, "attachments") }

// Dir is the directory of one attachment's pins.
func (l Layout) Dir(attachment string) string {
	return filepath.Join(l.AttachmentsDir(), attachment)
}

// Link is the pin of the attachment's link.
func (l Layout) Link(attachment string) string { return filepath.Join(l.Dir(attachment), "link") }

// Prog is the pin of the attachment's program.
func (l Layout) Prog(attachment string) string { return filepath.Join(l.Dir(attachment), "prog") }

// MapsDir holds the attachment's map pins.
func (l Layout) MapsDir(attachment string) string { return filepath.Join(l.Dir(attachment), "maps") }

// Map is the pin of one map of the attachment.
func (l Layout) Map(attachment, name string) string {
	return filepath.Join(l.MapsDir(attachment), name)
}

// Staging is where a new incarnation of an attachment's pins is built
// before it is renamed into place.
func (l Layout) Staging(attachment string) string {
	return filepath.Join(l.AttachmentsDir(), "_new_"+attachment)
}

// Retired is where the previous incarnation's pins wait, until the apply
// that replaced them succeeds.
func (l Layout) Retired(attachment string) string {
	return filepath.Join(l.AttachmentsDir(), "_old_"+attachment)
}

// Sibling returns the staging path of a pin: prog → prog_<tag>,
// maps/<m> → maps_<tag>/<m>.
func Sibling(pin, tag string) string {
	dir, base := filepath.Split(pin)
	dir = filepath.Clean(dir)
	if filepath.Base(dir) == "maps" {
		return filepath.Join(dir+"_"+tag, base)
	}
	return pin + "_" + tag
}

// Next is the pin of a chain member's PROG_ARRAY to the next member.
func (l Layout) Next(attachment string) string { return filepath.Join(l.Dir(attachment), "next") }

// HooksDir holds one directory per chained hook.
func (l Layout) HooksDir() string { return filepath.Join(l.Root, "hooks") }

// HookLink is the pin of a chained hook's link.
func (l Layout) HookLink(hookID string) string {
	return filepath.Join(l.HooksDir(), hookID, "link")
}

// HookID turns a hook key ("<kind>/<netns>/<interface>") into a
// directory name: readable ("xdp-eth0-1a2b3c4d"), unique through the hash
// of the whole key, and free of the dots and slashes bpffs or paths
// refuse.
func HookID(key string) string {
	sum := sha256.Sum256([]byte(key))
	kind, _, _ := strings.Cut(key, "/")
	name := kind + "-" + key[strings.LastIndex(key, "/")+1:]
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteRune('_')
		}
	}
	name = b.String()
	if len(name) > 40 {
		name = name[:40]
	}
	return name + "-" + hex.EncodeToString(sum[:4])
}

// Hooks lists the hook directories present.
func (l Layout) Hooks() ([]string, error) {
	entries, err := l.Dirs.list(l.HooksDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Attachments lists the attachment directories present.
func (l Layout) Attachments() ([]string, error) {
	entries, err := l.AttachmentEntries()
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), "_") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// AttachmentEntries lists everything in the attachments directory,
// staging directories included (os.ErrNotExist when there is none).
func (l Layout) AttachmentEntries() ([]os.DirEntry, error) {
	return l.Dirs.list(l.AttachmentsDir())
}

// Remove unpins everything of an attachment. Unpinning a link whose last
// reference is the pin detaches it.
func (l Layout) Remove(attachment string) error {
	return os.RemoveAll(l.Dir(attachment))
}

// IsBPFFS reports whether path is on a bpf file system.
func IsBPFFS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, err
	}
	return uint32(st.Type) == unix.BPF_FS_MAGIC, nil
}

// Ensure makes root a directory on a bpffs, mounting one there if it is
// on another file system.
func Ensure(root string) error {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("bpffs root: %w", err)
	}
	ok, err := IsBPFFS(root)
	if err != nil {
		return fmt.Errorf("bpffs root: %w", err)
	}
	if ok {
		return nil
	}
	if err := unix.Mount("bpf", root, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs at %s: %w", root, err)
	}
	return nil
}

// Rename atomically moves a pin over another (bpffs supports rename).
func Rename(from, to string) error {
	return unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, 0)
}
