package chain

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// fuseMember copies function (and only it) out of spec with constants set.
func fuseMember(tb testing.TB, spec *ebpf.CollectionSpec, function string, proceedOn []int32, constants map[string]any) Member {
	tb.Helper()
	spec = spec.Copy()
	for name, v := range constants {
		if err := spec.Variables[name].Set(v); err != nil {
			tb.Fatalf("set %s: %v", name, err)
		}
	}
	for name := range spec.Programs {
		if name != function {
			delete(spec.Programs, name)
		}
	}
	return Member{Spec: spec, Function: function, ProceedOn: proceedOn}
}

// loadFused fuses members and loads the result; every member's counters
// and results maps are sh's, as in the tail-call tests.
func loadFused(tb testing.TB, members []Member, opts FuseOptions, sh *shared) *ebpf.Collection {
	tb.Helper()
	spec, err := Fuse(members, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return loadFusedSpec(tb, spec, sh)
}

func loadFusedSpec(tb testing.TB, spec *ebpf.CollectionSpec, sh *shared) *ebpf.Collection {
	tb.Helper()
	replacements := map[string]*ebpf.Map{}
	for key := range spec.Maps {
		_, name, ok := SplitMemberMap(key)
		if !ok {
			tb.Fatalf("fused map key %q does not name a member", key)
		}
		switch {
		case sh == nil:
		case name == "counters":
			replacements[key] = sh.counters
		case name == "results":
			replacements[key] = sh.results
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: replacements})
	if err != nil {
		tb.Fatalf("load fused chain: %+v", err)
	}
	tb.Cleanup(func() { coll.Close() })
	return coll
}

// outcome is what one packet did to a chain: its verdict and how often
// each member ran.
type outcome struct {
	verdict int32
	counts  []uint64
}

func (o outcome) String() string { return fmt.Sprintf("verdict %d, runs %v", o.verdict, o.counts) }

func runOnce(tb testing.TB, sh *shared, p *ebpf.Program, idx []uint32) outcome {
	tb.Helper()
	before := sh.counts(tb, idx...)
	v := int32(run(tb, p, frame(64)))
	after := sh.counts(tb, idx...)
	for i := range after {
		after[i] -= before[i]
	}
	return outcome{v, after}
}

// model is the chain semantics: each member runs while the one before it
// returned one of its proceed-on verdicts; the end verdict replaces a
// proceed-on verdict of the last member.
func model(verdicts []int32, proceedOn [][]int32, end *int32) outcome {
	o := outcome{counts: make([]uint64, len(verdicts))}
	for i, v := range verdicts {
		o.counts[i], o.verdict = 1, v
		if !slices.Contains(proceedOn[i], v) {
			return o
		}
	}
	if end != nil {
		o.verdict = *end
	}
	return o
}

// TestFusedMatchesTailCalls runs the same members with the same verdicts
// and proceed-on sets as a tail-call chain and as a fused chain: the
// verdict and which members run must be the same, and as the model says.
func TestFusedMatchesTailCalls(t *testing.T) {
	requireRoot(t)
	spec := loadSpec(t)
	pass, drop := []int32{xdpPass}, []int32{xdpDrop}
	both, none := []int32{xdpPass, xdpDrop}, []int32{}
	funcs := []string{"xdp_count_a", "xdp_count_b", "xdp_count_c"}
	idx := []uint32{idxA, idxB, idxC}
	for mask := range uint32(8) {
		for _, proceed := range [][][]int32{
			{pass, pass, pass}, {drop, drop, drop}, {both, both, both},
			{none, pass, pass}, {pass, none, pass}, {pass, drop, both}, {drop, pass, none},
		} {
			t.Run(fmt.Sprintf("mask=%03b/proceed=%v", mask, proceed), func(t *testing.T) {
				var verdicts []int32
				for _, i := range idx {
					v := int32(xdpPass)
					if mask&(1<<i) != 0 {
						v = xdpDrop
					}
					verdicts = append(verdicts, v)
				}
				want := model(verdicts, proceed, nil)
				constants := map[string]any{"stop_mask": mask}

				sh := newShared(t)
				var tail []*member
				var fused []Member
				for i, fn := range funcs {
					tail = append(tail, loadMember(t, spec, fn, sh, loadOpts{rewrite: &Options{ProceedOn: proceed[i]}, constants: constants}))
					fused = append(fused, fuseMember(t, spec, fn, proceed[i], constants))
				}
				for i := range tail[:len(tail)-1] {
					tail[i].link(t, tail[i+1])
				}
				coll := loadFused(t, fused, FuseOptions{}, sh)
				if got := runOnce(t, sh, tail[0].prog, idx); !equalOutcome(got, want) {
					t.Errorf("tail-call chain: %v, want %v", got, want)
				}
				if got := runOnce(t, sh, coll.Programs[FusedProgram], idx); !equalOutcome(got, want) {
					t.Errorf("fused chain: %v, want %v", got, want)
				}
			})
		}
	}
}

func equalOutcome(a, b outcome) bool {
	return a.verdict == b.verdict && slices.Equal(a.counts, b.counts)
}

// TestFusedTC: TC members, proceeding on TC_ACT_OK and TC_ACT_UNSPEC, end
// with TC_ACT_UNSPEC (TCX's "next") like the tail-call chain.
func TestFusedTC(t *testing.T) {
	requireRoot(t)
	spec := loadSpec(t)
	end := int32(tcActUnspec)
	proceed := []int32{tcActOK, tcActUnspec}
	idx := []uint32{idxTCA, idxTCB}
	for _, tc := range []struct {
		verdict int32
		mask    uint32
	}{{tcActOK, 0}, {tcActUnspec, 0}, {tcActOK, 1 << idxTCA}, {tcActOK, 1 << idxTCB}, {7 /* TC_ACT_REDIRECT */, 0}} {
		t.Run(fmt.Sprintf("verdict=%d/mask=%b", tc.verdict, tc.mask), func(t *testing.T) {
			constants := map[string]any{"tc_verdict": tc.verdict, "stop_mask": tc.mask}
			var verdicts []int32
			for _, i := range idx {
				v := tc.verdict
				if tc.mask&(1<<i) != 0 {
					v = tcActShot
				}
				verdicts = append(verdicts, v)
			}
			want := model(verdicts, [][]int32{proceed, proceed}, &end)

			sh := newShared(t)
			opts := &Options{ProceedOn: proceed, EndVerdict: &end}
			a := loadMember(t, spec, "tc_count_a", sh, loadOpts{rewrite: opts, constants: constants})
			b := loadMember(t, spec, "tc_count_b", sh, loadOpts{rewrite: opts, constants: constants})
			a.link(t, b)
			coll := loadFused(t, []Member{
				fuseMember(t, spec, "tc_count_a", proceed, constants),
				fuseMember(t, spec, "tc_count_b", proceed, constants),
			}, FuseOptions{EndVerdict: &end}, sh)
			if got := runOnce(t, sh, a.prog, idx); !equalOutcome(got, want) {
				t.Errorf("tail-call chain: %v, want %v", got, want)
			}
			if got := runOnce(t, sh, coll.Programs[FusedProgram], idx); !equalOutcome(got, want) {
				t.Errorf("fused chain: %v, want %v", got, want)
			}
		})
	}
}

// TestFusedMembersKeepTheirData: two members from the same object keep
// their own global data (different constants) and their own maps, and
// the same symbols (main function, subprogram) in both do not clash.
func TestFusedMembersKeepTheirData(t *testing.T) {
	requireRoot(t)
	spec := loadSpec(t)
	pass := []int32{xdpPass}
	members := []Member{
		fuseMember(t, spec, "xdp_subprog", pass, nil),
		fuseMember(t, spec, "xdp_count_a", pass, map[string]any{"stop_mask": uint32(0)}),
		fuseMember(t, spec, "xdp_subprog", pass, nil),
		fuseMember(t, spec, "xdp_count_a", pass, map[string]any{"stop_mask": uint32(1 << idxA)}),
	}
	// Private maps: nothing shared.
	coll := loadFused(t, members, FuseOptions{}, nil)
	if ret := run(t, coll.Programs[FusedProgram], frame(64)); ret != xdpDrop {
		t.Fatalf("verdict %d, want XDP_DROP from the last member's stop_mask", ret)
	}
	for i, want := range []uint64{0, 1, 0, 1} {
		key := idxA
		if members[i].Function == "xdp_subprog" {
			key = idxSubprog
		}
		var n uint64
		if err := coll.Maps[MemberMap(i, "counters")].Lookup(key, &n); err != nil {
			t.Fatal(err)
		}
		if members[i].Function == "xdp_subprog" {
			want = 1
		}
		if n != want {
			t.Errorf("member %d (%s): own counter %d, want %d", i, members[i].Function, n, want)
		}
	}
	// The subprogram computed its class in both copies.
	for _, i := range []int{0, 2} {
		var class uint64
		if err := coll.Maps[MemberMap(i, "results")].Lookup(idxSubprog, &class); err != nil {
			t.Fatal(err)
		}
		if class != 2 {
			t.Errorf("member %d: subprogram computed %d for a 64-byte frame, want 2", i, class)
		}
	}
}

// TestFusedSubprogramsAndStack: a member with a subprogram and one using
// most of the stack compute what they compute alone; together they need
// more stack than one frame has, which Fuse says before the verifier.
func TestFusedSubprogramsAndStack(t *testing.T) {
	requireRoot(t)
	spec := loadSpec(t)
	pass := []int32{xdpPass}

	sh := newShared(t)
	alone := loadMember(t, spec, "xdp_bigstack", sh, loadOpts{})
	if ret := run(t, alone.prog, frame(64)); ret != xdpPass {
		t.Fatalf("xdp_bigstack alone: verdict %d", ret)
	}
	want := sh.result(t, idxBigstack)

	sh = newShared(t)
	coll := loadFused(t, []Member{
		fuseMember(t, spec, "xdp_count_a", pass, nil),
		fuseMember(t, spec, "xdp_bigstack", pass, nil),
		fuseMember(t, spec, "xdp_count_c", pass, nil),
	}, FuseOptions{}, sh)
	if got := runOnce(t, sh, coll.Programs[FusedProgram], []uint32{idxA, idxBigstack, idxC}); !equalOutcome(got, outcome{xdpPass, []uint64{1, 1, 1}}) {
		t.Errorf("a, bigstack, c: %v", got)
	}
	if got := sh.result(t, idxBigstack); got != want {
		t.Errorf("fused xdp_bigstack computed %d, alone %d", got, want)
	}

	for size, tc := range map[int]struct {
		class   uint64
		verdict int32
		cRuns   uint64
	}{20: {1, xdpPass, 1}, 64: {2, xdpPass, 1}, 1200: {3, xdpDrop, 0}} {
		sh := newShared(t)
		coll := loadFused(t, []Member{
			fuseMember(t, spec, "xdp_subprog", pass, nil),
			fuseMember(t, spec, "xdp_count_c", pass, nil),
		}, FuseOptions{}, sh)
		if ret := int32(run(t, coll.Programs[FusedProgram], frame(size))); ret != tc.verdict {
			t.Errorf("%d-byte frame: verdict %d, want %d", size, ret, tc.verdict)
		}
		if got := sh.result(t, idxSubprog); got != tc.class {
			t.Errorf("%d-byte frame: subprogram computed %d, want %d", size, got, tc.class)
		}
		if got := sh.count(t, idxC); got != tc.cRuns {
			t.Errorf("%d-byte frame: next member ran %d times, want %d", size, got, tc.cRuns)
		}
	}

	// xdp_bigstack's frame (480 bytes) and xdp_subprog's call (no stack)
	// fit, the run counter's key too; a member whose subprogram uses 64
	// bytes does not.
	members := []Member{fuseMember(t, spec, "xdp_subprog", pass, nil), fuseMember(t, spec, "xdp_bigstack", pass, nil)}
	sh = newShared(t)
	coll = loadFused(t, members, FuseOptions{CountRuns: true}, sh)
	if got := runOnce(t, sh, coll.Programs[FusedProgram], []uint32{idxSubprog, idxBigstack}); !equalOutcome(got, outcome{xdpPass, []uint64{1, 1}}) {
		t.Errorf("subprog, bigstack: %v", got)
	}
	members[0] = deepSubprogram()
	_, err := Fuse(members, FuseOptions{})
	if !errors.Is(err, ErrCannotChain) || !strings.Contains(err.Error(), "stack") {
		t.Fatalf("deep subprogram + bigstack: got %v, want ErrCannotChain about the stack", err)
	}
	// The kernel agrees.
	if err := loadUnchecked(members, FuseOptions{}); err == nil {
		t.Error("the kernel loaded the fused chain Fuse refused for its stack")
	} else if !strings.Contains(err.Error(), "stack") {
		t.Errorf("the kernel refused the chain, but not for its stack: %v", err)
	}
	// The same with a compiled member: xdp_deepcall's subprogram has a
	// 128-byte frame.
	members = []Member{fuseMember(t, spec, "xdp_bigstack", pass, nil), fuseMember(t, spec, "xdp_deepcall", pass, nil)}
	if _, err := Fuse(members, FuseOptions{}); !errors.Is(err, ErrCannotChain) || !strings.Contains(err.Error(), "stack") {
		t.Fatalf("bigstack + deepcall: got %v, want ErrCannotChain about the stack", err)
	}
	if err := loadUnchecked(members, FuseOptions{}); err == nil || !strings.Contains(err.Error(), "stack") {
		t.Errorf("bigstack + deepcall unchecked: the kernel says %v, want a refusal for the stack", err)
	}
	// Alone with a small member it loads: BTF-less and BTF members mix.
	sh = newShared(t)
	coll = loadFused(t, []Member{deepSubprogram(), fuseMember(t, spec, "xdp_count_c", pass, nil)}, FuseOptions{}, sh)
	if got := runOnce(t, sh, coll.Programs[FusedProgram], []uint32{idxC}); !equalOutcome(got, outcome{xdpPass, []uint64{1}}) {
		t.Errorf("deep, c: %v", got)
	}
}

// deepSubprogram is a hand-assembled member (no BTF) whose subprogram
// uses 64 bytes of stack.
func deepSubprogram() Member {
	insns := asm.Instructions{
		asm.Call.Label("deep_sub").WithSymbol("deep"),
		asm.Mov.Imm(asm.R0, xdpPass),
		asm.Return(),
		asm.StoreImm(asm.RFP, -64, 0, asm.Word).WithSymbol("deep_sub"),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	}
	spec := &ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{
		"deep": {Name: "deep", Type: ebpf.XDP, AttachType: ebpf.AttachXDP, License: "Dual BSD/GPL", Instructions: insns},
	}}
	return Member{Spec: spec, Function: "deep", ProceedOn: []int32{xdpPass}}
}

