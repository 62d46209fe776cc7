package applier

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/internal/crashpoint"
)

// RecoverPins tidies what an apply killed part-way leaves in bpffs, so
// that every pin under the root is either an attachment's or a hook's
// and the plan can account for all of them. Every rename an apply makes
// has a staging name, and each leftover has one safe meaning:
//
//	_new_<a>/         staged, never swapped in       → detached and removed
//	_old_<a>/ beside <a>/  swapped, old not retired  → detached and removed
//	_old_<a>/ alone   moved aside, new not yet in    → renamed back to <a>
//	<pin>_next        staged, never renamed in       → detached and removed
//	<pin>_prev beside <pin>  replaced, not retired   → removed
//	<pin>_prev alone  moved aside, new not yet in    → renamed back
//
// What the kernel then runs may still differ from the record (a link
// updated to a program that was never recorded, a hook switched to a new
// chain): the planner compares the two and rebuilds what differs. It
// returns what it did, for the log.
func (ap *Applier) RecoverPins() ([]string, error) {
	var did []string
	entries, err := os.ReadDir(ap.Layout.AttachmentsDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	dir := ap.Layout.AttachmentsDir()
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, "_new_"):
			detachPinned(filepath.Join(dir, name, "link"))
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				return did, err
			}
			did = append(did, "removed staged "+name)
		case strings.HasPrefix(name, "_old_"):
			final := filepath.Join(dir, strings.TrimPrefix(name, "_old_"))
			old := filepath.Join(dir, name)
			if exists(final) {
				if !sameLink(filepath.Join(old, "link"), filepath.Join(final, "link")) {
					detachPinned(filepath.Join(old, "link"))
				}
				if err := os.RemoveAll(old); err != nil {
					return did, err
				}
				did = append(did, "retired "+name)
				continue
			}
			if err := os.Rename(old, final); err != nil {
				return did, err
			}
			did = append(did, "put back "+name)
		}
	}
	var dirs []string
	if names, err := ap.Layout.Attachments(); err == nil {
		for _, n := range names {
			dirs = append(dirs, ap.Layout.Dir(n), ap.Layout.MapsDir(n))
		}
	}
	if ids, err := ap.Layout.Hooks(); err == nil {
		for _, id := range ids {
			dirs = append(dirs, filepath.Dir(ap.Layout.HookLink(id)))
		}
	}
	for _, d := range dirs {
		r, err := recoverDir(d)
		did = append(did, r...)
		if err != nil {
			return did, err
		}
	}
	crashpoint.Hit(crashpoint.RecoveredPins)
	return did, nil
}

// recoverDir settles the _next and _prev pins in one directory; maps live
// in maps/, staged in maps_next/ and moved aside in maps_prev/.
func recoverDir(dir string) ([]string, error) {
	var did []string
	settle := func(staged, final string, prev bool) error {
		switch {
		case !prev:
			if !sameLink(staged, final) {
				detachPinned(staged)
			}
			did = append(did, "removed staged "+staged)
			return os.RemoveAll(staged)
		case exists(final):
			did = append(did, "removed replaced "+staged)
			return os.RemoveAll(staged)
		default:
			did = append(did, "put back "+staged)
			return os.Rename(staged, final)
		}
	}
	for _, tag := range []string{"next", "prev"} {
		aside := dir + "_" + tag
		if filepath.Base(dir) == "maps" && exists(aside) {
			entries, err := os.ReadDir(aside)
			if err != nil {
				return did, err
			}
			for _, e := range entries {
				if err := os.MkdirAll(dir, 0o700); err != nil {
					return did, err
				}
				if err := settle(filepath.Join(aside, e.Name()), filepath.Join(dir, e.Name()), tag == "prev"); err != nil {
					return did, err
				}
			}
			if err := os.RemoveAll(aside); err != nil {
				return did, err
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return did, err
		}
		for _, e := range entries {
			base, ok := strings.CutSuffix(e.Name(), "_"+tag)
			if !ok || e.IsDir() {
				continue
			}
			if err := settle(filepath.Join(dir, e.Name()), filepath.Join(dir, base), tag == "prev"); err != nil {
				return did, fmt.Errorf("%s: %w", e.Name(), err)
			}
		}
	}
	return did, nil
}

// sameLink reports whether two pins hold the same link, so that removing
// a stale pin of a link that another pin keeps never detaches it.
func sameLink(a, b string) bool {
	la, err := link.LoadPinnedLink(a, nil)
	if err != nil {
		return false
	}
	defer la.Close()
	lb, err := link.LoadPinnedLink(b, nil)
	if err != nil {
		return false
	}
	defer lb.Close()
	ia, erra := la.Info()
	ib, errb := lb.Info()
	return erra == nil && errb == nil && ia.ID == ib.ID
}
