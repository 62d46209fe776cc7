// Package reconciler is leafd's core loop. Admission (package admission)
// validates a desired state and resolves, fetches and verifies its
// packages, with the request's context and without the lock; then,
// one change at a time, the reconciler observes the kernel, plans,
// applies and records, from the admitted packages alone.
//
//	desired ─► admit ─┬─► observe ─► plan ─► apply ─► record
//	  (network, ctx)  └── lock: store, cache and kernel only
package reconciler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/admission"
	"github.com/leaf-ebpf/leaf/internal/applier"
	"github.com/leaf-ebpf/leaf/internal/bpffs"
	"github.com/leaf-ebpf/leaf/internal/crashpoint"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/drift"
	"github.com/leaf-ebpf/leaf/internal/events"
	"github.com/leaf-ebpf/leaf/internal/netnsutil"
	"github.com/leaf-ebpf/leaf/internal/observer"
	"github.com/leaf-ebpf/leaf/internal/planner"
	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/internal/store"
)

// Observer receives the outcome of each apply and drift check, for
// metrics.
type Observer interface {
	ApplyDone(d time.Duration, err error, stage string)
	CheckDone(d time.Duration)
}

// Config wires a Reconciler.
type Config struct {
	Layout  bpffs.Layout
	Store   *store.Store
	Repos   repository.Set
	Logger  *slog.Logger
	Observe Observer
	// Stats is leafd's hold on kernel BPF statistics.
	Stats *Stats
	// Events receives applies, drifts and restores (optional).
	Events *events.Log
	// Policy is leafd's global secure mode and allowlist; hooks may turn
	// secure mode on for themselves and add to the allowlist.
	Policy drift.Policy
	// Applied, if set, is called after every successful apply with the
	// new desired state, its records and its admitted packages, so that
	// watchers follow the hooks it uses and companions run from verified
	// bytes. It runs under the lock and must not call back into the
	// reconciler.
	Applied func(*desired.State, map[string]*store.Record, repository.Set)
	// Limits bound each document (zero fields: desired.DefaultLimits).
	Limits desired.Limits
	// Companions reports an attachment's companion for status; nil when
	// leafd runs none.
	Companions func(attachment string) *v1.CompanionStatus
}

// Reconciler serializes every change to the host's programs.
type Reconciler struct {
	cfg     Config
	applier *applier.Applier

	mu      sync.Mutex
	desired *desired.State
	// packages are desired's admitted packages by digest: all that
	// reconciliation resolves against, so it never asks a repository.
	packages map[string]*repository.Package
	// enforce tracks drifts and foreign programs between checks; guarded
	// by mu like everything the loop changes.
	enforce enforceState
	// notified: Config.Applied has been called since start.
	notified bool

	// snapshot is the committed desired state, for readers (status,
	// metrics, maps) that must never wait behind an apply.
	snapshot atomic.Pointer[desired.State]
	// foreign is what the last drift check found on leaf's hooks, for
	// status (which never takes mu).
	foreign atomic.Pointer[[]v1.ForeignProgram]
}

// Stages at which an apply can fail, reported as a bounded metric label.
const (
	StageValidate = "validate"
	StageResolve  = "resolve"
	StageLoad     = "load"
	StageAttach   = "attach"
	StageRecord   = "record"
)

// StageError is an apply error with the stage it failed at. Its Err is a
// desired.Errors when the problem lies in the document (a client error).
type StageError struct {
	Stage string
	Err   error
}

func (e *StageError) Error() string { return e.Err.Error() }
func (e *StageError) Unwrap() error { return e.Err }

