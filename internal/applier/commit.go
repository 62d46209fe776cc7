package applier

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/internal/bpffs"
	"github.com/leaf-ebpf/leaf/internal/crashpoint"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/observer"
	"github.com/leaf-ebpf/leaf/internal/planner"
	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/internal/store"
	"github.com/leaf-ebpf/leaf/internal/tail"
)

// commit carries out one action. It returns the new record and a finalize
// step that runs once every action has succeeded.
func (ap *Applier) commit(act *planner.Action, l *loaded, undo *undoStack) (*store.Record, func(), error) {
	switch act.Kind {
	case planner.Keep:
		rec, err := ap.keep(act)
		return rec, nil, err
	case planner.UpdateParams:
		return ap.updateParams(act, undo)
	case planner.Reattach:
		return ap.reattach(act, undo)
	case planner.Replace:
		if !updatable(act.Desired.Attachment.Hook.Type) {
			// Perf-event links cannot swap programs; attach the new one
			// beside the old and then remove the old: events may be seen
			// twice for a moment but never missed.
			return ap.create(act, l, undo)
		}
		return ap.replace(act, l, undo)
	case planner.Create:
		return ap.create(act, l, undo)
	}
	return nil, nil, fmt.Errorf("unknown action %q", act.Kind)
}

// updatable reports whether a hook's link supports bpf_link_update.
func updatable(hookType string) bool {
	switch hookType {
	case manifest.HookXDP, manifest.HookTC, manifest.HookCgroupSKB:
		return true
	}
	return false
}

func (ap *Applier) keep(act *planner.Action) (*store.Record, error) {
	rec := *act.Record
	rec.Attachment = act.Desired.Attachment
	rec.Package.Repository = act.Desired.Package.Repository
	rec.Package.Trust, rec.Package.Signers = trustOf(act.Desired.Package)
	rec.Metrics = act.Desired.Package.Manifest.Metrics
	rec.Records = recordStreams(act.Desired)
	rec.ProgramID = uint32(act.Observed.ProgramID)
	rec.ProgramTag = act.Observed.Tag
	rec.LinkID = uint32(act.Observed.LinkID)
	rec.MapIDs = mapIDs(act.Observed.Maps)
	return &rec, nil
}

// create attaches a freshly loaded program, stages its pins in a hidden
// directory and swaps that directory into place. Pins of an earlier
// incarnation are moved aside and removed (detaching its link) only when
// the whole apply has succeeded.
func (ap *Applier) create(act *planner.Action, l *loaded, undo *undoStack) (*store.Record, func(), error) {
	name, r := act.Name, act.Desired
	lk, err := r.Target.Attach(l.prog)
	if err != nil {
		return nil, nil, fmt.Errorf("attach to %s: %w", r.Attachment.Hook, err)
	}
	undo.push(lk.Close)
	crashpoint.Hit(crashpoint.Attached)
	if err := ap.writeParams(act, l.maps, undo); err != nil {
		return nil, nil, err
	}
	// Apply's cleanStaging left no staging directory behind.
	staging := ap.Layout.Staging(name)
	if err := ap.stagePins(staging, l, lk); err != nil {
		os.RemoveAll(staging)
		return nil, nil, err
	}
	crashpoint.Hit(crashpoint.PinStaged)
	retire, err := ap.swapInPins(name, undo)
	if err != nil {
		return nil, nil, err
	}
	rec, err := ap.newRecord(act, l.prog, lk, l.maps)
	if err != nil {
		return nil, nil, err
	}
	return rec, func() {
		lk.Close() // the pin holds it now
		retire()
	}, nil
}