// loadUnchecked fuses without the stack estimate and loads the result.
func loadUnchecked(members []Member, opts FuseOptions) error {
	spec, err := fuse(members, opts, nil)
	if err != nil {
		return err
	}
	coll, err := ebpf.NewCollection(spec)
	if err == nil {
		coll.Close()
	}
	return err
}

// TestFusedThirdPartyObject puts Debian's xdp-filter, compiled by someone
// else and unaware of chains, between two members of a fused chain.
func TestFusedThirdPartyObject(t *testing.T) {
	filt, fn, _ := loadXDPFilter(t)
	cfg, _, err := RunConfig(filt, fn)
	if err != nil {
		t.Fatal(err)
	}
	if err := CanFuse(filt, fn); err != nil {
		t.Fatal(err)
	}

	requireRoot(t)
	sh := newShared(t)
	spec := loadSpec(t)
	pass := []int32{xdpPass}
	for _, runs := range []bool{false, true} {
		coll := loadFused(t, []Member{
			fuseMember(t, spec, "xdp_count_a", pass, nil),
			fuseMember(t, filt, fn, cfg.ProceedOn, nil),
			fuseMember(t, spec, "xdp_count_c", pass, nil),
		}, FuseOptions{CountRuns: runs}, sh)
		got := runOnce(t, sh, coll.Programs[FusedProgram], []uint32{idxA, idxC})
		if !equalOutcome(got, outcome{xdpPass, []uint64{1, 1}}) {
			t.Fatalf("count runs %v: %v, want XDP_PASS through %s to c", runs, got, fn)
		}
		if n := statsPackets(t, coll.Maps[MemberMap(1, "xdp_stats_map")], xdpPass); n != 1 {
			t.Errorf("count runs %v: %s counted %d passed packets, want 1", runs, fn, n)
		}
	}
}

