// Package observer reads what the kernel and bpffs hold for leaf's
// attachments. Observed state always comes from the kernel, never from
// memory alone: that is what lets leafd adopt its programs after a restart
// and notice when something was removed behind its back.
package observer

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/internal/bpffs"
)

// Attachment is what the kernel holds for one attachment name.
type Attachment struct {
	Name string
	// HasPins: the attachment's pin directory exists.
	HasPins   bool
	ProgramID ebpf.ProgramID // 0 if the program pin is missing
	// Tag is the pinned program's tag (a hash of its instructions).
	Tag    string
	LinkID link.ID // 0 if the link pin is missing
	// LinkProgramID is the program the pinned link runs.
	LinkProgramID ebpf.ProgramID
	// Attached: the link still holds its hook.
	Attached bool
	// Maps lists the pinned maps by name.
	Maps map[string]ebpf.MapID
	// HasNext: a chain member's next-member PROG_ARRAY is pinned.
	HasNext bool
	// NextProgramID is the program in the next-member PROG_ARRAY (0: none,
	// the member is last).
	NextProgramID ebpf.ProgramID
	// Problem says why the attachment is not healthy, if it is not.
	Problem string
	// ParamsDrift says how the parameter maps differ from the values
	// recorded for them ("" when they hold them); see CheckParams.
	ParamsDrift string
}

// Healthy reports whether program and link are pinned and attached.
func (a *Attachment) Healthy() bool {
	return a.ProgramID != 0 && a.LinkID != 0 && a.Attached
}

// Observe reads the pins of the named attachments and of every other
// attachment directory under the layout.
//
// A name the attachments directory lacks is not looked up: every bpffs
// path walk costs the next XDP or TCX attach (bpffs.Dirs), and a new
// attachment has nothing pinned to look at.
func Observe(layout bpffs.Layout, names []string) (map[string]*Attachment, error) {
	entries, err := layout.AttachmentEntries()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("list pins: %w", err)
	}
	present := map[string]bool{}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "_") {
			present[e.Name()] = e.IsDir()
		}
	}
	out := map[string]*Attachment{}
	for name, dir := range present {
		if dir {
			out[name] = observePins(layout, name)
		}
	}
	for _, name := range names {
		if out[name] != nil {
			continue
		}
		if _, listed := present[name]; listed {
			// Not a directory: in the way of the attachment's pins.
			out[name] = observePins(layout, name)
			continue
		}
		out[name] = &Attachment{Name: name, Maps: map[string]ebpf.MapID{}, Problem: "not pinned"}
	}
	return out, nil
}

// Names returns the observed names, sorted.
func Names(obs map[string]*Attachment) []string {
	names := make([]string, 0, len(obs))
	for n := range obs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// observePins reads the pins of an attachment the attachments directory
// lists.
func observePins(layout bpffs.Layout, name string) *Attachment {
	a := &Attachment{Name: name, Maps: map[string]ebpf.MapID{}, HasPins: true}
	if id, tag, err := pinnedProgram(layout.Prog(name)); err == nil {
		a.ProgramID, a.Tag = id, tag
	} else {
		a.Problem = "program pin missing"
	}
	if id, prog, attached, err := pinnedLink(layout.Link(name)); err == nil {
		a.LinkID, a.LinkProgramID, a.Attached = id, prog, attached
		if prog != a.ProgramID && a.ProgramID != 0 {
			a.Problem = fmt.Sprintf("link runs program %d, not the pinned program %d", prog, a.ProgramID)
		}
		if !attached {
			a.Problem = "link detached from its hook"
		}
	} else if a.Problem == "" {
		a.Problem = "link pin missing"
	}
	if next, err := ebpf.LoadPinnedMap(layout.Next(name), nil); err == nil {
		a.HasNext = true
		var id uint32
		if err := next.Lookup(uint32(0), &id); err == nil {
			a.NextProgramID = ebpf.ProgramID(id)
		}
		next.Close()
	}
	entries, err := os.ReadDir(layout.MapsDir(name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		a.Problem = fmt.Sprintf("maps: %v", err)
	}
	for _, e := range entries {
		if id, err := pinnedMapID(layout.Map(name, e.Name())); err == nil {
			a.Maps[e.Name()] = id
		}
	}
	return a
}

// Hook is what the kernel holds for one chained (XDP or TC) hook.
type Hook struct {
	ID string
	// LinkID is 0 when the hook's link pin is missing.
	LinkID link.ID
	// ProgramID is the program the link runs: the chain's first member.
	ProgramID ebpf.ProgramID
	// Attached: the link still holds the hook.
	Attached bool
}

// ObserveHooks reads every hook link pinned under the layout.
func ObserveHooks(layout bpffs.Layout) (map[string]*Hook, error) {
	ids, err := layout.Hooks()
	if err != nil {
		return nil, fmt.Errorf("list hook pins: %w", err)
	}
	out := map[string]*Hook{}
	for _, id := range ids {
		h := &Hook{ID: id}
		out[id] = h
		if lid, prog, attached, err := pinnedLink(layout.HookLink(id)); err == nil {
			h.LinkID, h.ProgramID, h.Attached = lid, prog, attached
		}
	}
	return out, nil
}

// ChainOrder follows a chain from its first program through each member's
// next-member map and returns the attachment names in order. It stops at
// a program that is no attachment's, or at a loop.
//
// Members of a fused chain all pin the one program the hook runs: they
// are returned in the recorded order (recorded lists the names as leaf
// applied them; the fused program fixes the order when it is built).
func ChainOrder(head ebpf.ProgramID, attachments map[string]*Attachment, recorded []string) []string {
	byProg := map[ebpf.ProgramID]string{}
	var fused []string
	for name, a := range attachments {
		if a.ProgramID != 0 {
			byProg[a.ProgramID] = name
		}
		if head != 0 && a.ProgramID == head && !a.HasNext {
			fused = append(fused, name)
		}
	}
	if len(fused) > 0 {
		return fusedOrder(fused, recorded)
	}
	var order []string
	seen := map[string]bool{}
	for id := head; id != 0; {
		name, ok := byProg[id]
		if !ok || seen[name] {
			return append(order, fmt.Sprintf("<program %d>", id))
		}
		seen[name] = true
		order = append(order, name)
		id = attachments[name].NextProgramID
	}
	return order
}

// fusedOrder returns the members running a fused program: those recorded
// in the recorded order, then any other in name order.
func fusedOrder(running, recorded []string) []string {
	in := map[string]bool{}
	for _, n := range running {
		in[n] = true
	}
	var out []string
	for _, n := range recorded {
		if in[n] {
			out = append(out, n)
			delete(in, n)
		}
	}
	rest := make([]string, 0, len(in))
	for n := range in {
		rest = append(rest, n)
	}
	sort.Strings(rest)
	return append(out, rest...)
}
