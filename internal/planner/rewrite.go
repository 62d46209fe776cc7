package planner

import (
	"fmt"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/internal/chain"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// rewrite is a chain member's program prepared for its chain: spec with
// its exits rewritten to hand over to the next member, and fuse the
// collection before the rewrite (nil when noFuse says why it cannot be
// fused). Both are shared by every resolution that asks for the same
// rewrite, and nobody may modify them.
type rewrite struct {
	spec, fuse *ebpf.CollectionSpec
	noFuse     string
}

// rewriteKey is everything a rewrite depends on: the package's content
// (its digest covers the object) and program, and the chain options.
type rewriteKey struct {
	digest, program string
	proceedOn       string
	countRuns, tc   bool
}

// rewrites memoizes rewrites. Analysing a program, checking its jumps and
// copying its collection is most of resolving a chained attachment, and
// every apply resolves every attachment again, mostly to find nothing
// changed. Bounded: past maxRewrites entries it starts afresh.
var rewrites = struct {
	mu sync.Mutex
	m  map[rewriteKey]*rewrite
}{m: map[rewriteKey]*rewrite{}}

const maxRewrites = 256

// rewritten returns the rewrite of pkg's program prog (spec being the
// package's parsed object, not modified) for a hook of hookType.
func rewritten(pkg *repository.Package, prog *manifest.Program, spec *ebpf.CollectionSpec, hookType string, proceedOn []int32, countRuns bool) (*rewrite, error) {
	key := rewriteKey{digest: pkg.Digest, program: prog.Name, proceedOn: fmt.Sprint(proceedOn), countRuns: countRuns, tc: hookType == manifest.HookTC}
	if pkg.Digest != "" {
		rewrites.mu.Lock()
		rw := rewrites.m[key]
		rewrites.mu.Unlock()
		if rw != nil {
			return rw, nil
		}
	}
	rw := &rewrite{}
	if err := chain.CanFuse(spec, prog.Function); err != nil {
		rw.noFuse = err.Error()
	} else {
		rw.fuse = spec.Copy()
	}
	rw.spec = spec.Copy()
	opts := chain.Options{ProceedOn: proceedOn, CountRuns: countRuns}
	if key.tc {
		// When every member proceeds, let TCX go on to the programs
		// attached after leaf's link.
		next := int32(-1)
		opts.EndVerdict = &next
	}
	if err := chain.Rewrite(rw.spec, prog.Function, opts); err != nil {
		return nil, err
	}
	if pkg.Digest != "" {
		rewrites.mu.Lock()
		if len(rewrites.m) >= maxRewrites {
			rewrites.m = map[rewriteKey]*rewrite{}
		}
		rewrites.m[key] = rw
		rewrites.mu.Unlock()
	}
	return rw, nil
}
