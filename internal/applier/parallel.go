package applier

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/leaf-ebpf/leaf/internal/crashpoint"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/planner"
	"github.com/leaf-ebpf/leaf/internal/store"
)

// fdsPerLoad bounds the file descriptors one load holds at its peak: the
// program, its maps, BTF handles and the ELF's map pins it opens. A load
// holding more only waits for others to finish (the kernel refuses with
// EMFILE otherwise, which fails the apply cleanly).
const fdsPerLoad = 64

// loadJob loads one thing the plan needs: a fused chain's program, or one
// attachment's program.
type loadJob struct {
	chain *planner.ChainPlan // a fused chain
	act   *planner.Action    // else one attachment
}

// loadResult is what one job loaded, or why it failed.
type loadResult struct {
	loaded map[string]*loaded
	errs   desired.Errors
}

// loads are the programs a plan needs, loaded in the background while the
// commit attaches those that are ready: most of an apply is either the
// kernel's verifier, which runs on the loading thread, or the kernel
// waiting for an RCU grace period on each XDP or TCX attach (under a
// global lock, so attaches never overlap; docs/benchmarks.md "Parallel
// loads"). Loading the next programs while the commit waits in an attach
// overlaps the two. The loads of independent hooks (one job per fused
// chain or attachment) share nothing and run on as many threads as there
// are CPUs and file descriptors to spare, in the order the commit needs
// them.
//
// The commit goroutine alone calls ready, errs and close; workers only
// write their own result and close its done channel.
type loads struct {
	jobs    []loadJob
	results []loadResult
	done    []chan struct{}
	job     map[string]int // attachment name → the job that loads it
	taken   []bool
	// prepared is every program the commit has taken so far.
	prepared map[string]*loaded
	// unpinned are the attachments with nothing pinned (unpinnedNames).
	unpinned map[string]bool
}

// startLoads starts loading every program the plan needs. One load runs
// on the calling goroutine before startLoads returns (a one-program apply
// pays no hand-over); more run on worker goroutines.
func (ap *Applier) startLoads(plan *planner.Plan) *loads {
	ld := &loads{job: map[string]int{}, prepared: map[string]*loaded{}, unpinned: unpinnedNames(plan)}
	ld.plan(plan)
	ld.results = make([]loadResult, len(ld.jobs))
	ld.taken = make([]bool, len(ld.jobs))
	ld.done = make([]chan struct{}, len(ld.jobs))
	for i := range ld.done {
		ld.done[i] = make(chan struct{})
	}
	run := func(i int) {
		ld.results[i] = ap.runLoad(ld.jobs[i], ld.unpinned)
		close(ld.done[i])
	}
	switch len(ld.jobs) {
	case 0:
		return ld
	case 1:
		run(0)
		return ld
	}
	var next atomic.Int64
	for range loadWorkers(len(ld.jobs)) {
		go func() {
			for i := int(next.Add(1) - 1); i < len(ld.jobs); i = int(next.Add(1) - 1) {
				run(i)
			}
		}()
	}
	return ld
}

// plan lists the jobs in the order Apply commits them: attachments
// outside chains first, then chain by chain.
func (ld *loads) plan(plan *planner.Plan) {
	add := func(j loadJob, names ...string) {
		for _, n := range names {
			if _, ok := ld.job[n]; !ok {
				ld.job[n] = len(ld.jobs)
			}
		}
		ld.jobs = append(ld.jobs, j)
	}
	for _, act := range plan.Actions {
		if act.Chain == nil && needsLoad(act) {
			add(loadJob{act: act}, act.Name)
		}
	}
	for _, cp := range plan.Chains {
		if cp.Fused && cp.Kind == planner.ChainSwitch && cp.Fresh > 0 {
			add(loadJob{chain: cp}, memberNames(cp)...)
		}
		for _, act := range plan.Actions {
			if act.Chain == cp && needsLoad(act) {
				add(loadJob{act: act}, act.Name)
			}
		}
	}
}

// memberNames are the attachment names of a chain's members, in order.
func memberNames(cp *planner.ChainPlan) []string {
	names := make([]string, len(cp.Members))
	for i, r := range cp.Members {
		names[i] = r.Attachment.Name
	}
	return names
}

// ready waits for the loads of the named attachments and returns every
// program taken so far; ok is false when one of those loads failed.
func (ld *loads) ready(names ...string) (prepared map[string]*loaded, ok bool) {
	ok = true
	for _, n := range names {
		i, has := ld.job[n]
		if !has {
			continue
		}
		<-ld.done[i]
		if len(ld.results[i].errs) > 0 {
			ok = false
		}
		if !ld.taken[i] {
			ld.taken[i] = true
			for name, l := range ld.results[i].loaded {
				ld.prepared[name] = l
			}
		}
	}
	return ld.prepared, ok
}

// errs waits for every load and returns their errors in commit order,
// whatever order the loads finish in.
func (ld *loads) errs() desired.Errors {
	var errs desired.Errors
	for i := range ld.jobs {
		<-ld.done[i]
		errs = append(errs, ld.results[i].errs...)
	}
	return errs
}

