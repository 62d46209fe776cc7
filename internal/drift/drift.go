// Package drift compares what leaf applied (the store's records) with what
// the kernel holds now, and finds programs leaf does not own on the XDP and
// TC hooks it manages. It only looks; the reconciler decides what to
// repair, and secure mode what to remove.
//
// Every check reads the kernel and bpffs afresh: a pinned link that no
// longer holds its hook, a pin someone removed, a hook whose link runs a
// program that is not leaf's first member, an interface that went away.
package drift

import (
	"fmt"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/internal/bpffs"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/netnsutil"
	"github.com/leaf-ebpf/leaf/internal/observer"
	"github.com/leaf-ebpf/leaf/internal/store"
)

// Kind is what drifted.
type Kind string

// Kinds of drift.
const (
	// LinkMissing: a link pin is gone; unpinning the last reference
	// detached the link.
	LinkMissing Kind = "link-missing"
	// LinkDetached: the pinned link no longer holds its hook (bpftool link
	// detach, a TCX link detached by ID, the interface went and came back).
	LinkDetached Kind = "link-detached"
	// ProgramReplaced: the hook's link runs a program that is not leaf's
	// (for a chain: not its first member).
	ProgramReplaced Kind = "program-replaced"
	// ChainChanged: a member's next-member map no longer points at the
	// next member.
	ChainChanged Kind = "chain-changed"
	// ProgPinMissing, MapPinMissing, NextPinMissing: a pin under the
	// attachment's directory was removed.
	ProgPinMissing Kind = "prog-pin-missing"
	MapPinMissing  Kind = "map-pin-missing"
	NextPinMissing Kind = "next-pin-missing"
	// InterfaceMissing: the hook's interface (or its network namespace)
	// is gone; the chain is re-attached when it comes back.
	InterfaceMissing Kind = "interface-missing"
)

// Drift is one difference between what leaf applied and the kernel.
type Drift struct {
	Kind Kind
	// Attachment is empty for a drift of a whole hook.
	Attachment string
	// Hook describes the hook for people; HookKey identifies it.
	Hook    string
	HookKey string
	// Map names the map of a MapPinMissing.
	Map    string
	Detail string
}

// Key identifies the drift across checks, so it is reported once.
func (d Drift) Key() string {
	return string(d.Kind) + "|" + d.Attachment + "|" + d.HookKey + "|" + d.Map
}

// Report is the outcome of one check.
type Report struct {
	Drifts  []Drift
	Foreign []Foreign
	// Unavailable lists the attachments whose hook does not exist on the
	// host right now (interface or netns gone): a repair leaves them
	// alone instead of failing as a whole.
	Unavailable map[string]bool
}

// Clean reports whether nothing drifted (foreign programs aside).
func (r *Report) Clean() bool { return len(r.Drifts) == 0 }

// Detect checks every attachment of st that has a record, and every XDP
// and TC hook those attachments use.
func Detect(layout bpffs.Layout, st *desired.State, records map[string]*store.Record, global Policy) (*Report, error) {
	observed, err := observer.Observe(layout, st.Names())
	if err != nil {
		return nil, err
	}
	hooks, err := observer.ObserveHooks(layout)
	if err != nil {
		return nil, err
	}
	rep := &Report{Unavailable: map[string]bool{}}
	managed := managedHooks(st, records)
	// One netlink handle per namespace for every hook's checks.
	var ifs netnsutil.Interfaces
	defer ifs.Close()
	for _, key := range sortedKeys(managed) {
		mh := managed[key]
		if !interfacePresent(mh.hook, &ifs) {
			rep.Drifts = append(rep.Drifts, Drift{Kind: InterfaceMissing, Hook: mh.hook.String(), HookKey: key,
				Detail: fmt.Sprintf("interface %s is gone; its chain is re-attached when it comes back", mh.hook.Interface)})
			for _, m := range mh.members {
				rep.Unavailable[m] = true
			}
			continue
		}
		oh := hooks[bpffs.HookID(key)]
		rep.Drifts = append(rep.Drifts, hookDrifts(mh, oh, records, observed)...)
		foreign, err := findForeign(mh, oh, global, &ifs)
		if err != nil {
			return nil, fmt.Errorf("hook %s: %w", mh.hook, err)
		}
		rep.Foreign = append(rep.Foreign, foreign...)
	}
	for _, name := range st.Names() {
		rec, o := records[name], observed[name]
		if rec == nil || rep.Unavailable[name] {
			continue // never applied, or its hook is gone
		}
		rep.Drifts = append(rep.Drifts, attachmentDrifts(rec, o)...)
	}
	return rep, nil
}