// swapInPins moves an attachment's staged pins into place. The previous
// incarnation's pins move aside rather than away: whatever they hold keeps
// running (and an undo can put them back) until the returned retire step
// removes them, once the whole apply has succeeded.
func (ap *Applier) swapInPins(name string, undo *undoStack) (retire func(), err error) {
	staging, final, old := ap.Layout.Staging(name), ap.Layout.Dir(name), ap.Layout.Retired(name)
	hadOld := exists(final)
	if hadOld {
		os.RemoveAll(old)
		if err := os.Rename(final, old); err != nil {
			os.RemoveAll(staging)
			return nil, fmt.Errorf("move old pins aside: %w", err)
		}
		crashpoint.Hit(crashpoint.PinMovedAside)
	}
	if err := os.Rename(staging, final); err != nil {
		if hadOld {
			os.Rename(old, final)
		}
		os.RemoveAll(staging)
		return nil, fmt.Errorf("pin: %w", err)
	}
	crashpoint.Hit(crashpoint.PinSwapped)
	undo.push(func() error {
		if err := os.RemoveAll(final); err != nil {
			return err
		}
		if hadOld {
			return os.Rename(old, final)
		}
		return nil
	})
	return func() {
		if hadOld {
			detachPinned(filepath.Join(old, "link"))
		}
		os.RemoveAll(old)
		crashpoint.Hit(crashpoint.Retired)
	}, nil
}

func (ap *Applier) stagePins(dir string, l *loaded, lk link.Link) error {
	if err := pinFD(filepath.Join(dir, "prog"), l.prog.FD()); err != nil {
		return err
	}
	if err := lk.Pin(filepath.Join(dir, "link")); err != nil {
		return fmt.Errorf("pin link: %w", err)
	}
	for mname, m := range l.maps {
		if err := pinFD(filepath.Join(dir, "maps", mname), m.FD()); err != nil {
			return err
		}
	}
	return nil
}

// replace swaps a new program into the existing link with one
// bpf_link_update: the hook never runs without a program, and every packet
// sees either the old or the new one.
func (ap *Applier) replace(act *planner.Action, l *loaded, undo *undoStack) (*store.Record, func(), error) {
	name := act.Name
	lk, err := link.LoadPinnedLink(ap.Layout.Link(name), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("open pinned link: %w", err)
	}
	oldProg, err := ebpf.LoadPinnedProgram(ap.Layout.Prog(name), nil)
	if err != nil {
		lk.Close()
		return nil, nil, fmt.Errorf("open pinned program: %w", err)
	}
	done := func() { lk.Close(); oldProg.Close() }
	if err := ap.writeParams(act, l.maps, undo); err != nil {
		done()
		return nil, nil, err
	}
	// Stage the new pins before the swap so that nothing can fail between
	// the swap and the renames but a rename.
	progNext := bpffs.Sibling(ap.Layout.Prog(name), "next")
	staged := map[string]string{progNext: ap.Layout.Prog(name)}
	if err := pinFD(progNext, l.prog.FD()); err != nil {
		done()
		return nil, nil, err
	}
	for mname, m := range l.maps {
		if !l.fresh[mname] {
			continue
		}
		p := ap.Layout.Map(name, mname)
		if err := pinFD(bpffs.Sibling(p, "next"), m.FD()); err != nil {
			removeStaged(staged)
			done()
			return nil, nil, err
		}
		staged[bpffs.Sibling(p, "next")] = p
	}
	if err := lk.Update(l.prog); err != nil {
		removeStaged(staged)
		done()
		return nil, nil, fmt.Errorf("swap program in link: %w", err)
	}
	undo.push(func() error { return lk.Update(oldProg) })
	crashpoint.Hit(crashpoint.LinkUpdated)
	// Keep the replaced objects pinned under _prev names until the apply
	// succeeds, so an undo can put them back.
	aside := map[string]string{}
	for tmp, final := range staged {
		if exists(final) {
			prev := bpffs.Sibling(final, "prev")
			if err := os.MkdirAll(filepath.Dir(prev), 0o700); err != nil {
				return nil, nil, err
			}
			if err := os.Rename(final, prev); err != nil {
				return nil, nil, err
			}
			aside[prev] = final
			crashpoint.Hit(crashpoint.PinMovedAside)
		}
		if err := os.Rename(tmp, final); err != nil {
			return nil, nil, err
		}
		crashpoint.Hit(crashpoint.PinSwapped)
	}
	undo.push(func() error {
		for old, final := range aside {
			if err := os.Rename(old, final); err != nil {
				return err
			}
		}
		return nil
	})
	rec, err := ap.newRecord(act, l.prog, lk, l.maps)
	if err != nil {
		return nil, nil, err
	}
	return rec, func() {
		done()
		for old := range aside {
			os.Remove(old)
		}
		os.RemoveAll(bpffs.Sibling(ap.Layout.Map(name, "x"), "next"))
		os.Remove(filepath.Dir(bpffs.Sibling(ap.Layout.Map(name, "x"), "prev")))
		os.Remove(filepath.Dir(bpffs.Sibling(ap.Layout.Map(name, "x"), "next")))
		ap.removeUnusedMapPins(name, l.maps)
	}, nil
}

