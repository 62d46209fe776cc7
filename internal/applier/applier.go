// Package applier carries out a plan against the kernel. It works in two
// phases so that a bad apply leaves nothing changed that was running:
//
//  1. prepare: load every new program and its maps (the verifier runs
//     here), in the background, hook by hook in the order the commit
//     needs them (parallel.go).
//  2. commit: as each hook's programs are loaded, attach, swap
//     (bpf_link_update) and write parameters, with an undo step recorded
//     for each change; if any step or any load fails, every step done so
//     far is undone in reverse. Deletions run last, once everything else
//     has succeeded.
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
	"golang.org/x/sys/unix"

	"github.com/leaf-ebpf/leaf/internal/bpffs"
	"github.com/leaf-ebpf/leaf/internal/crashpoint"
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
	// next is a chain member's own PROG_ARRAY to the next member; it is
	// never shared between instances, so that rewiring one chain never
	// touches another.
	next *ebpf.Map
}

func (l *loaded) close() {
	if l == nil {
		return
	}
	l.prog.Close()
	for _, m := range l.maps {
		m.Close()
	}
	if l.next != nil {
		l.next.Close()
	}
}

// Apply carries out the plan. It returns the records of every desired
// attachment as the kernel now holds them. On error nothing has changed
// (except deletions, which run last and are reported, not undone).
func (ap *Applier) Apply(plan *planner.Plan) (map[string]*store.Record, error) {
	if err := ap.cleanStaging(); err != nil {
		return nil, err
	}
	ld, err := ap.prepare(plan)
	if err != nil {
		return nil, err
	}
	defer ld.close()
	var undo undoStack
	records := map[string]*store.Record{}
	var finalize []func()
	fail := func(name string, err error) (map[string]*store.Record, error) {
		kind := errorKind(err)
		if uerr := undo.run(); uerr != nil {
			err = fmt.Errorf("%w (and undoing earlier steps failed: %v)", err, uerr)
		}
		return nil, desired.Errors{{Attachment: name, Field: commitField(kind, err), Message: err.Error(), Kind: kind, Err: err}}
	}
	// A load failed: undo what the loads ready before it let us commit,
	// and name every program that did not load.
	failLoad := func() (map[string]*store.Record, error) {
		uerr := undo.run()
		errs := ld.errs()
		if uerr != nil {
			errs = append(errs, desired.Error{Message: fmt.Sprintf("undoing the steps before the failed load failed: %v", uerr), Kind: desired.KindInternal})
		}
		return nil, errs.Err()
	}
	for _, act := range plan.Actions {
		if act.Kind == planner.Delete || act.Chain != nil {
			continue
		}
		prepared, ok := ld.ready(act.Name)
		if !ok {
			return failLoad()
		}
		rec, fin, err := ap.commit(act, prepared[act.Name], &undo)
		if err != nil {
			return fail(act.Name, err)
		}
		if fin != nil {
			finalize = append(finalize, fin)
		}
		records[act.Name] = rec
	}
	recs, fins, err := ap.commitChains(plan, ld, &undo)
	var ce *chainError
	switch {
	case errors.Is(err, errLoadFailed):
		return failLoad()
	case errors.As(err, &ce):
		return fail(ce.name, ce.err)
	}
	finalize = append(finalize, fins...)
	for n, r := range recs {
		records[n] = r
	}
	if switchedChains(plan) {
		// The old chain instances go next: let the packets inside them
		// finish first.
		waitForPacketsInFlight()
	}
	for _, fin := range finalize {
		fin()
	}
	var errs desired.Errors
	for _, act := range plan.Actions {
		if act.Kind == planner.Delete {
			detachPinned(ap.Layout.Link(act.Name))
			if err := ap.Layout.Remove(act.Name); err != nil {
				errs = append(errs, desired.Error{Attachment: act.Name, Message: fmt.Sprintf("remove pins: %v", err)})
			}
			crashpoint.Hit(crashpoint.Deleted)
		}
	}
	for _, cp := range plan.Chains {
		if cp.Kind == planner.ChainRemove {
			detachPinned(ap.Layout.HookLink(cp.HookID))
			if err := os.RemoveAll(filepath.Dir(ap.Layout.HookLink(cp.HookID))); err != nil {
				errs = append(errs, desired.Error{Message: fmt.Sprintf("hook %s: remove link pin: %v", cp.HookID, err)})
			}
			crashpoint.Hit(crashpoint.Deleted)
		}
	}
	return records, errs.Err()
}

// paramError is a parameter value the map cannot take: the document's
// problem, not leafd's.
type paramError struct{ err error }

func (e *paramError) Error() string { return e.err.Error() }
func (e *paramError) Unwrap() error { return e.err }

// prepare starts loading the programs of every create, replace and
// reattach (parallel.go), if leafd has the file descriptors for them.
func (ap *Applier) prepare(plan *planner.Plan) (*loads, error) {
	if err := checkFDBudget(plan); err != nil {
		return nil, err
	}
	return ap.startLoads(plan), nil
}

// checkFDBudget refuses a plan whose loads would need more file
// descriptors than leafd has left (every program and map is held open
// until the apply ends), before anything is loaded: a clear refusal
// instead of EMFILE half-way through thousands of loads.
func checkFDBudget(plan *planner.Plan) error {
	need := 0
	for _, act := range plan.Actions {
		if needsLoad(act) && act.Desired != nil && act.Desired.Spec != nil {
			need += 2 + len(act.Desired.Spec.Maps) // program, next map, maps
		}
		if fusedLoad(act) {
			need += 2 + len(act.Desired.Chain.FuseSpec.Maps) // its handle of the fused program, its maps and run counter
		}
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return nil
	}
	open, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	// A margin for the API, the store and the netlink sockets.
	const margin = 64
	if left := int(lim.Cur) - len(open) - margin; need > left {
		return desired.Errors{{Field: "spec.attachments", Kind: desired.KindLimit,
			Message: fmt.Sprintf("loading would need about %d file descriptors and leafd has %d left (RLIMIT_NOFILE %d): apply fewer attachments at once or raise the limit", need, left, lim.Cur)}}
	}
	return nil
}

