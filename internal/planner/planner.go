package planner

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/leaf-ebpf/leaf/internal/observer"
	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/internal/store"
)

// Kind is what must happen to one attachment.
type Kind string

// The kinds of action, from least to most disruptive.
const (
	// Keep: the kernel already runs what is desired.
	Keep Kind = "keep"
	// UpdateParams: write map parameters; no reload.
	UpdateParams Kind = "update-params"
	// Replace: load a new program and swap it into the existing link
	// atomically (bpf_link_update).
	Replace Kind = "replace"
	// Reattach: the link is gone or detached; attach the program again.
	Reattach Kind = "reattach"
	// Create: load and attach from nothing (replacing stray pins).
	Create Kind = "create"
	// Delete: detach and unpin.
	Delete Kind = "delete"
)

// Action is the plan for one attachment.
type Action struct {
	Name     string
	Kind     Kind
	Reason   string
	Desired  *Resolved     // nil for Delete
	Record   *store.Record // what was applied, if anything
	Observed *observer.Attachment
	// Chain is the plan of the member's hook, for XDP and TC attachments;
	// the chain plan, not the action, drives what the applier does.
	Chain *ChainPlan
}

// Unpinned reports whether the attachment was observed with nothing
// pinned: no maps to reuse, migrate or compare, so nothing to look up on
// bpffs for it.
func (a *Action) Unpinned() bool { return a.Observed != nil && !a.Observed.HasPins }

// Plan is what must change: per attachment, and per chained hook.
type Plan struct {
	Actions []*Action
	Chains  []*ChainPlan
}

// Changes reports whether the plan changes anything.
func (p *Plan) Changes() bool {
	for _, a := range p.Actions {
		if a.Kind != Keep {
			return true
		}
	}
	for _, c := range p.Chains {
		if c.Kind != ChainKeep {
			return true
		}
	}
	return false
}

// Make compares desired with the records and the kernel's view.
func Make(want []*Resolved, records map[string]*store.Record, observed map[string]*observer.Attachment, hooks map[string]*observer.Hook) *Plan {
	plan := &Plan{}
	desiredNames := map[string]bool{}
	for _, r := range want {
		name := r.Attachment.Name
		desiredNames[name] = true
		if r.Chain == nil {
			plan.Actions = append(plan.Actions, decide(r, records[name], observed[name]))
		}
	}
	chains, members := planChains(want, records, observed, hooks)
	plan.Chains = chains
	plan.Actions = append(plan.Actions, members...)
	sort.SliceStable(plan.Actions, func(i, j int) bool { return plan.Actions[i].Name < plan.Actions[j].Name })
	var stale []string
	for name := range records {
		if !desiredNames[name] {
			stale = append(stale, name)
		}
	}
	for name, o := range observed {
		if !desiredNames[name] && records[name] == nil && o.HasPins {
			stale = append(stale, name)
		}
	}
	sort.Strings(stale)
	for _, name := range stale {
		reason := "no longer desired"
		if records[name] == nil {
			reason = "stale pins of an attachment leaf has no record of"
		}
		plan.Actions = append(plan.Actions, &Action{Name: name, Kind: Delete, Reason: reason, Record: records[name], Observed: observed[name]})
	}
	return plan
}

func decide(r *Resolved, rec *store.Record, obs *observer.Attachment) *Action {
	act := &Action{Name: r.Attachment.Name, Desired: r, Record: rec, Observed: obs}
	set := func(k Kind, format string, args ...any) *Action {
		act.Kind, act.Reason = k, fmt.Sprintf(format, args...)
		return act
	}
	if rec == nil {
		return set(Create, "new attachment")
	}
	if rec.Chain != nil {
		return set(Create, "moved from a chained hook")
	}
	if obs == nil || obs.ProgramID == 0 {
		return set(Create, "program no longer pinned")
	}
	if r.Attachment.Hook.Key() != rec.Attachment.Hook.Key() || r.Attachment.Hook.XDPMode() != rec.Attachment.Hook.XDPMode() {
		return set(Create, "hook changed from %s to %s", rec.Attachment.Hook, r.Attachment.Hook)
	}
	reload := ""
	switch {
	case kernelDrift(rec, obs) != "":
		reload = kernelDrift(rec, obs)
	case r.Package.Digest != rec.Package.Digest:
		reload = fmt.Sprintf("package %s@%s → %s", rec.Package.Name, rec.Package.Version, r.Package.Ref())
		if rec.Package.Version == r.Package.Manifest.Version {
			reload = fmt.Sprintf("package %s content changed (digest %s → %s)", r.Package.Ref(), short(rec.Package.Digest), short(r.Package.Digest))
		}
	case r.Program.Name != rec.Program:
		reload = fmt.Sprintf("program %s → %s", rec.Program, r.Program.Name)
	case !paramsEqual(r.Package, r.ConstParams, rec.ConstParams):
		reload = "load-time parameters changed"
	}
	if obs.LinkID == 0 || !obs.Attached {
		if reload != "" {
			return set(Create, "%s; %s", obs.Problem, reload)
		}
		return set(Reattach, "%s", obs.Problem)
	}
	if reload == "" && obs.LinkProgramID != 0 && obs.LinkProgramID != obs.ProgramID {
		reload = fmt.Sprintf("the link runs program %d, not the pinned program %d", obs.LinkProgramID, obs.ProgramID)
	}
	if reload != "" {
		return set(Replace, "%s", reload)
	}
	if !paramsEqual(r.Package, r.MapParams, rec.MapParams) {
		return set(UpdateParams, "map parameters changed")
	}
	if obs.ParamsDrift != "" {
		return set(UpdateParams, "%s", obs.ParamsDrift)
	}
	return set(Keep, "up to date")
}

// kernelDrift says how the pinned program differs from the one recorded
// ("" when it is the same): a record alone proves nothing, so a program
// is kept only when the kernel runs exactly the instance leaf loaded and
// recorded. A program's constants live in its frozen .rodata, so the same
// program ID means the same constants.
func kernelDrift(rec *store.Record, obs *observer.Attachment) string {
	switch {
	case rec.ProgramID != 0 && uint32(obs.ProgramID) != rec.ProgramID:
		return fmt.Sprintf("the kernel runs program %d, not the recorded %d", obs.ProgramID, rec.ProgramID)
	case rec.ProgramTag != "" && obs.Tag != rec.ProgramTag:
		return fmt.Sprintf("program %d has tag %s, not the recorded %s", obs.ProgramID, obs.Tag, rec.ProgramTag)
	}
	return ""
}

// paramsEqual compares parameter values by their encoding; key lists
// compare as sets.
func paramsEqual(pkg *repository.Package, a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for name, va := range a {
		vb, ok := b[name]
		if !ok {
			return false
		}
		p := pkg.Manifest.Param(name)
		if p == nil {
			return false
		}
		typ, _ := p.TypeOf()
		ea, errA := typ.Encode(va)
		eb, errB := typ.Encode(vb)
		if errA != nil || errB != nil || !sameSet(ea, eb) {
			return false
		}
	}
	return true
}

func sameSet(a, b [][]byte) bool {
	norm := func(in [][]byte) [][]byte {
		out := append([][]byte(nil), in...)
		sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i], out[j]) < 0 })
		dedup := out[:0]
		for i, v := range out {
			if i == 0 || !bytes.Equal(v, out[i-1]) {
				dedup = append(dedup, v)
			}
		}
		return dedup
	}
	na, nb := norm(a), norm(b)
	if len(na) != len(nb) {
		return false
	}
	for i := range na {
		if !bytes.Equal(na[i], nb[i]) {
			return false
		}
	}
	return true
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}