// reattach attaches the pinned program again with a new link, for a link
// that was detached or lost.
func (ap *Applier) reattach(act *planner.Action, undo *undoStack) (*store.Record, func(), error) {
	name := act.Name
	prog, err := ebpf.LoadPinnedProgram(ap.Layout.Prog(name), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("open pinned program: %w", err)
	}
	maps, err := ap.pinnedMaps(name)
	if err != nil {
		prog.Close()
		return nil, nil, err
	}
	done := func() {
		prog.Close()
		closeMaps(maps)
	}
	lk, err := act.Desired.Target.Attach(prog)
	if err != nil {
		done()
		return nil, nil, fmt.Errorf("attach to %s: %w", act.Desired.Attachment.Hook, err)
	}
	undo.push(lk.Close)
	crashpoint.Hit(crashpoint.Attached)
	if err := ap.writeParams(act, maps, undo); err != nil {
		done()
		return nil, nil, err
	}
	linkPin := ap.Layout.Link(name)
	linkNext := bpffs.Sibling(linkPin, "next")
	os.Remove(linkNext)
	if err := lk.Pin(linkNext); err != nil {
		done()
		return nil, nil, fmt.Errorf("pin link: %w", err)
	}
	crashpoint.Hit(crashpoint.PinStaged)
	if err := os.Rename(linkNext, linkPin); err != nil {
		os.Remove(linkNext)
		done()
		return nil, nil, fmt.Errorf("pin link: %w", err)
	}
	undo.push(func() error { return os.Remove(linkPin) })
	rec, err := ap.newRecord(act, prog, lk, maps)
	if err != nil {
		done()
		return nil, nil, err
	}
	return rec, func() { done(); lk.Close() }, nil
}

func (ap *Applier) updateParams(act *planner.Action, undo *undoStack) (*store.Record, func(), error) {
	maps, err := ap.pinnedMaps(act.Name)
	if err != nil {
		return nil, nil, err
	}
	defer closeMaps(maps)
	if err := ap.writeParams(act, maps, undo); err != nil {
		return nil, nil, err
	}
	rec, err := ap.keep(act)
	if err != nil {
		return nil, nil, err
	}
	rec.MapParams = act.Desired.MapParams
	rec.UpdatedAt = ap.now()
	return rec, nil, nil
}

// writeParams writes the desired map parameters and records how to put
// back the previous ones.
func (ap *Applier) writeParams(act *planner.Action, maps map[string]*ebpf.Map, undo *undoStack) error {
	m := act.Desired.Package.Manifest
	if act.Record != nil && act.Kind != planner.Create {
		old := act.Record.MapParams
		clones := map[string]*ebpf.Map{}
		for n, mp := range maps {
			c, err := mp.Clone()
			if err != nil {
				closeMaps(clones)
				return err
			}
			clones[n] = c
		}
		undo.push(func() error {
			defer closeMaps(clones)
			return writeMapParams(m, clones, old)
		})
	}
	if err := writeMapParams(m, maps, act.Desired.MapParams); err != nil {
		return &paramError{fmt.Errorf("set parameters: %w", err)}
	}
	if len(act.Desired.MapParams) > 0 {
		crashpoint.Hit(crashpoint.ParamsWritten)
	}
	return nil
}

func (ap *Applier) pinnedMaps(name string) (map[string]*ebpf.Map, error) {
	entries, err := os.ReadDir(ap.Layout.MapsDir(name))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]*ebpf.Map{}, nil
	}
	if err != nil {
		return nil, err
	}
	maps := map[string]*ebpf.Map{}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".") {
			continue
		}
		m, err := ebpf.LoadPinnedMap(ap.Layout.Map(name, e.Name()), nil)
		if err != nil {
			closeMaps(maps)
			return nil, fmt.Errorf("open pinned map %s: %w", e.Name(), err)
		}
		maps[e.Name()] = m
	}
	return maps, nil
}