// managedHook is one XDP or TC hook with leaf's chain on it.
type managedHook struct {
	key  string
	hook desired.Hook
	// members in the order leaf applied them.
	members []string
	policy  Policy
}

func managedHooks(st *desired.State, records map[string]*store.Record) map[string]*managedHook {
	out := map[string]*managedHook{}
	for _, a := range st.Spec.Attachments {
		rec := records[a.Name]
		// The record holds the hook as resolved (an altname turned into
		// the interface's main name), which is what the chain is keyed by.
		if rec == nil || rec.Chain == nil || rec.Chain.Hook != rec.Attachment.Hook.Key() {
			continue
		}
		mh := out[rec.Chain.Hook]
		if mh == nil {
			mh = &managedHook{key: rec.Chain.Hook, hook: rec.Attachment.Hook}
			out[rec.Chain.Hook] = mh
		}
		mh.members = append(mh.members, a.Name)
		// A hook is secure if any of its attachments says so; their
		// allowlists add up.
		mh.policy.Secure = mh.policy.Secure || a.Hook.Secure
		mh.policy.Allow = append(mh.policy.Allow, a.Hook.AllowForeign...)
	}
	for _, mh := range out {
		sort.Slice(mh.members, func(i, j int) bool {
			return records[mh.members[i]].Chain.Index < records[mh.members[j]].Chain.Index
		})
	}
	return out
}

func interfacePresent(h desired.Hook, ifs *netnsutil.Interfaces) bool {
	_, _, err := ifs.Lookup(h.NetnsPath(), h.Interface)
	return err == nil
}

// hookDrifts checks a chain's link and that the kernel runs the members
// leaf applied, in order: the link's program is the first member's, and
// each member's next-member map holds the next one.
func hookDrifts(mh *managedHook, oh *observer.Hook, records map[string]*store.Record, observed map[string]*observer.Attachment) []Drift {
	d := func(kind Kind, attachment, format string, args ...any) Drift {
		return Drift{Kind: kind, Attachment: attachment, Hook: mh.hook.String(), HookKey: mh.key, Detail: fmt.Sprintf(format, args...)}
	}
	switch {
	case oh == nil || oh.LinkID == 0:
		return []Drift{d(LinkMissing, "", "the hook's link pin is gone")}
	case !oh.Attached:
		return []Drift{d(LinkDetached, "", "link %d no longer holds the hook", oh.LinkID)}
	}
	first := records[mh.members[0]]
	if oh.ProgramID != ebpf.ProgramID(first.ProgramID) {
		return []Drift{d(ProgramReplaced, "", "the hook's link runs program %d, not leaf's first member %s (program %d)", oh.ProgramID, first.Name, first.ProgramID)}
	}
	var out []Drift
	for i, name := range mh.members {
		o := observed[name]
		if o == nil || !o.HasNext {
			continue // reported as a missing pin
		}
		var want ebpf.ProgramID
		if i+1 < len(mh.members) {
			want = ebpf.ProgramID(records[mh.members[i+1]].ProgramID)
		}
		if o.NextProgramID != want {
			out = append(out, d(ChainChanged, name, "its next-member map holds program %d, want %d", o.NextProgramID, want))
		}
	}
	return out
}

// attachmentDrifts checks one attachment's pins, and for an attachment
// with a link of its own (not a chain member), that link.
func attachmentDrifts(rec *store.Record, o *observer.Attachment) []Drift {
	hook := rec.Attachment.Hook
	d := func(kind Kind, format string, args ...any) Drift {
		return Drift{Kind: kind, Attachment: rec.Name, Hook: hook.String(), HookKey: hook.Key(), Detail: fmt.Sprintf(format, args...)}
	}
	var out []Drift
	if o.ProgramID == 0 {
		out = append(out, d(ProgPinMissing, "the program pin is gone"))
	}
	if rec.Chain != nil && !rec.Chain.Fused && !o.HasNext {
		out = append(out, d(NextPinMissing, "the next-member map pin is gone (the kernel empties an unpinned PROG_ARRAY)"))
	}
	if rec.Chain == nil {
		switch {
		case o.LinkID == 0:
			out = append(out, d(LinkMissing, "the link pin is gone"))
		case !o.Attached:
			out = append(out, d(LinkDetached, "link %d no longer holds the hook", o.LinkID))
		case o.ProgramID != 0 && o.ProgramID != ebpf.ProgramID(rec.ProgramID):
			out = append(out, d(ProgramReplaced, "%s", o.Problem))
		}
	}
	for _, m := range sortedKeys(rec.MapIDs) {
		if o.Maps[m] == 0 {
			dr := d(MapPinMissing, "the pin of map %s (id %d) is gone", m, rec.MapIDs[m])
			dr.Map = m
			out = append(out, dr)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
