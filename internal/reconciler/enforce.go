package reconciler

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/drift"
)

// Repairs that keep failing (a foreign XDP program holding the hook
// outside secure mode, a package gone from the repository) are retried
// with a growing pause instead of on every check.
const (
	minRepairBackoff = time.Second
	maxRepairBackoff = 5 * time.Minute
)

// enforceState is what enforcement remembers between checks, so that each
// drift and each foreign program is reported once, not on every check.
type enforceState struct {
	drifts  map[string]trackedDrift
	foreign map[string]*trackedForeign
	// lastRepair and backoff pace repairs that keep failing.
	lastRepair time.Time
	backoff    time.Duration
}

type trackedDrift struct {
	drift.Drift
	since time.Time
}

type trackedForeign struct {
	drift.Foreign
	removeFailed bool
}

// Enforce checks the kernel against what leaf applied: it reports every
// new drift and foreign program, removes foreign programs from secure
// hooks, and repairs drift by reconciling the desired state again (the
// ordinary plan and apply, after putting back removed pins). It runs under
// the reconciler's lock, so an API apply and a repair never interleave.
// cause says what woke the check, for the log.
func (r *Reconciler) Enforce(ctx context.Context, cause string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.enforce.drifts == nil {
		r.enforce.drifts = map[string]trackedDrift{}
		r.enforce.foreign = map[string]*trackedForeign{}
	}
	now := time.Now()
	rep, err := r.detect()
	if r.cfg.Observe != nil {
		r.cfg.Observe.CheckDone(time.Since(now))
	}
	if err != nil {
		r.cfg.Logger.Warn("drift check", "cause", cause, "error", err)
		return
	}
	fresh := r.trackDrifts(rep, now)
	removed := r.handleForeign(rep)
	if !repairable(rep) && !removed {
		r.enforce.backoff = 0
		return
	}
	if !fresh && !removed && time.Since(r.enforce.lastRepair) < r.enforce.backoff {
		return
	}
	r.repair(ctx, rep, cause)
}

func (r *Reconciler) detect() (*drift.Report, error) {
	records, err := r.cfg.Store.Records()
	if err != nil {
		return nil, err
	}
	return drift.Detect(r.cfg.Layout, r.desired, records, r.cfg.Policy)
}

// repairable reports whether a reconcile could fix something: a missing
// interface cannot be fixed by leaf; it waits for the interface.
func repairable(rep *drift.Report) bool {
	for _, d := range rep.Drifts {
		if d.Kind != drift.InterfaceMissing {
			return true
		}
	}
	return false
}

// trackDrifts reports drifts not seen before and forgets those gone.
func (r *Reconciler) trackDrifts(rep *drift.Report, now time.Time) (fresh bool) {
	seen := map[string]bool{}
	for _, d := range rep.Drifts {
		k := d.Key()
		seen[k] = true
		if _, ok := r.enforce.drifts[k]; ok {
			continue
		}
		fresh = true
		r.enforce.drifts[k] = trackedDrift{Drift: d, since: now}
		r.cfg.Logger.Warn("drift", "kind", d.Kind, "attachment", d.Attachment, "hook", d.Hook, "detail", d.Detail)
		r.event(v1.Event{Type: v1.EventDrift, Kind: string(d.Kind), Attachment: d.Attachment, Hook: d.Hook, Message: d.Detail})
	}
	for k := range r.enforce.drifts {
		if !seen[k] {
			delete(r.enforce.drifts, k) // repaired by an apply, or it went away
		}
	}
	return fresh
}