// TestFusedCountRuns: each member counts its own runs.
func TestFusedCountRuns(t *testing.T) {
	requireRoot(t)
	sh := newShared(t)
	spec := loadSpec(t)
	pass := []int32{xdpPass}
	coll := loadFused(t, []Member{
		fuseMember(t, spec, "xdp_count_a", pass, nil),
		fuseMember(t, spec, "xdp_count_b", pass, map[string]any{"stop_mask": uint32(1 << idxB)}),
		fuseMember(t, spec, "xdp_count_c", pass, nil),
	}, FuseOptions{CountRuns: true}, sh)
	for range 5 {
		if v := run(t, coll.Programs[FusedProgram], frame(64)); v != xdpDrop {
			t.Fatalf("verdict %d, want XDP_DROP from b", v)
		}
	}
	var got []uint64
	for i := range 3 {
		var per []uint64
		if err := coll.Maps[MemberMap(i, RunsMap)].Lookup(uint32(0), &per); err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, v := range per {
			n += v
		}
		got = append(got, n)
	}
	if !slices.Equal(got, []uint64{5, 5, 0}) {
		t.Fatalf("run counters a, b, c = %v, want [5 5 0]", got)
	}
	if got := sh.counts(t, idxA, idxB, idxC); !slices.Equal(got, []uint64{5, 5, 0}) {
		t.Fatalf("program counters a, b, c = %v, want [5 5 0]", got)
	}
}

