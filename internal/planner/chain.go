package planner

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/leaf-ebpf/leaf/internal/bpffs"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/observer"
	"github.com/leaf-ebpf/leaf/internal/store"
)

// ChainKind is what must happen to one hook's chain.
type ChainKind string

// The kinds of chain change.
const (
	// ChainKeep: the chain runs as desired (members may still get map
	// parameter updates).
	ChainKeep ChainKind = "keep"
	// ChainSwitch: new instances are built for the first Fresh members and
	// wired to the kept rest; then one atomic step (bpf_link_update, or
	// attaching the first link) switches the hook to the new chain.
	ChainSwitch ChainKind = "switch"
	// ChainRemove: no members remain; the hook's link is removed.
	ChainRemove ChainKind = "remove"
)

// ChainPlan is the plan for the chain on one XDP or TC hook.
//
// Every change is made the same way, so that no packet ever skips a
// member it should see, sees one twice, or loops: the members from the
// first up to the last one whose program or successor changes get new
// instances, wired to each other and to the unchanged tail of the old
// chain; then the hook switches to the new first member in one atomic
// step. Packets already inside the old chain finish in it; the old
// instances are removed after the switch.
type ChainPlan struct {
	Key    string
	HookID string
	Hook   desired.Hook
	Kind   ChainKind
	Reason string
	// Members in the order they run.
	Members []*Resolved
	// Fresh is how many leading members get new instances.
	Fresh int
	// NewLink: the hook needs a new link (none, detached, or the XDP mode
	// changed) rather than a bpf_link_update.
	NewLink bool
	// Old is the order that ran before.
	Old []string
	// ObservedHook is the kernel's view of the hook's link.
	ObservedHook *observer.Hook
	// Fused: the chain is (to be) one program built from every member's
	// code; a change rebuilds it whole. Otherwise members are linked by
	// tail calls, and ModeReason says why.
	Fused      bool
	ModeReason string
	// ForceFused: the hook asks for a fused chain; if the verifier
	// refuses it the apply fails instead of falling back to tail calls.
	ForceFused bool
	// FuseRefused is the verifier's refusal of this chain fused (set by
	// the applier when it fell back to tail calls, or kept from the
	// records while the chain stays the same).
	FuseRefused string
}

// chainMembers groups the chained attachments by hook, each sorted by
// priority and then name.
func chainMembers(want []*Resolved) map[string][]*Resolved {
	out := map[string][]*Resolved{}
	for _, r := range want {
		if r.Chain != nil {
			k := r.Attachment.Hook.Key()
			out[k] = append(out[k], r)
		}
	}
	for _, ms := range out {
		sort.SliceStable(ms, func(i, j int) bool {
			if ms[i].Chain.Priority != ms[j].Chain.Priority {
				return ms[i].Chain.Priority < ms[j].Chain.Priority
			}
			return ms[i].Attachment.Name < ms[j].Attachment.Name
		})
	}
	return out
}

// recordedChains returns, per hook key, the member names in recorded order.
func recordedChains(records map[string]*store.Record) map[string][]string {
	byHook := map[string][]*store.Record{}
	for _, r := range records {
		if r.Chain != nil {
			byHook[r.Chain.Hook] = append(byHook[r.Chain.Hook], r)
		}
	}
	out := map[string][]string{}
	for k, rs := range byHook {
		sort.Slice(rs, func(i, j int) bool { return rs[i].Chain.Index < rs[j].Chain.Index })
		for _, r := range rs {
			out[k] = append(out[k], r.Name)
		}
	}
	return out
}

// planChains decides, per hook, how to get from what runs to what is
// desired, and the action each member gets.
func planChains(want []*Resolved, records map[string]*store.Record, observed map[string]*observer.Attachment, hooks map[string]*observer.Hook) ([]*ChainPlan, []*Action) {
	desiredChains := chainMembers(want)
	recorded := recordedChains(records)
	keys := map[string]bool{}
	for k := range desiredChains {
		keys[k] = true
	}
	for k := range recorded {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var plans []*ChainPlan
	var actions []*Action
	planned := map[string]bool{}
	for _, key := range sorted {
		cp := planChain(key, desiredChains[key], recorded[key], records, observed, hooks[bpffs.HookID(key)])
		planned[cp.HookID] = true
		plans = append(plans, cp)
		actions = append(actions, memberActions(cp, records, observed)...)
	}
	return append(plans, strayHooks(hooks, planned)...), actions
}

// strayHooks plans the removal of hook pins that no chain, desired or
// recorded, explains: what an apply killed before it recorded leaves.
func strayHooks(hooks map[string]*observer.Hook, planned map[string]bool) []*ChainPlan {
	var out []*ChainPlan
	for id, oh := range hooks {
		if !planned[id] {
			out = append(out, &ChainPlan{HookID: id, Kind: ChainRemove, ObservedHook: oh,
				Reason: "hook pins of no recorded or desired chain"})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].HookID < out[j].HookID })
	return out
}