// removeUnusedMapPins unpins maps the new program version no longer has.
func (ap *Applier) removeUnusedMapPins(name string, keep map[string]*ebpf.Map) {
	entries, _ := os.ReadDir(ap.Layout.MapsDir(name))
	for _, e := range entries {
		if _, ok := keep[e.Name()]; !ok {
			os.Remove(ap.Layout.Map(name, e.Name()))
		}
	}
}

func (ap *Applier) newRecord(act *planner.Action, prog *ebpf.Program, lk link.Link, maps map[string]*ebpf.Map) (*store.Record, error) {
	rec, err := ap.recordFor(act, prog, maps)
	if err != nil {
		return nil, err
	}
	linfo, err := lk.Info()
	if err != nil {
		return nil, fmt.Errorf("link info: %w", err)
	}
	rec.LinkID = uint32(linfo.ID)
	return rec, nil
}

// recordFor records a freshly loaded program and its maps.
func (ap *Applier) recordFor(act *planner.Action, prog *ebpf.Program, maps map[string]*ebpf.Map) (*store.Record, error) {
	r := act.Desired
	rec := &store.Record{
		Name:       act.Name,
		Attachment: r.Attachment,
		Package: store.PackageRef{
			Name: r.Package.Manifest.Name, Version: r.Package.Manifest.Version,
			Digest: r.Package.Digest, Repository: r.Package.Repository,
		},
		Program:     r.Program.Name,
		Metrics:     r.Package.Manifest.Metrics,
		Records:     recordStreams(r),
		ConstParams: r.ConstParams,
		MapParams:   r.MapParams,
		MapIDs:      map[string]uint32{},
		LoadedAt:    ap.now(),
		UpdatedAt:   ap.now(),
	}
	rec.Package.Trust, rec.Package.Signers = trustOf(r.Package)
	if act.Kind == planner.Reattach && act.Record != nil {
		rec.LoadedAt = act.Record.LoadedAt
	}
	id, tag, err := observer.ProgramIDTag(prog)
	if err != nil {
		return nil, err
	}
	rec.ProgramID, rec.ProgramTag = uint32(id), tag
	for n, m := range maps {
		if mid, err := observer.MapID(m); err == nil {
			rec.MapIDs[n] = uint32(mid)
		}
	}
	return rec, nil
}

func (ap *Applier) now() (t time.Time) {
	if ap.Now != nil {
		return ap.Now()
	}
	return time.Now().UTC()
}

func mapIDs(in map[string]ebpf.MapID) map[string]uint32 {
	out := map[string]uint32{}
	for k, v := range in {
		out[k] = uint32(v)
	}
	return out
}

func closeMaps(maps map[string]*ebpf.Map) {
	for _, m := range maps {
		m.Close()
	}
}

func removeStaged(staged map[string]string) {
	for tmp := range staged {
		os.Remove(tmp)
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// trustOf copies what verifying the package found into the record.
func trustOf(p *repository.Package) (string, []store.Signer) {
	if p.Trust == nil {
		return "", nil
	}
	var signers []store.Signer
	for _, s := range p.Trust.Signers {
		signers = append(signers, store.Signer{Role: s.Role, Key: s.Key, KeyID: s.KeyID})
	}
	return p.Trust.Policy, signers
}

// recordStreams keeps, for each ring or perf buffer the package declares
// in this program's object, the BTF of its record type: leaf tail decodes
// with it later, without the object.
func recordStreams(r *planner.Resolved) []store.RecordStream {
	var out []store.RecordStream
	for _, decl := range r.Package.Manifest.Records {
		if _, ok := r.Spec.Maps[decl.Map]; !ok || r.Spec.Types == nil {
			continue
		}
		raw, err := tail.MarshalType(r.Spec.Types, decl.Type)
		if err != nil {
			continue // the planner checked the type; nothing to decode with
		}
		out = append(out, store.RecordStream{Records: decl, BTF: raw})
	}
	return out
}