// handleForeign reports foreign programs once and, on secure hooks,
// removes those no allowlist names. It reports whether it removed any.
func (r *Reconciler) handleForeign(rep *drift.Report) (removed bool) {
	seen := map[string]bool{}
	for _, f := range rep.Foreign {
		k := f.Key()
		seen[k] = true
		tf, known := r.enforce.foreign[k]
		if !known {
			tf = &trackedForeign{Foreign: f}
			r.enforce.foreign[k] = tf
			r.cfg.Logger.Warn("foreign program", "hook", f.Hook.String(), "program", f.Program, "name", f.Name, "secure", f.Secure, "allowed", f.Allowed)
			r.event(v1.Event{Type: v1.EventForeign, Hook: f.Hook.String(), ProgramID: uint32(f.Program), Message: foreignMessage(f)})
		}
		tf.Foreign = f // the same program; its place on the hook may have moved
		if !f.Remove() {
			continue
		}
		if err := drift.RemoveForeign(f); err != nil {
			if !tf.removeFailed {
				tf.removeFailed = true
				r.event(v1.Event{Type: v1.EventRestoreFailed, Kind: string(v1.EventForeign), Hook: f.Hook.String(), ProgramID: uint32(f.Program), Message: fmt.Sprintf("remove foreign program %d: %v", f.Program, err)})
			}
			continue
		}
		removed = true
		delete(r.enforce.foreign, k)
		r.cfg.Logger.Warn("removed foreign program", "hook", f.Hook.String(), "program", f.Program, "name", f.Name)
		r.event(v1.Event{Type: v1.EventForeignRemoved, Hook: f.Hook.String(), ProgramID: uint32(f.Program),
			Message: fmt.Sprintf("secure mode removed program %d (%s, tag %s)", f.Program, f.Name, f.Tag)})
	}
	for k := range r.enforce.foreign {
		if !seen[k] {
			delete(r.enforce.foreign, k)
		}
	}
	r.publishForeign()
	return removed
}

// publishForeign hands status the foreign programs still on leaf's hooks.
func (r *Reconciler) publishForeign() {
	out := []v1.ForeignProgram{}
	for _, k := range slices.Sorted(maps.Keys(r.enforce.foreign)) {
		f := r.enforce.foreign[k]
		out = append(out, v1.ForeignProgram{Hook: f.Hook.String(), HookType: f.Hook.Type, ProgramID: uint32(f.Program), LinkID: uint32(f.Link),
			Name: f.Name, Tag: f.Tag, Secure: f.Secure, Allowed: f.Allowed, RunsBefore: f.RunsBefore})
	}
	r.foreign.Store(&out)
}

// Foreign lists the foreign programs the last drift check found.
func (r *Reconciler) Foreign() []v1.ForeignProgram {
	if p := r.foreign.Load(); p != nil {
		return *p
	}
	return nil
}

func foreignMessage(f drift.Foreign) string {
	what := fmt.Sprintf("program %d (%s, tag %s) that leaf does not manage runs on the hook", f.Program, f.Name, f.Tag)
	switch {
	case !f.Secure:
		return what + "; secure mode is off, so it stays"
	case f.Allowed:
		return what + "; the allowlist keeps it"
	}
	return what + "; secure mode removes it"
}

// repair reconciles the desired state again, leaving alone attachments
// whose hook is gone, and reports which drifts that fixed.
func (r *Reconciler) repair(ctx context.Context, rep *drift.Report, cause string) {
	r.enforce.lastRepair = time.Now()
	_, err := r.apply(ctx, r.current(), false, rep.Unavailable)
	after, derr := r.detect()
	if derr != nil {
		r.cfg.Logger.Warn("drift check after repair", "error", derr)
		return
	}
	left := map[string]bool{}
	for _, d := range after.Drifts {
		left[d.Key()] = true
	}
	failed := false
	for _, k := range sortedDriftKeys(r.enforce.drifts) {
		t := r.enforce.drifts[k]
		if t.Kind == drift.InterfaceMissing {
			continue
		}
		ev := v1.Event{Kind: string(t.Kind), Attachment: t.Attachment, Hook: t.Hook}
		if left[k] {
			failed = true
			ev.Type, ev.Message = v1.EventRestoreFailed, "still drifted after the repair"
			if err != nil {
				ev.Message = err.Error()
			}
			r.event(ev)
			continue
		}
		ms := float64(time.Since(t.since).Microseconds()) / 1000
		ev.Type, ev.LatencyMs = v1.EventRestored, &ms
		ev.Message = "restored: " + t.Detail
		r.cfg.Logger.Info("restored", "kind", t.Kind, "attachment", t.Attachment, "hook", t.Hook, "cause", cause, "latency_ms", ms)
		r.event(ev)
		delete(r.enforce.drifts, k)
	}
	switch {
	case !failed:
		r.enforce.backoff = 0
	case r.enforce.backoff == 0:
		r.enforce.backoff = minRepairBackoff
	default:
		r.enforce.backoff = min(2*r.enforce.backoff, maxRepairBackoff)
	}
}

func sortedDriftKeys(m map[string]trackedDrift) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Namespaces returns the network namespaces ("" for leafd's own) of the
// XDP and TC hooks in the desired state: where link events matter.
func (r *Reconciler) Namespaces() []string {
	return r.snapshot.Load().Namespaces()
}