func planChain(key string, members []*Resolved, old []string, records map[string]*store.Record, observed map[string]*observer.Attachment, oh *observer.Hook) *ChainPlan {
	cp := &ChainPlan{Key: key, HookID: bpffs.HookID(key), Members: members, Old: old, ObservedHook: oh}
	var head *store.Record
	if len(old) > 0 {
		head = records[old[0]]
	}
	if len(members) == 0 {
		cp.Kind, cp.Reason = ChainRemove, "no programs remain on the hook"
		if head != nil {
			cp.Hook = head.Attachment.Hook
		}
		return cp
	}
	cp.Hook = members[0].Attachment.Hook
	n := len(members)
	var running []string
	if oh != nil && oh.ProgramID != 0 {
		running = observer.ChainOrder(oh.ProgramID, observed, old)
	}
	chooseMode(cp, records, observed, old)
	trusted := len(old) > 0 && slices.Equal(running, old)
	switch {
	case len(old) == 0:
		cp.Reason = "new chain"
	case oh == nil || oh.LinkID == 0:
		cp.Reason = "the hook's link is not pinned"
	case !trusted:
		cp.Reason = fmt.Sprintf("the kernel runs %v, not the recorded chain %v", running, old)
	}
	// A hook link that is pinned and attached is switched with one
	// bpf_link_update, whatever it runs (an unrecorded chain left by a
	// crash included); only a missing or detached link, or an XDP mode the
	// link cannot change, needs a new one.
	cp.NewLink = oh == nil || oh.LinkID == 0 || !oh.Attached || (head != nil && xdpModeChanged(head, cp.Hook))
	if !trusted {
		cp.Kind, cp.Fresh = ChainSwitch, n
		return cp
	}
	// Keep the longest tail of the old chain that runs unchanged (a fused
	// chain is rebuilt whole, or kept whole).
	kept := 0
	for kept < n && kept < len(old) && !cp.Fused {
		r := members[n-1-kept]
		if r.Attachment.Name != old[len(old)-1-kept] || !sameInstance(r, records[r.Attachment.Name], observed[r.Attachment.Name]) {
			break
		}
		kept++
	}
	if cp.Fused && slices.Equal(names(members), old) && allSameFused(members, records, observed, oh) {
		kept = n
	}
	cp.Fresh = n - kept
	switch {
	case cp.Fresh == 0 && n == len(old) && !cp.NewLink:
		cp.Kind, cp.Reason = ChainKeep, "chain up to date"
	case cp.NewLink && oh.Attached:
		cp.Kind, cp.Fresh, cp.Reason = ChainSwitch, n, "XDP mode changed"
	case cp.NewLink:
		cp.Kind, cp.Reason = ChainSwitch, "the hook's link was detached"
	case modeChanged(cp, records[old[0]]):
		cp.Kind, cp.Reason = ChainSwitch, fmt.Sprintf("%s → %s", modeName(records[old[0]].Chain.Fused), modeName(cp.Fused))
	default:
		cp.Kind, cp.Reason = ChainSwitch, fmt.Sprintf("order %s → %s", orderString(old), orderString(names(members)))
	}
	return cp
}

// chooseMode decides whether the hook's chain is fused: when every member
// can be, the hook does not ask for tail calls, and the verifier has not
// refused this same chain fused before.
func chooseMode(cp *ChainPlan, records map[string]*store.Record, observed map[string]*observer.Attachment, old []string) {
	for _, r := range cp.Members {
		switch r.Chain.HookMode {
		case desired.ChainModeTailCall:
			cp.ModeReason = "the hook asks for tail calls (chainMode: tailcall)"
			return
		case desired.ChainModeFused:
			cp.ForceFused = true
		}
	}
	for _, r := range cp.Members {
		if r.Chain.NoFuse != "" {
			cp.ModeReason = fmt.Sprintf("%s cannot be fused: %s", r.Attachment.Name, r.Chain.NoFuse)
			return
		}
	}
	if refused := refusedBefore(cp, records, observed, old); refused != "" && !cp.ForceFused {
		cp.FuseRefused = refused
		cp.ModeReason = "the fused chain was refused: " + refused
		return
	}
	cp.Fused = true
}

// refusedBefore returns the verifier's earlier refusal of this chain
// fused, if the same members run unchanged as tail-call members since.
func refusedBefore(cp *ChainPlan, records map[string]*store.Record, observed map[string]*observer.Attachment, old []string) string {
	if !slices.Equal(names(cp.Members), old) {
		return ""
	}
	refused := ""
	for _, r := range cp.Members {
		rec := records[r.Attachment.Name]
		if !sameInstance(r, rec, observed[r.Attachment.Name]) || rec.Chain.FuseRefused == "" {
			return ""
		}
		refused = rec.Chain.FuseRefused
	}
	return refused
}

