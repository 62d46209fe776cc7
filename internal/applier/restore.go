package applier

import (
	"fmt"
	"os"
	"slices"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/internal/store"
)

// RestorePins pins again the programs and maps whose pins someone removed
// while the kernel still holds them: a program through the link that runs
// it or its recorded ID, a map through the recorded ID once the program is
// seen to use it. Keeping the same objects keeps map contents (counters,
// parameters) and the running chain; what cannot be restored this way is
// left to the plan, which loads it anew. It returns what it restored.
func (ap *Applier) RestorePins(records map[string]*store.Record) ([]string, error) {
	var restored []string
	names := make([]string, 0, len(records))
	for n := range records {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		r, err := ap.restoreOne(records[name])
		if err != nil {
			return restored, fmt.Errorf("%s: %w", name, err)
		}
		restored = append(restored, r...)
	}
	return restored, nil
}

func (ap *Applier) restoreOne(rec *store.Record) ([]string, error) {
	var restored []string
	name := rec.Name
	if ap.pinsPresent(rec) {
		return nil, nil // the common case, answered from bpffs alone
	}
	prog, err := ebpf.LoadPinnedProgram(ap.Layout.Prog(name), nil)
	if err != nil {
		prog = ap.recordedProgram(rec)
		if prog == nil {
			return nil, nil // gone from the kernel: the plan reloads it
		}
		if err := pinFD(ap.Layout.Prog(name), prog.FD()); err != nil {
			prog.Close()
			return nil, err
		}
		restored = append(restored, name+"/prog")
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return restored, err
	}
	uses, _ := info.MapIDs()
	for _, mname := range sortedMapNames(rec.MapIDs) {
		path := ap.Layout.Map(name, mname)
		if _, err := os.Lstat(path); err == nil {
			continue
		}
		id := ebpf.MapID(rec.MapIDs[mname])
		if !slices.Contains(uses, id) {
			continue // not this program's map any more: the plan decides
		}
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			continue
		}
		err = pinFD(path, m.FD())
		m.Close()
		if err != nil {
			return restored, err
		}
		restored = append(restored, name+"/maps/"+mname)
	}
	return restored, nil
}

// pinsPresent reports whether the record's program and map pins all exist.
func (ap *Applier) pinsPresent(rec *store.Record) bool {
	if !exists(ap.Layout.Prog(rec.Name)) {
		return false
	}
	for mname := range rec.MapIDs {
		if !exists(ap.Layout.Map(rec.Name, mname)) {
			return false
		}
	}
	return true
}

// recordedProgram opens the attachment's program while the kernel still
// holds it: the one its own link runs, else the recorded ID (a chain
// member is held by the hook's link or the previous member's map).
func (ap *Applier) recordedProgram(rec *store.Record) *ebpf.Program {
	id := ebpf.ProgramID(rec.ProgramID)
	if rec.Chain == nil {
		if lk, err := link.LoadPinnedLink(ap.Layout.Link(rec.Name), nil); err == nil {
			if info, err := lk.Info(); err == nil {
				id = info.Program
			}
			lk.Close()
		}
	}
	if id == 0 {
		return nil
	}
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return nil
	}
	return prog
}

func sortedMapNames(m map[string]uint32) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
