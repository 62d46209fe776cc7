package applier

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/internal/bpffs"
	"github.com/leaf-ebpf/leaf/internal/crashpoint"
	"github.com/leaf-ebpf/leaf/internal/planner"
	"github.com/leaf-ebpf/leaf/internal/store"
)

// commitChain carries out one hook's chain plan: wire the fresh instances
// to each other and to the kept tail, write parameters, pin, and switch
// the hook to the new first member in one atomic step.
func (ap *Applier) commitChain(cp *planner.ChainPlan, plan *planner.Plan, prepared map[string]*loaded, undo *undoStack) (map[string]*store.Record, []func(), error) {
	if cp.Kind == planner.ChainRemove {
		return nil, nil, nil
	}
	acts := map[string]*planner.Action{}
	for _, a := range plan.Actions {
		if a.Chain == cp {
			acts[a.Name] = a
		}
	}
	var fins []func()
	progs, closeKept, err := ap.chainPrograms(cp, prepared)
	if err != nil {
		return nil, nil, err
	}
	fins = append(fins, closeKept)
	if cp.Kind == planner.ChainKeep {
		recs, err := ap.keepChain(cp, acts, undo)
		closeKept()
		return recs, nil, err
	}
	// Wire each fresh instance to its successor. Their next maps are new,
	// so nothing that runs sees this until the switch. (A fused chain has
	// its order built in.)
	for i := 0; i < cp.Fresh && i+1 < len(progs) && !cp.Fused; i++ {
		l := prepared[cp.Members[i].Attachment.Name]
		if err := l.next.Put(uint32(0), progs[i+1]); err != nil {
			closeKept()
			return nil, nil, fmt.Errorf("wire %s to %s: %w", cp.Members[i].Attachment.Name, cp.Members[i+1].Attachment.Name, err)
		}
		crashpoint.Hit(crashpoint.ChainWired)
	}
	for i, r := range cp.Members {
		name := r.Attachment.Name
		act := acts[name]
		if i < cp.Fresh {
			l := prepared[name]
			if err := ap.writeParams(act, l.maps, undo); err != nil {
				closeKept()
				return nil, nil, &memberError{name, err}
			}
			fin, err := ap.swapMemberPins(name, l, undo)
			if err != nil {
				closeKept()
				return nil, nil, &memberError{name, err}
			}
			fins = append(fins, fin)
		} else if act.Kind == planner.UpdateParams {
			if err := ap.updateMemberParams(act, undo); err != nil {
				closeKept()
				return nil, nil, &memberError{name, err}
			}
		}
	}
	linkID, fin, err := ap.switchHook(cp, progs[0], undo)
	if err != nil {
		closeKept()
		return nil, nil, err
	}
	fins = append(fins, fin)
	recs, err := ap.chainRecords(cp, acts, prepared, progs, linkID)
	return recs, fins, err
}

// chainPrograms returns the programs of the new chain in order: the fresh
// instances, then the kept tail's pinned programs.
func (ap *Applier) chainPrograms(cp *planner.ChainPlan, prepared map[string]*loaded) ([]*ebpf.Program, func(), error) {
	progs := make([]*ebpf.Program, len(cp.Members))
	var kept []*ebpf.Program
	closeKept := func() {
		for _, p := range kept {
			p.Close()
		}
		kept = nil
	}
	for i, r := range cp.Members {
		name := r.Attachment.Name
		if i < cp.Fresh {
			progs[i] = prepared[name].prog
			continue
		}
		p, err := ebpf.LoadPinnedProgram(ap.Layout.Prog(name), nil)
		if err != nil {
			closeKept()
			return nil, nil, fmt.Errorf("%s: open pinned program: %w", name, err)
		}
		kept = append(kept, p)
		progs[i] = p
	}
	return progs, closeKept, nil
}

// swapMemberPins pins a fresh instance in a staging directory and swaps it
// into place. The old instance's pins move aside — its next map keeps
// the old chain intact for packets still in it — and go once the apply
// has succeeded.
func (ap *Applier) swapMemberPins(name string, l *loaded, undo *undoStack) (func(), error) {
	// Apply's cleanStaging left no staging directory behind.
	staging := ap.Layout.Staging(name)
	err := pinFD(filepath.Join(staging, "prog"), l.prog.FD())
	if err == nil && l.next != nil { // a fused member has none
		err = pinFD(filepath.Join(staging, "next"), l.next.FD())
	}
	for mname, m := range l.maps {
		if err == nil {
			err = pinFD(filepath.Join(staging, "maps", mname), m.FD())
		}
	}
	if err != nil {
		os.RemoveAll(staging)
		return nil, err
	}
	return ap.swapInPins(name, undo)
}

func (ap *Applier) updateMemberParams(act *planner.Action, undo *undoStack) error {
	maps, err := ap.pinnedMaps(act.Name)
	if err != nil {
		return err
	}
	defer closeMaps(maps)
	return ap.writeParams(act, maps, undo)
}