// allSameFused reports whether the hook runs the fused program built from
// exactly these members, unchanged.
func allSameFused(members []*Resolved, records map[string]*store.Record, observed map[string]*observer.Attachment, oh *observer.Hook) bool {
	for _, r := range members {
		rec, obs := records[r.Attachment.Name], observed[r.Attachment.Name]
		if rec == nil || rec.Chain == nil || !rec.Chain.Fused || obs == nil || oh == nil || obs.ProgramID != oh.ProgramID || kernelDrift(rec, obs) != "" || !sameConfig(r, rec) {
			return false
		}
	}
	return true
}

func modeChanged(cp *ChainPlan, first *store.Record) bool {
	return first != nil && first.Chain != nil && first.Chain.Fused != cp.Fused
}

func modeName(fused bool) string {
	if fused {
		return "fused"
	}
	return "tail calls"
}

func xdpModeChanged(rec *store.Record, h desired.Hook) bool {
	return rec.Chain != nil && rec.Chain.XDPMode != "" && h.Type == "xdp" && rec.Chain.XDPMode != h.XDPMode()
}

// sameInstance reports whether the member's running instance is what is
// desired, so that it can stay in place.
func sameInstance(r *Resolved, rec *store.Record, obs *observer.Attachment) bool {
	if rec == nil || rec.Chain == nil || rec.Chain.Fused || obs == nil || obs.ProgramID == 0 || !obs.HasNext || kernelDrift(rec, obs) != "" {
		return false
	}
	return sameConfig(r, rec)
}

// sameConfig reports whether the member's record describes the desired
// program, parameters and chain settings.
func sameConfig(r *Resolved, rec *store.Record) bool {
	return rec.Package.Digest == r.Package.Digest &&
		rec.Program == r.Program.Name &&
		rec.Chain.Mode == r.Chain.Mode && rec.Chain.Map == r.Chain.Map &&
		rec.Chain.CountRuns == r.Chain.CountRuns &&
		slices.Equal(rec.Chain.ProceedOn, r.Chain.ProceedOn) &&
		paramsEqual(r.Package, r.ConstParams, rec.ConstParams)
}

// memberActions describes the plan per attachment.
func memberActions(cp *ChainPlan, records map[string]*store.Record, observed map[string]*observer.Attachment) []*Action {
	var out []*Action
	for i, r := range cp.Members {
		name := r.Attachment.Name
		act := &Action{Name: name, Desired: r, Record: records[name], Observed: observed[name], Chain: cp}
		rec := records[name]
		switch {
		case i < cp.Fresh && (rec == nil || rec.Chain == nil || rec.Chain.Hook != cp.Key):
			act.Kind, act.Reason = Create, fmt.Sprintf("joins %s at position %d of %d", cp.Hook, i+1, len(cp.Members))
		case i < cp.Fresh:
			act.Kind, act.Reason = Replace, memberReason(r, rec, observed[name], cp)
		case cp.Kind == ChainSwitch && cp.NewLink && i == 0:
			act.Kind, act.Reason = Reattach, cp.Reason
		case !paramsEqual(r.Package, r.MapParams, rec.MapParams):
			act.Kind, act.Reason = UpdateParams, "map parameters changed"
		case observed[name] != nil && observed[name].ParamsDrift != "":
			act.Kind, act.Reason = UpdateParams, observed[name].ParamsDrift
		default:
			act.Kind, act.Reason = Keep, "up to date"
		}
		out = append(out, act)
	}
	return out
}

func memberReason(r *Resolved, rec *store.Record, obs *observer.Attachment, cp *ChainPlan) string {
	switch {
	case rec.Package.Digest != r.Package.Digest:
		return fmt.Sprintf("package %s@%s → %s", rec.Package.Name, rec.Package.Version, r.Package.Ref())
	case rec.Program != r.Program.Name:
		return fmt.Sprintf("program %s → %s", rec.Program, r.Program.Name)
	case !paramsEqual(r.Package, r.ConstParams, rec.ConstParams):
		return "load-time parameters changed"
	case !slices.Equal(rec.Chain.ProceedOn, r.Chain.ProceedOn):
		return "proceed-on verdicts changed"
	case rec.Chain.CountRuns != r.Chain.CountRuns:
		return "run counting turned on or off with BPF statistics"
	case rec.Chain.Fused != cp.Fused:
		return fmt.Sprintf("chain %s → %s", modeName(rec.Chain.Fused), modeName(cp.Fused))
	case obs == nil || obs.ProgramID == 0:
		return "program no longer pinned"
	case kernelDrift(rec, obs) != "":
		return kernelDrift(rec, obs)
	}
	return "new instance for the chain change: " + cp.Reason
}

func names(rs []*Resolved) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Attachment.Name)
	}
	return out
}

func orderString(ns []string) string { return "[" + strings.Join(ns, " ") + "]" }