// close waits for every load and closes what they loaded: the pins and
// links made from them hold their own references.
func (ld *loads) close() {
	for i := range ld.jobs {
		<-ld.done[i]
		for _, l := range ld.results[i].loaded {
			l.close()
		}
	}
}

func (ap *Applier) runLoad(j loadJob, unpinned map[string]bool) loadResult {
	if j.chain != nil {
		return ap.prepareFusedChain(j.chain, unpinned)
	}
	l, err := ap.load(j.act.Name, j.act.Desired, unpinned[j.act.Name])
	if err != nil {
		return loadResult{errs: desired.Errors{loadFailure(j.act.Name, "package", err)}}
	}
	crashpoint.Hit(crashpoint.Loaded)
	return loadResult{loaded: map[string]*loaded{j.act.Name: l}}
}

// fusedLoad reports whether an action's member is loaded as part of its
// chain's new fused program.
func fusedLoad(act *planner.Action) bool {
	cp := act.Chain
	return cp != nil && cp.Fused && cp.Kind == planner.ChainSwitch && cp.Fresh > 0 && act.Desired != nil && act.Desired.Chain != nil && act.Desired.Chain.FuseSpec != nil
}

// loadWorkers is how many loads run at once: one per CPU leafd may use,
// no more than there are loads, and no more than the free file
// descriptors allow.
func loadWorkers(jobs int) int {
	n := min(runtime.GOMAXPROCS(0), jobs)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil {
		open := 0
		if entries, err := os.ReadDir("/proc/self/fd"); err == nil {
			open = len(entries)
		}
		n = min(n, (int(lim.Cur)-open)/fdsPerLoad)
	}
	return max(n, 1)
}

// errLoadFailed stops a commit whose loads did not all succeed; the
// loads' own errors say why.
var errLoadFailed = errors.New("a load failed")

// chainError is the first chain that failed to commit, in plan order,
// with the attachment to blame.
type chainError struct {
	name string
	err  error
}

func (e *chainError) Error() string { return e.name + ": " + e.err.Error() }

// chainCommit is one hook's chain committed on a worker, with its own
// undo steps.
type chainCommit struct {
	cp       *planner.ChainPlan
	prepared map[string]*loaded // its members' loads only
	recs     map[string]*store.Record
	fins     []func()
	undo     undoStack
	err      error
}

// commitChains commits the plan's chains, those of different hooks at
// once, each as soon as its members are loaded. The kernel serialises the
// attaches themselves (each waits for an RCU grace period under a global
// lock); what overlaps is leafd's own work around them — pins, parameters,
// records — and the next loads. Every committed step's undo lands in undo,
// chain by chain in plan order, whatever happens; after the first failure
// no further chain starts. It returns errLoadFailed when a load failed, or
// the first failed chain in plan order as a *chainError.
func (ap *Applier) commitChains(plan *planner.Plan, ld *loads, undo *undoStack) (map[string]*store.Record, []func(), error) {
	var (
		commits []*chainCommit
		stop    atomic.Bool
		todo    = make(chan *chainCommit)
		wg      sync.WaitGroup
	)
	for range min(commitWorkers, len(plan.Chains)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range todo {
				if stop.Load() {
					continue
				}
				c.recs, c.fins, c.err = ap.commitChain(c.cp, plan, c.prepared, &c.undo)
				if c.err != nil {
					stop.Store(true)
				}
			}
		}()
	}
	loadFailed := false
	for _, cp := range plan.Chains {
		names := memberNames(cp)
		prepared, ok := ld.ready(names...)
		if !ok {
			loadFailed = true
			break
		}
		if stop.Load() {
			break
		}
		c := &chainCommit{cp: cp, prepared: map[string]*loaded{}}
		for _, n := range names {
			if l := prepared[n]; l != nil {
				c.prepared[n] = l
			}
		}
		commits = append(commits, c)
		todo <- c
	}
	close(todo)
	wg.Wait()
	recs := map[string]*store.Record{}
	var fins []func()
	var failed error
	for _, c := range commits {
		*undo = append(*undo, c.undo...)
		fins = append(fins, c.fins...)
		for n, r := range c.recs {
			recs[n] = r
		}
		if c.err != nil && failed == nil {
			failed = &chainError{name: chainErrName(c.cp, c.err), err: c.err}
		}
	}
	if failed == nil && loadFailed {
		failed = errLoadFailed
	}
	return recs, fins, failed
}

// chainErrName is the attachment a chain's failure is reported against:
// the member it was about, else the chain's first member.
func chainErrName(cp *planner.ChainPlan, err error) string {
	var me *memberError
	if errors.As(err, &me) {
		return me.name
	}
	if len(cp.Members) > 0 {
		return cp.Members[0].Attachment.Name
	}
	return cp.Hook.String()
}

// commitWorkers is how many chains commit at once. Their attaches queue
// on the kernel's lock; with eight in flight one is always queued when
// the one ahead returns, while the others do leafd's work around theirs
// (50 TCX attaches took 0.68 s from first to last with eight, 0.82 s with
// two, under strace; docs/benchmarks.md "Parallel loads").
const commitWorkers = 8