func TestFuseRefusals(t *testing.T) {
	spec := loadSpec(t)
	pass := []int32{xdpPass}
	for _, tc := range []struct {
		name    string
		members []Member
		want    string
	}{
		{"none", nil, "no members"},
		{"tail caller", []Member{fuseMember(t, spec, "xdp_count_a", pass, nil), fuseMember(t, spec, "xdp_tailcaller", pass, nil)}, "bpf_tail_call"},
		{"cooperative", []Member{fuseMember(t, spec, "xdp_cooperative", pass, nil)}, "bpf_tail_call"},
		{"xdp and tc", []Member{fuseMember(t, spec, "xdp_count_a", pass, nil), fuseMember(t, spec, "tc_count_a", pass, nil)}, "program type"},
		{"full stack", []Member{fuseMember(t, spec, "xdp_fullstack", pass, nil)}, "no free stack slot"},
		{"missing", []Member{{Spec: spec, Function: "nope"}}, "no program"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Fuse(tc.members, FuseOptions{})
			if !errors.Is(err, ErrCannotChain) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrCannotChain mentioning %q", err, tc.want)
			}
		})
	}
	// Fuse leaves the members' specs as they were.
	before := len(spec.Programs["xdp_count_a"].Instructions)
	if _, err := Fuse([]Member{{Spec: spec, Function: "xdp_count_a", ProceedOn: pass}, {Spec: spec, Function: "xdp_count_b"}}, FuseOptions{CountRuns: true}); err != nil {
		t.Fatal(err)
	}
	if got := len(spec.Programs["xdp_count_a"].Instructions); got != before || spec.Maps[RunsMap] != nil {
		t.Errorf("Fuse changed a member's spec: %d instructions (was %d), runs map %v", got, before, spec.Maps[RunsMap])
	}
}

