package applier

import (
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/leaf-ebpf/leaf/internal/crashpoint"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/planner"
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

// prepareParallel loads every program the plan needs, on as many threads
// as there are CPUs and file descriptors to spare: most of an apply is the
// kernel's verifier, which runs on the calling thread, and the loads of
// independent hooks (one per fused chain or attachment) share nothing.
// Nothing is attached or pinned here, so a failure only has to close what
// was loaded; Apply does that for everything prepare returns. Errors come
// back in plan order, whatever order the loads finish in.
func (ap *Applier) prepareParallel(plan *planner.Plan) (map[string]*loaded, error) {
	var jobs []loadJob
	for _, cp := range plan.Chains {
		if cp.Fused && cp.Kind == planner.ChainSwitch && cp.Fresh > 0 {
			jobs = append(jobs, loadJob{chain: cp})
		}
	}
	for _, act := range plan.Actions {
		if needsLoad(act) {
			jobs = append(jobs, loadJob{act: act})
		}
	}
	results := make([]loadResult, len(jobs))
	workers := loadWorkers(len(jobs))
	if workers <= 1 {
		for i, j := range jobs {
			results[i] = ap.runLoad(j)
		}
	} else {
		next := make(chan int)
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					results[i] = ap.runLoad(jobs[i])
				}
			}()
		}
		for i := range jobs {
			next <- i
		}
		close(next)
		wg.Wait()
	}
	out := map[string]*loaded{}
	var errs desired.Errors
	for _, r := range results {
		for name, l := range r.loaded {
			out[name] = l
		}
		errs = append(errs, r.errs...)
	}
	return out, errs.Err()
}

func (ap *Applier) runLoad(j loadJob) loadResult {
	if j.chain != nil {
		return ap.prepareFusedChain(j.chain)
	}
	l, err := ap.load(j.act.Name, j.act.Desired)
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