// needsLoad reports whether an action needs a new program instance: a
// create or replace, or a chain member among its chain's fresh ones.
func needsLoad(act *planner.Action) bool {
	if act.Chain != nil && act.Chain.Fused {
		return false // prepareFusedChain loads the hook's one program
	}
	if act.Chain != nil {
		for i, r := range act.Chain.Members {
			if r == act.Desired {
				return i < act.Chain.Fresh
			}
		}
		return false
	}
	return act.Kind == planner.Create || act.Kind == planner.Replace
}

// load loads the desired program with its load-time constants, reusing
// the attachment's pinned maps where they are compatible so that counters
// and parameters survive an upgrade. An unpinned attachment has none to
// look for (and every bpffs lookup costs the attach that follows;
// bpffs.Dirs).
func (ap *Applier) load(name string, r *planner.Resolved, unpinned bool) (*loaded, error) {
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
	if err := setConstParams(spec, r); err != nil {
		return nil, err
	}
	chainMap := ""
	if r.Chain != nil {
		chainMap = r.Chain.Map
	}
	for _, ms := range spec.Maps {
		ms.Pinning = ebpf.PinNone // leafd pins what it loads itself
	}
	var replacements, migrations map[string]*ebpf.Map
	if !unpinned {
		replacements = ap.pinnedReplacements(name, spec, chainMap)
		defer closeMaps(replacements)
		migrations = ap.migrationSources(name, spec, r.Package.Manifest, chainMap)
		defer closeMaps(migrations)
	}
	coll, err := newCollection(spec, ebpf.CollectionOptions{MapReplacements: replacements})
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
		if mname == chainMap {
			l.next = m
			continue
		}
		l.maps[mname] = m
		l.fresh[mname] = replacements[mname] == nil
	}
	coll.Maps = nil
	coll.Close()
	for mname, old := range migrations {
		if err := migrate(old, l.maps[mname]); err != nil {
			l.close()
			return nil, fmt.Errorf("%s: migrate map %s: %w", r.Package.Ref(), mname, err)
		}
	}
	return l, nil
}

// setConstParams writes the attachment's load-time parameters into the
// spec's variables.
func setConstParams(spec *ebpf.CollectionSpec, r *planner.Resolved) error {
	for pname, v := range r.ConstParams {
		p := r.Package.Manifest.Param(pname)
		typ, _ := p.TypeOf()
		gv, err := typ.GoValue(v)
		if err != nil {
			return fmt.Errorf("parameter %s: %w", pname, err)
		}
		if err := spec.Variables[p.Const].Set(gv); err != nil {
			return fmt.Errorf("parameter %s: set %s: %w", pname, p.Const, err)
		}
	}
	return nil
}

// pinnedReplacements opens the attachment's pinned maps that the spec can
// use as they are, so that counters and parameters survive a new load.
// It also stops libbpf-style pinning: leaf pins maps itself, under its own
// layout, whatever the object asks.
func (ap *Applier) pinnedReplacements(name string, spec *ebpf.CollectionSpec, chainMap string) map[string]*ebpf.Map {
	replacements := map[string]*ebpf.Map{}
	for mname, ms := range spec.Maps {
		if mname == chainMap {
			continue
		}
		if m := ap.compatiblePin(name, mname, ms); m != nil {
			replacements[mname] = m
		}
	}
	return replacements
}

// compatiblePin opens the attachment's pinned map mname if ms can use it
// as it is. Global data sections (".rodata", ...) are never reused: they
// hold the new program's constants.
func (ap *Applier) compatiblePin(name, mname string, ms *ebpf.MapSpec) *ebpf.Map {
	if strings.HasPrefix(mname, ".") {
		return nil
	}
	pinned, err := ebpf.LoadPinnedMap(ap.Layout.Map(name, mname), nil)
	if err != nil {
		return nil
	}
	if ms.Compatible(pinned) != nil {
		pinned.Close()
		return nil
	}
	return pinned
}

// unpinnedNames are the plan's attachments observed with no pins.
func unpinnedNames(plan *planner.Plan) map[string]bool {
	out := map[string]bool{}
	for _, act := range plan.Actions {
		if act.Unpinned() {
			out[act.Name] = true
		}
	}
	return out
}

// cleanStaging removes staging leftovers of an interrupted apply.
func (ap *Applier) cleanStaging() error {
	entries, err := ap.Layout.AttachmentEntries()
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

// switchedChains reports whether the plan switched a running chain to a
// new one, so that old chain instances are about to be retired.
func switchedChains(plan *planner.Plan) bool {
	for _, cp := range plan.Chains {
		if cp.Kind == planner.ChainSwitch && len(cp.Old) > 0 {
			return true
		}
	}
	return false
}

// detachPinned detaches the link pinned at path, if any. Unpinning alone
// would detach it too, but only once the kernel frees the link, a moment
// later; detaching first makes a delete take effect before it returns.
// Links that cannot be detached (perf events) go with their pin.
func detachPinned(path string) {
	lk, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		return
	}
	defer lk.Close()
	_ = lk.Detach()
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