// New returns a reconciler holding the stored desired state. Its packages
// are admitted by Start.
func New(cfg Config) (*Reconciler, error) {
	if cfg.Stats == nil {
		cfg.Stats = &Stats{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	st, err := cfg.Store.Desired()
	if err != nil {
		return nil, err
	}
	r := &Reconciler{cfg: cfg, applier: &applier.Applier{Layout: cfg.Layout}, desired: st, packages: map[string]*repository.Package{}}
	r.snapshot.Store(st)
	return r, nil
}

// Desired returns a copy of the committed desired state.
func (r *Reconciler) Desired() *desired.State {
	return r.snapshot.Load().Clone()
}

// Reconcile applies the desired state again from the admitted packages:
// what went missing is restored, stale pins removed, chains rebuilt for
// a change of BPF statistics.
func (r *Reconciler) Reconcile(ctx context.Context) (*v1.ApplyResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res, err := r.apply(ctx, r.current(), false, nil)
	r.recordApply(res, err, false)
	return res, err
}

// current is the desired state as admitted; callers hold mu.
func (r *Reconciler) current() *admission.Admitted {
	return &admission.Admitted{State: r.desired, Packages: r.packages}
}

// Start brings the kernel in line at start-up. It first settles the pins
// an apply killed part-way left (applier.RecoverPins); then it applies
// doc if given (the configured desired-state file), else finishes the
// journaled apply leafd was killed in, else reconciles the stored state.
// An intent that cannot be finished (its packages gone, say) is undone by
// reconciling the last committed state instead: either way the kernel
// ends up running one whole document, the one the store records.
func (r *Reconciler) Start(ctx context.Context, doc *desired.State) (*v1.ApplyResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	did, err := r.applier.RecoverPins()
	for _, d := range did {
		r.cfg.Logger.Info("start-up: settled pins of an interrupted apply", "action", d)
	}
	if err != nil {
		return nil, fmt.Errorf("settle pins of an interrupted apply: %w", err)
	}
	// Whatever happens below, the committed state's packages end up
	// admitted when they can be, so drift repair (which never asks a
	// repository) can restore it even if this first apply fails.
	recorded, err := r.recordedPins()
	if err != nil {
		return nil, err
	}
	defer r.admitCommitted(ctx, recorded)
	if doc != nil {
		return r.admitAndApply(ctx, doc, recorded)
	}
	in, err := r.cfg.Store.OpenIntent()
	if err != nil {
		return nil, err
	}
	if in != nil && in.Desired != nil {
		r.cfg.Logger.Warn("start-up: finishing the apply leafd was stopped in", "started", in.Started)
		res, err := r.admitAndApply(ctx, in.Desired, pinsOf(in.Packages))
		if err == nil {
			return res, nil
		}
		r.cfg.Logger.Error("start-up: the interrupted apply cannot be finished; restoring the last recorded state", "error", err)
	}
	return r.admitAndApply(ctx, r.desired, recorded)
}

// admitCommitted admits the committed desired state's packages if no
// apply did; callers hold mu.
func (r *Reconciler) admitCommitted(ctx context.Context, pins map[string]map[string]string) {
	if len(r.packages) > 0 || len(r.desired.Spec.Attachments) == 0 {
		return
	}
	adm, err := r.admitAtStart(ctx, r.desired, pins)
	if err != nil {
		r.cfg.Logger.Error("start-up: cannot admit the recorded state's packages; drift repair waits for the next apply", "error", err)
		return
	}
	adm.Release()
	r.packages = adm.Packages
}

// admitAndApply admits st (admitAtStart) and applies it; callers hold mu
// (start-up only: an API apply admits outside the lock).
func (r *Reconciler) admitAndApply(ctx context.Context, st *desired.State, pins map[string]map[string]string) (*v1.ApplyResult, error) {
	adm, err := r.admitAtStart(ctx, st, pins)
	if err == nil {
		var res *v1.ApplyResult
		res, err = r.apply(ctx, adm, false, nil)
		r.recordApply(res, err, false)
		return res, err
	}
	r.recordApply(nil, err, false)
	return nil, err
}

// limits are the configured limits, defaults filled in.
func (r *Reconciler) limits() desired.Limits {
	l := r.cfg.Limits
	if l.MaxAttachments == 0 {
		l.MaxAttachments = desired.DefaultLimits.MaxAttachments
	}
	if l.MaxChainLength == 0 {
		l.MaxChainLength = desired.DefaultLimits.MaxChainLength
	}
	return l
}

// sameJSON reports whether a and b encode alike.
func sameJSON(a, b any) bool {
	ja, err := json.Marshal(a)
	if err != nil {
		return false
	}
	jb, err := json.Marshal(b)
	return err == nil && bytes.Equal(ja, jb)
}

// repoNames lists the configured repositories in order.
func (r *Reconciler) repoNames() []string {
	out := make([]string, 0, len(r.cfg.Repos))
	for _, repo := range r.cfg.Repos {
		out = append(out, repo.Name())
	}
	return out
}

// checkParams notes, for every attachment kept from a record, whether its
// parameter maps still hold what the record says leaf wrote there.
func checkParams(layout bpffs.Layout, want []*planner.Resolved, records map[string]*store.Record, observed map[string]*observer.Attachment) {
	for _, w := range want {
		name := w.Attachment.Name
		rec, obs := records[name], observed[name]
		if rec == nil || obs == nil || obs.ProgramID == 0 || len(rec.MapParams) == 0 {
			continue
		}
		obs.ParamsDrift = observer.CheckParams(layout, name, w.Package.Manifest, rec.MapParams)
	}
}

// Apply makes st the desired state. With dryRun it only plans. Admission
// (validation, packages fetched and verified) runs first, with ctx and
// without the lock; only reconciliation waits for other changes.
func (r *Reconciler) Apply(ctx context.Context, st *desired.State, dryRun bool) (*v1.ApplyResult, error) {
	adm, err := r.admit(ctx, st, r.cfg.Repos, dryRun)
	if err != nil {
		r.recordApply(nil, err, dryRun)
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	res, err := r.apply(ctx, adm, dryRun, nil)
	r.recordApply(res, err, dryRun)
	return res, err
}

// admit runs admission through repos, reporting a failure with its stage.
func (r *Reconciler) admit(ctx context.Context, st *desired.State, repos repository.Set, dryRun bool) (*admission.Admitted, error) {
	start := time.Now()
	limits := r.limits()
	adm, err := admission.Admit(ctx, st, limits, repos, planner.Options{CountRuns: r.cfg.Stats.Enabled()})
	if err == nil {
		return adm, nil
	}
	stage := StageResolve
	if verr := st.ValidateWith(limits); verr != nil {
		stage = StageValidate
	}
	if !dryRun && r.cfg.Observe != nil {
		r.cfg.Observe.ApplyDone(time.Since(start), err, stage)
	}
	return nil, &StageError{Stage: stage, Err: err}
}

// ErrUnknownAttachment is returned by Delete for a name not in the
// desired state.
var ErrUnknownAttachment = errors.New("no such attachment")

// Delete removes the named attachments from the desired state. What stays
// was admitted already: nothing is resolved again.
func (r *Reconciler) Delete(ctx context.Context, names []string, dryRun bool) (*v1.ApplyResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := r.desired.Clone()
	drop := map[string]bool{}
	for _, n := range names {
		if next.Attachment(n) == nil {
			return nil, fmt.Errorf("%w: %q", ErrUnknownAttachment, n)
		}
		drop[n] = true
	}
	kept := next.Spec.Attachments[:0]
	for _, a := range next.Spec.Attachments {
		if !drop[a.Name] {
			kept = append(kept, a)
		}
	}
	next.Spec.Attachments = kept
	res, err := r.apply(ctx, &admission.Admitted{State: next, Packages: r.packages}, dryRun, nil)
	r.recordApply(res, err, dryRun)
	return res, err
}

// ErrConflict is returned by Modify when the desired state changed
// between the change being built and being applied.
var ErrConflict = errors.New("desired state changed during the call; retry")

// Modify applies change(current desired state), unless the state changed
// in between (ErrConflict), so that a change built from the current state
// (the L3AF API's add and delete) never overwrites one applied meanwhile.
// change must be quick: it only edits the document. known are packages
// the caller resolved, fetched and verified for the change already (the
// L3AF API does, to type map_args): admission takes them as they are
// rather than asking their repositories a second time.
func (r *Reconciler) Modify(ctx context.Context, change func(*desired.State) (*desired.State, error), known []*repository.Package, dryRun bool) (*v1.ApplyResult, error) {
	base := r.Desired()
	next, err := change(base.Clone())
	if err != nil {
		return nil, err
	}
	// Admission (packages fetched and verified) without the lock, as
	// Apply does.
	adm, err := r.admit(ctx, next, admission.Preferring(known, r.cfg.Repos), dryRun)
	if err != nil {
		r.recordApply(nil, err, dryRun)
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !sameState(r.desired, base) {
		adm.Release()
		return nil, ErrConflict
	}
	res, err := r.apply(ctx, adm, dryRun, nil)
	r.recordApply(res, err, dryRun)
	return res, err
}

func sameState(a, b *desired.State) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// apply reconciles: it resolves adm against its admitted packages only,
// observes, plans, applies and records. Attachments in hold are left
// exactly as they are — not resolved, not planned, their records kept —
// so that a repair can proceed while one hook's interface is gone; API
// applies hold nothing and stay all or nothing.
func (r *Reconciler) apply(_ context.Context, adm *admission.Admitted, dryRun bool, hold map[string]bool) (res *v1.ApplyResult, err error) {
	// What admission kept open for this apply closes once it has attached.
	defer adm.Release()
	st := adm.State
	start := time.Now()
	stage := StageResolve
	defer func() {
		if !dryRun && r.cfg.Observe != nil {
			r.cfg.Observe.ApplyDone(time.Since(start), err, stage)
		}
		if err != nil {
			err = &StageError{Stage: stage, Err: err}
		}
	}()
	pinned := admission.Pinned(adm.Packages, r.repoNames())
	opts := planner.Options{CountRuns: r.cfg.Stats.Enabled()}
	resolved := adm.Resolved
	if resolved == nil || len(hold) > 0 || adm.Options.CountRuns != opts.CountRuns {
		opts.Interfaces = &netnsutil.Interfaces{}
		defer opts.Interfaces.Close()
		resolved, err = planner.Resolve(without(st, hold), pinned, opts)
		if err != nil {
			return nil, err
		}
	}
	allRecords, err := r.cfg.Store.Records()
	if err != nil {
		return nil, err
	}
	if !dryRun {
		// Pins someone removed are put back first, from the objects the
		// kernel still holds, so the plan sees (and keeps) them.
		restored, err := r.applier.RestorePins(allRecords)
		if err != nil {
			r.cfg.Logger.Warn("restore pins", "error", err)
		}
		for _, p := range restored {
			r.cfg.Logger.Info("restored pin", "pin", p)
		}
	}
	records := map[string]*store.Record{}
	for n, rec := range allRecords {
		if !hold[n] {
			records[n] = rec
		}
	}
	observed, hooks, err := r.observe(st.Names())
	if err != nil {
		return nil, err
	}
	for n := range hold {
		delete(observed, n)
	}
	checkParams(r.cfg.Layout, resolved, records, observed)
	plan := planner.Make(resolved, records, observed, hooks)
	if err := r.noteMapChanges(plan); err != nil {
		return nil, err
	}
	res = summarize(plan, dryRun)
	if dryRun {
		return res, nil
	}
	stage = StageLoad
	if plan.Changes() {
		// The journal entry goes first: a crash from here on leaves an
		// intent that start-up finishes (see Start).
		if err := r.cfg.Store.Begin(store.Intent{Desired: st, Started: time.Now().UTC(), Packages: packageRefs(adm.Packages)}); err != nil {
			return nil, fmt.Errorf("journal the apply: %w", err)
		}
		crashpoint.Hit(crashpoint.IntentWritten)
	}
	newRecords, err := r.applier.Apply(plan)
	if err != nil {
		if newRecords == nil {
			// Undone: nothing to finish at start-up.
			if aerr := r.cfg.Store.Abort(); aerr != nil {
				r.cfg.Logger.Error("close the journal entry of a failed apply", "error", aerr)
			}
			var de desired.Errors
			if errors.As(err, &de) && attachFailure(plan, de) {
				stage = StageAttach
			}
			return nil, err
		}
		// Deletions failed after everything else succeeded: record what
		// is running and report the failure.
		r.cfg.Logger.Error("remove pins", "error", err)
	}
	stage = StageRecord
	for n := range hold {
		if rec := allRecords[n]; rec != nil {
			newRecords[n] = rec
		}
	}
	if plan.Changes() {
		crashpoint.Hit(crashpoint.BeforeCommit)
	}
	// A no-op re-apply writes nothing: the store already says exactly
	// this, and a commit is a disk sync.
	noop := !plan.Changes() && sameJSON(st, r.desired) && sameJSON(newRecords, allRecords)
	if !noop {
		if cerr := r.cfg.Store.Commit(st, newRecords); cerr != nil {
			return nil, fmt.Errorf("record applied state: %w", cerr)
		}
	}
	if plan.Changes() {
		crashpoint.Hit(crashpoint.AfterCommit)
	}
	if !noop {
		// One copy, shared by the loop and the readers' snapshot: neither
		// is ever modified in place, and Desired hands out copies.
		frozen := st.Clone()
		r.desired = frozen
		r.snapshot.Store(frozen)
	}
	r.packages = adm.Packages
	for _, a := range res.Actions {
		if a.Kind != string(planner.Keep) {
			r.cfg.Logger.Info("applied", "attachment", a.Attachment, "action", a.Kind, "reason", a.Reason)
		}
	}
	// Watchers, the enforcer and companions follow the applied state; a
	// no-op after the first notice has nothing new for them (and waking
	// the enforcer would re-check every hook for nothing).
	if r.cfg.Applied != nil && (!noop || !r.notified) {
		r.notified = true
		r.cfg.Applied(r.desired.Clone(), newRecords, pinned)
	}
	return res, err
}

// observe reads what the kernel and bpffs hold for the named attachments
// and every chained hook.
func (r *Reconciler) observe(names []string) (map[string]*observer.Attachment, map[string]*observer.Hook, error) {
	observed, err := observer.Observe(r.cfg.Layout, names)
	if err != nil {
		return nil, nil, err
	}
	hooks, err := observer.ObserveHooks(r.cfg.Layout)
	if err != nil {
		return nil, nil, err
	}
	return observed, hooks, nil
}

// without returns st minus the held attachments.
func without(st *desired.State, hold map[string]bool) *desired.State {
	if len(hold) == 0 {
		return st
	}
	out := st.Clone()
	kept := out.Spec.Attachments[:0]
	for _, a := range out.Spec.Attachments {
		if !hold[a.Name] {
			kept = append(kept, a)
		}
	}
	out.Spec.Attachments = kept
	return out
}

// recordApply puts an API apply's outcome in the event log: one event per
// attachment that changed, or one failure.
func (r *Reconciler) recordApply(res *v1.ApplyResult, err error, dryRun bool) {
	if dryRun {
		return
	}
	if err != nil {
		r.event(v1.Event{Type: v1.EventApplyFailed, Kind: desired.KindOf(err), Message: err.Error()})
		return
	}
	for _, a := range res.Actions {
		if a.Kind != string(planner.Keep) {
			r.event(v1.Event{Type: v1.EventApply, Attachment: a.Attachment, Kind: a.Kind, Message: a.Reason})
		}
	}
}

func (r *Reconciler) event(e v1.Event) {
	if r.cfg.Events != nil {
		r.cfg.Events.Add(e)
	}
}

// attachFailure tells a failure while attaching from one while loading:
// loading only happens for creates and replaces, and a failing load names
// the package field.
func attachFailure(plan *planner.Plan, errs desired.Errors) bool {
	for _, e := range errs {
		if e.Field == "package" {
			return false
		}
	}
	return plan.Changes()
}

func summarize(plan *planner.Plan, dryRun bool) *v1.ApplyResult {
	res := &v1.ApplyResult{DryRun: dryRun, Actions: []v1.Action{}}
	for _, a := range plan.Actions {
		res.Actions = append(res.Actions, v1.Action{Attachment: a.Name, Kind: string(a.Kind), Reason: a.Reason})
	}
	sort.Slice(res.Actions, func(i, j int) bool { return res.Actions[i].Attachment < res.Actions[j].Attachment })
	res.Changed = plan.Changes()
	return res
}
