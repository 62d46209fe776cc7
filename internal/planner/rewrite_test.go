package planner

import (
	"testing"

	"github.com/leaf-ebpf/leaf/internal/chain"
	"github.com/leaf-ebpf/leaf/internal/manifest"
)

// TestRewrittenMemo: a rewrite asked for again with the same package and
// options is the one made before; other options make another; the
// package's shared spec is never modified, and the memoized rewrite is the
// same program a fresh rewrite makes.
func TestRewrittenMemo(t *testing.T) {
	p := pkg(t, "portfilter")
	spec, prog, err := p.SharedSpec("")
	if err != nil {
		t.Fatal(err)
	}
	before := spec.Programs[prog.Function].Instructions.String()
	pass := []int32{2}
	a, err := rewritten(p, prog, spec, manifest.HookXDP, pass, false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := rewritten(p, prog, spec, manifest.HookXDP, []int32{2}, false)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Error("the same rewrite asked twice was made twice")
	}
	for _, other := range []struct {
		name      string
		hook      string
		proceedOn []int32
		countRuns bool
	}{
		{"other verdicts", manifest.HookXDP, []int32{2, 3}, false},
		{"counting runs", manifest.HookXDP, pass, true},
		{"a TC hook", manifest.HookTC, pass, false},
	} {
		c, err := rewritten(p, prog, spec, other.hook, other.proceedOn, other.countRuns)
		if err != nil {
			t.Fatalf("%s: %v", other.name, err)
		}
		if c == a || c.spec.Programs[prog.Function].Instructions.String() == a.spec.Programs[prog.Function].Instructions.String() {
			t.Errorf("%s: got the rewrite made for other options", other.name)
		}
	}
	if got := spec.Programs[prog.Function].Instructions.String(); got != before {
		t.Error("rewriting modified the package's shared spec")
	}
	fresh := spec.Copy()
	if err := chain.Rewrite(fresh, prog.Function, chain.Options{ProceedOn: pass}); err != nil {
		t.Fatal(err)
	}
	if a.spec.Programs[prog.Function].Instructions.String() != fresh.Programs[prog.Function].Instructions.String() {
		t.Error("the memoized rewrite differs from a fresh one")
	}
	if a.fuse == nil || a.fuse.Programs[prog.Function].Instructions.String() != before {
		t.Errorf("the fuse spec is not the program before the rewrite (noFuse: %q)", a.noFuse)
	}
}