// TestFusedShape: one entry that saves the context, one reload per later
// member, no exit left in a member's main function before its epilogue.
func TestFusedShape(t *testing.T) {
	spec := loadSpec(t)
	pass := []int32{xdpPass}
	out, err := Fuse([]Member{
		fuseMember(t, spec, "xdp_count_a", pass, nil),
		fuseMember(t, spec, "xdp_count_b", pass, nil),
	}, FuseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	insns := out.Programs[FusedProgram].Instructions
	if insns[0].Symbol() != FusedProgram || insns[0].OpCode.Class() != asm.StXClass || insns[0].Src != asm.R1 {
		t.Errorf("first instruction %v, want the context saved (symbol %s)", insns[0], FusedProgram)
	}
	reloads := 0
	for _, ins := range insns {
		if ins.OpCode.Class() == asm.LdXClass && ins.Src == asm.RFP && ins.Dst == asm.R1 && ins.Offset == insns[0].Offset {
			reloads++
		}
	}
	if reloads != 1 {
		t.Errorf("%d reloads of the context, want 1 (before member 1)", reloads)
	}
	if n := countExits(insns); n != 2 {
		t.Errorf("%d exits, want 2 (each member's epilogue)", n)
	}
	for _, k := range []string{"0/counters", "1/counters", "0/.rodata", "1/.rodata"} {
		if out.Maps[k] == nil {
			t.Errorf("no map %s in %v", k, keys(out.Maps))
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestFuseMapLimit: the kernel allows 64 maps per program; a chain whose
// members use more together is not fused, and says why.
func TestFuseMapLimit(t *testing.T) {
	spec := loadSpec(t)
	pass := []int32{xdpPass}
	// xdp_count_a uses counters and .rodata: 2 maps, 3 with its run counter.
	var members []Member
	for range 21 {
		members = append(members, fuseMember(t, spec, "xdp_count_a", pass, nil))
	}
	if _, err := Fuse(members, FuseOptions{CountRuns: true}); err != nil {
		t.Fatalf("21 members with 63 maps: %v", err)
	}
	members = append(members, fuseMember(t, spec, "xdp_count_a", pass, nil))
	if os.Geteuid() == 0 {
		// The kernel agrees: 22 members with 66 maps, unchecked, fail...
		err := loadUnchecked(members, FuseOptions{CountRuns: true})
		if err == nil || !strings.Contains(err.Error(), "maps per program") {
			t.Errorf("the kernel loaded 66 maps in one program, or refused it for another reason: %v", err)
		}
		// ...and 21 with 63 load.
		loadFused(t, members[:21], FuseOptions{CountRuns: true}, nil)
	}
	members = members[:21]
	members = append(members, fuseMember(t, spec, "xdp_count_a", pass, nil))
	_, err := Fuse(members, FuseOptions{CountRuns: true})
	if !errors.Is(err, ErrCannotChain) || !strings.Contains(err.Error(), "66 maps") {
		t.Fatalf("22 members with 66 maps: got %v, want ErrCannotChain about 66 maps", err)
	}
}
