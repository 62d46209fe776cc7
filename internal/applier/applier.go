// Package applier carries out a plan against the kernel. It works in two
// phases so that a bad apply changes nothing that was running:
//
//  1. prepare: load every new program and its maps (the verifier runs
//     here); nothing is attached or pinned yet.
//  2. commit: attach, swap (bpf_link_update) and write parameters, with an
//     undo step recorded for each change; if any step fails, every step
//     done so far is undone in reverse. Deletions run last, once
//     everything else has succeeded.
package applier

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/internal/bpffs"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/planner"
	"github.com/leaf-ebpf/leaf/internal/store"
)

// Applier applies plans under one bpffs layout.
type Applier struct {
	Layout bpffs.Layout
	// Now is the clock for record timestamps.
	Now func() time.Time
}

// loaded is a program loaded in the prepare phase, with its maps.
type loaded struct {
	prog *ebpf.Program
	// maps holds every named (non-section) map the program uses.
	maps map[string]*ebpf.Map
	// fresh names the maps created by this load (not reused from pins).
	fresh map[string]bool
}

func (l *loaded) close() {
	if l == nil {
		return
	}
	l.prog.Close()
	for _, m := range l.maps {
		m.Close()
	}
}

// Apply carries out the plan. It returns the records of every desired
// attachment as the kernel now holds them. On error nothing has changed
// (except deletions, which run last and are reported, not undone).
func (ap *Applier) Apply(plan *planner.Plan) (map[string]*store.Record, error) {
	if err := ap.cleanStaging(); err != nil {
		return nil, err
	}
	prepared, err := ap.prepare(plan)
	defer func() {
		for _, l := range prepared {
			l.close()
		}
	}()
	if err != nil {
		return nil, err
	}
	var undo undoStack
	records := map[string]*store.Record{}
	var finalize []func()
	for _, act := range plan.Actions {
		if act.Kind == planner.Delete {
			continue
		}
		rec, fin, err := ap.commit(act, prepared[act.Name], &undo)
		if err != nil {
			if uerr := undo.run(); uerr != nil {
				err = fmt.Errorf("%w (and undoing earlier steps failed: %v)", err, uerr)
			}
			return nil, desired.Errors{{Attachment: act.Name, Message: err.Error()}}
		}
		if fin != nil {
			finalize = append(finalize, fin)
		}
		records[act.Name] = rec
	}
	for _, fin := range finalize {
		fin()
	}
	var errs desired.Errors
	for _, act := range plan.Actions {
		if act.Kind == planner.Delete {
			if err := ap.Layout.Remove(act.Name); err != nil {
				errs = append(errs, desired.Error{Attachment: act.Name, Message: fmt.Sprintf("remove pins: %v", err)})
			}
		}
	}
	return records, errs.Err()
}

// prepare loads the programs of every create, replace and reattach.
func (ap *Applier) prepare(plan *planner.Plan) (map[string]*loaded, error) {
	out := map[string]*loaded{}
	var errs desired.Errors
	for _, act := range plan.Actions {
		if act.Kind != planner.Create && act.Kind != planner.Replace {
			continue
		}
		l, err := ap.load(act.Name, act.Desired)
		if err != nil {
			errs = append(errs, desired.Error{Attachment: act.Name, Field: "package", Message: err.Error()})
			continue
		}
		out[act.Name] = l
	}
	return out, errs.Err()
}

// load loads the desired program with its load-time constants, reusing
// the attachment's pinned maps where they are compatible so that counters
// and parameters survive an upgrade.
func (ap *Applier) load(name string, r *planner.Resolved) (*loaded, error) {
	spec := r.Spec.Copy()
	fn := r.Program.Function
	ps := spec.Programs[fn].Copy()
	spec.Programs = map[string]*ebpf.ProgramSpec{fn: ps}
	// A cgroup skb program is loaded for the direction it will attach to,
	// whatever its ELF section says.
	if h := r.Attachment.Hook; h.Type == manifest.HookCgroupSKB {
		ps.AttachType = ebpf.AttachCGroupInetIngress
		if h.Direction == "egress" {
			ps.AttachType = ebpf.AttachCGroupInetEgress
		}
	}
	for pname, v := range r.ConstParams {
		p := r.Package.Manifest.Param(pname)
		typ, _ := manifest.ParseType(p.Type)
		gv, err := typ.GoValue(v)
		if err != nil {
			return nil, fmt.Errorf("parameter %s: %w", pname, err)
		}
		if err := spec.Variables[p.Const].Set(gv); err != nil {
			return nil, fmt.Errorf("parameter %s: set %s: %w", pname, p.Const, err)
		}
	}
	replacements := map[string]*ebpf.Map{}
	defer func() {
		for _, m := range replacements {
			m.Close()
		}
	}()
	for mname, ms := range spec.Maps {
		if strings.HasPrefix(mname, ".") {
			continue
		}
		pinned, err := ebpf.LoadPinnedMap(ap.Layout.Map(name, mname), nil)
		if err != nil {
			continue
		}
		if ms.Compatible(pinned) != nil {
			pinned.Close()
			continue
		}
		replacements[mname] = pinned
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: replacements})
	if err != nil {
		return nil, explainLoadError(r, err)
	}
	l := &loaded{prog: coll.Programs[fn], maps: map[string]*ebpf.Map{}, fresh: map[string]bool{}}
	delete(coll.Programs, fn)
	for mname, m := range coll.Maps {
		if strings.HasPrefix(mname, ".") {
			m.Close() // the program holds its own reference
			continue
		}
		l.maps[mname] = m
		l.fresh[mname] = replacements[mname] == nil
	}
	coll.Maps = nil
	coll.Close()
	return l, nil
}

// explainLoadError keeps the verifier's words: the cause and the end of
// its log, where the rejected instruction is.
func explainLoadError(r *planner.Resolved, err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		log := ve.Log
		const keep = 12
		if len(log) > keep {
			log = append([]string{fmt.Sprintf("(%d earlier lines omitted)", len(log)-keep)}, log[len(log)-keep:]...)
		}
		return fmt.Errorf("%s: program %s was rejected by the verifier: %v\nverifier log:\n%s", r.Package.Ref(), r.Program.Name, ve.Cause, strings.Join(log, "\n"))
	}
	return fmt.Errorf("%s: load program %s: %w", r.Package.Ref(), r.Program.Name, err)
}

// cleanStaging removes staging leftovers of an interrupted apply.
func (ap *Applier) cleanStaging() error {
	entries, err := os.ReadDir(ap.Layout.AttachmentsDir())
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(ap.Layout.AttachmentsDir(), 0o700)
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "_") {
			if err := os.RemoveAll(filepath.Join(ap.Layout.AttachmentsDir(), e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// undoStack records how to reverse each committed step.
type undoStack []func() error

func (u *undoStack) push(f func() error) { *u = append(*u, f) }

func (u *undoStack) run() error {
	var errs []error
	for i := len(*u) - 1; i >= 0; i-- {
		if err := (*u)[i](); err != nil {
			errs = append(errs, err)
		}
	}
	*u = nil
	return errors.Join(errs...)
}
