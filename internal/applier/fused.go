package applier

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/internal/chain"
	"github.com/leaf-ebpf/leaf/internal/crashpoint"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/planner"
)

// prepareFusedChain loads the one program of a fused chain the plan
// builds: every member's code in order, each member's maps reused from its
// pins (so their contents survive a switch between fused versions or from
// tail calls). Each member's prepared entry then holds a handle of the
// fused program and its own maps, and the chain commits like a tail-call
// chain whose members are all fresh, minus the wiring.
//
// When the kernel refuses the fused program and the hook does not insist
// on it, the chain falls back to tail calls: the plan is changed to say so
// and why, and the members load one by one, as tail-call members.
func (ap *Applier) prepareFusedChain(cp *planner.ChainPlan, unpinned map[string]bool) loadResult {
	ls, err := ap.loadFused(cp, unpinned)
	if err == nil {
		crashpoint.Hit(crashpoint.Loaded)
		return loadResult{loaded: ls}
	}
	if cp.ForceFused {
		return loadResult{errs: desired.Errors{loadFailure(cp.Members[0].Attachment.Name, "hook.chainMode", err)}}
	}
	cp.Fused, cp.FuseRefused = false, refusal(err)
	cp.ModeReason = "the fused chain was refused: " + cp.FuseRefused
	res := loadResult{loaded: map[string]*loaded{}}
	for _, r := range cp.Members[:cp.Fresh] {
		name := r.Attachment.Name
		l, err := ap.load(name, r, unpinned[name])
		if err != nil {
			res.errs = append(res.errs, loadFailure(name, "package", err))
			continue
		}
		res.loaded[name] = l
		crashpoint.Hit(crashpoint.Loaded)
	}
	return res
}

// loadFused builds and loads the fused program of a chain.
func (ap *Applier) loadFused(cp *planner.ChainPlan, unpinned map[string]bool) (map[string]*loaded, error) {
	members := make([]chain.Member, len(cp.Members))
	replacements := map[string]*ebpf.Map{}
	defer closeMaps(replacements)
	for i, r := range cp.Members {
		spec := r.Chain.FuseSpec.Copy()
		fn := r.Program.Function
		spec.Programs = map[string]*ebpf.ProgramSpec{fn: spec.Programs[fn]}
		if err := setConstParams(spec, r); err != nil {
			return nil, fmt.Errorf("%s: %w", r.Attachment.Name, err)
		}
		members[i] = chain.Member{Spec: spec, Function: fn, ProceedOn: r.Chain.ProceedOn}
	}
	opts := chain.FuseOptions{CountRuns: cp.Members[0].Chain.CountRuns}
	if cp.Hook.Type == manifest.HookTC {
		// As in a tail-call chain: let TCX go on to the programs attached
		// after leaf's link.
		next := int32(-1)
		opts.EndVerdict = &next
	}
	spec, err := chain.Fuse(members, opts)
	if err != nil {
		return nil, err
	}
	// Every member's maps, its run counter included, are those pinned
	// for it where they fit.
	migrations := map[string]*ebpf.Map{}
	defer closeMaps(migrations)
	for key, ms := range spec.Maps {
		ms.Pinning = ebpf.PinNone
		if i, mname, ok := chain.SplitMemberMap(key); ok && i < len(cp.Members) && !unpinned[cp.Members[i].Attachment.Name] {
			if m := ap.compatiblePin(cp.Members[i].Attachment.Name, mname, ms); m != nil {
				replacements[key] = m
			} else if m := ap.migrationSource(cp.Members[i].Attachment.Name, mname, ms, cp.Members[i].Package.Manifest); m != nil {
				migrations[key] = m
			}
		}
	}
	coll, err := newCollection(spec, ebpf.CollectionOptions{MapReplacements: replacements})
	if err != nil {
		return nil, fmt.Errorf("load the fused chain of %d members: %w", len(members), err)
	}
	defer coll.Close()
	out := map[string]*loaded{}
	var failed error
	for _, r := range cp.Members {
		p, err := coll.Programs[chain.FusedProgram].Clone()
		if err != nil {
			failed = err
			break
		}
		out[r.Attachment.Name] = &loaded{prog: p, maps: map[string]*ebpf.Map{}, fresh: map[string]bool{}}
	}
	for key, m := range coll.Maps {
		i, mname, ok := chain.SplitMemberMap(key)
		if !ok || i >= len(cp.Members) || out[cp.Members[i].Attachment.Name] == nil || strings.HasPrefix(mname, ".") {
			continue // closed with the collection; the program holds its own reference
		}
		l := out[cp.Members[i].Attachment.Name]
		l.maps[mname] = m
		l.fresh[mname] = replacements[key] == nil
		delete(coll.Maps, key)
	}
	for key, old := range migrations {
		i, mname, _ := chain.SplitMemberMap(key)
		if l := out[cp.Members[i].Attachment.Name]; l != nil && l.maps[mname] != nil && failed == nil {
			if err := migrate(old, l.maps[mname]); err != nil {
				failed = fmt.Errorf("%s: migrate map %s: %w", cp.Members[i].Attachment.Name, mname, err)
			}
		}
	}
	if failed != nil {
		for _, l := range out {
			l.close()
		}
		return nil, failed
	}
	return out, nil
}

// refusal is the one-line reason the kernel gave for refusing a program:
// the verifier's cause and the last line of its log.
func refusal(err error) string {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		msg := ve.Cause.Error()
		if n := len(ve.Log); n > 0 {
			msg += ": " + ve.Log[n-1]
		}
		return msg
	}
	return err.Error()
}