// switchHook makes the hook run head: one bpf_link_update of the hook's
// link, or a new link when there is none (or it was detached).
func (ap *Applier) switchHook(cp *planner.ChainPlan, head *ebpf.Program, undo *undoStack) (link.ID, func(), error) {
	pin := ap.Layout.HookLink(cp.HookID)
	if !cp.NewLink {
		lk, err := link.LoadPinnedLink(pin, nil)
		if err != nil {
			return 0, nil, fmt.Errorf("open hook link: %w", err)
		}
		old, err := ebpf.NewProgramFromID(cp.ObservedHook.ProgramID)
		if err != nil {
			lk.Close()
			return 0, nil, fmt.Errorf("open running first member: %w", err)
		}
		if err := lk.Update(head); err != nil {
			lk.Close()
			old.Close()
			return 0, nil, fmt.Errorf("switch %s to the new chain: %w", cp.Hook, err)
		}
		undo.push(func() error { return lk.Update(old) })
		crashpoint.Hit(crashpoint.HookSwitched)
		return cp.ObservedHook.LinkID, func() { lk.Close(); old.Close() }, nil
	}
	if oh := cp.ObservedHook; oh != nil && oh.Attached {
		// Only an XDP mode change gets here with an attached link: the
		// kernel cannot change the mode of a link, so the old one goes
		// first.
		if lk, err := link.LoadPinnedLink(pin, nil); err == nil {
			lk.Detach()
			lk.Close()
		}
	}
	target := cp.Members[0].Target
	lk, err := target.AttachChain(head)
	if err != nil {
		return 0, nil, fmt.Errorf("attach to %s: %w", cp.Hook, err)
	}
	undo.push(lk.Close)
	crashpoint.Hit(crashpoint.HookSwitched)
	next := bpffs.Sibling(pin, "next")
	newDir := !exists(filepath.Dir(pin))
	if err := os.MkdirAll(filepath.Dir(pin), 0o700); err != nil {
		return 0, nil, err
	}
	if newDir {
		undo.push(func() error { return os.RemoveAll(filepath.Dir(pin)) })
	}
	os.Remove(next)
	if err := lk.Pin(next); err != nil {
		return 0, nil, fmt.Errorf("pin hook link: %w", err)
	}
	crashpoint.Hit(crashpoint.PinStaged)
	if err := os.Rename(next, pin); err != nil {
		os.Remove(next)
		return 0, nil, fmt.Errorf("pin hook link: %w", err)
	}
	undo.push(func() error { return os.Remove(pin) })
	info, err := lk.Info()
	if err != nil {
		return 0, nil, err
	}
	return info.ID, func() { lk.Close() }, nil
}

// keepChain records an unchanged chain, writing changed map parameters.
func (ap *Applier) keepChain(cp *planner.ChainPlan, acts map[string]*planner.Action, undo *undoStack) (map[string]*store.Record, error) {
	recs := map[string]*store.Record{}
	for i, r := range cp.Members {
		act := acts[r.Attachment.Name]
		if act.Kind == planner.UpdateParams {
			if err := ap.updateMemberParams(act, undo); err != nil {
				return nil, &memberError{act.Name, err}
			}
		}
		rec, err := ap.keep(act)
		if err != nil {
			return nil, err
		}
		rec.MapParams = r.MapParams
		rec.LinkID = uint32(cp.ObservedHook.LinkID)
		rec.Chain = memberRecord(cp, r, i)
		recs[act.Name] = rec
	}
	return recs, nil
}

func (ap *Applier) chainRecords(cp *planner.ChainPlan, acts map[string]*planner.Action, prepared map[string]*loaded, progs []*ebpf.Program, linkID link.ID) (map[string]*store.Record, error) {
	recs := map[string]*store.Record{}
	for i, r := range cp.Members {
		name := r.Attachment.Name
		act := acts[name]
		var rec *store.Record
		if i < cp.Fresh {
			l := prepared[name]
			var err error
			if rec, err = ap.recordFor(act, l.prog, l.maps); err != nil {
				return nil, err
			}
		} else {
			var err error
			if rec, err = ap.keep(act); err != nil {
				return nil, err
			}
			rec.MapParams = r.MapParams
			if act.Kind == planner.UpdateParams {
				rec.UpdatedAt = ap.now()
			}
		}
		rec.LinkID = uint32(linkID)
		rec.Chain = memberRecord(cp, r, i)
		recs[name] = rec
	}
	return recs, nil
}

func memberRecord(cp *planner.ChainPlan, r *planner.Resolved, index int) *store.ChainMember {
	m := &store.ChainMember{
		Hook: cp.Key, Index: index, Priority: r.Chain.Priority, ProceedOn: r.Chain.ProceedOn,
		Mode: r.Chain.Mode, Map: r.Chain.Map, CountRuns: r.Chain.CountRuns,
		Fused: cp.Fused, ModeReason: cp.ModeReason, FuseRefused: cp.FuseRefused,
	}
	if r.Attachment.Hook.Type == "xdp" {
		m.XDPMode = r.Attachment.Hook.XDPMode()
	}
	return m
}

// memberError is a failure of one chain member, so that the error names
// that member rather than the chain's first.
type memberError struct {
	name string
	err  error
}

func (e *memberError) Error() string { return e.err.Error() }
func (e *memberError) Unwrap() error { return e.err }
