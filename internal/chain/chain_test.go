package chain

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

const membersObject = "../../testdata/chain/members.bpf.o"

// Counter and result slots, as in testdata/chain/members.bpf.c.
const (
	idxA uint32 = iota
	idxB
	idxC
	idxTCA
	idxTCB
	idxSubprog
	idxBigstack
	idxCoop
	idxRuncfg
	idxDeepcall
)

const (
	xdpAborted = 0
	xdpDrop    = 1
	xdpPass    = 2
	xdpTX      = 3

	tcActUnspec = -1
	tcActOK     = 0
	tcActShot   = 2
)

var xdpProceed = Options{ProceedOn: []int32{xdpPass}}

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root to load BPF programs and run BPF_PROG_TEST_RUN")
	}
}

func loadSpec(tb testing.TB) *ebpf.CollectionSpec {
	tb.Helper()
	spec, err := ebpf.LoadCollectionSpec(membersObject)
	if err != nil {
		tb.Fatal(err)
	}
	return spec
}

// frame is a 64-byte Ethernet frame.
func frame(n int) []byte {
	b := make([]byte, n)
	copy(b, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x00})
	return b
}

// shared holds the maps all members of a test count into.
type shared struct {
	counters, results *ebpf.Map
}

func newShared(tb testing.TB) *shared {
	tb.Helper()
	spec := loadSpec(tb)
	var s shared
	var err error
	if s.counters, err = ebpf.NewMap(spec.Maps["counters"]); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.counters.Close() })
	if s.results, err = ebpf.NewMap(spec.Maps["results"]); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.results.Close() })
	return &s
}

func (s *shared) count(tb testing.TB, idx uint32) uint64 {
	tb.Helper()
	var n uint64
	if err := s.counters.Lookup(idx, &n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func (s *shared) counts(tb testing.TB, idx ...uint32) []uint64 {
	tb.Helper()
	out := make([]uint64, len(idx))
	for i, x := range idx {
		out[i] = s.count(tb, x)
	}
	return out
}

func (s *shared) result(tb testing.TB, idx uint32) uint64 {
	tb.Helper()
	var n uint64
	if err := s.results.Lookup(idx, &n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// member is one loaded program of a chain.
type member struct {
	prog *ebpf.Program
	next *ebpf.Map // nil when not rewritten
	coll *ebpf.Collection
}

// link stores to as the next member of m.
func (m *member) link(tb testing.TB, to *member) {
	tb.Helper()
	if err := m.next.Put(uint32(0), to.prog); err != nil {
		tb.Fatal(err)
	}
}

type loadOpts struct {
	rewrite   *Options       // nil: load unmodified
	constants map[string]any // .rodata variables to set
	mapNext   string         // map to return as next instead of NextMap
}

// loadMember loads function from spec (a fresh copy is taken) with the
// shared maps, rewriting it first when o.rewrite is set.
func loadMember(tb testing.TB, spec *ebpf.CollectionSpec, function string, sh *shared, o loadOpts) *member {
	tb.Helper()
	spec = spec.Copy()
	for name, v := range o.constants {
		if err := spec.Variables[name].Set(v); err != nil {
			tb.Fatalf("set %s: %v", name, err)
		}
	}
	for name := range spec.Programs {
		if name != function {
			delete(spec.Programs, name)
		}
	}
	if o.rewrite != nil {
		if err := Rewrite(spec, function, *o.rewrite); err != nil {
			tb.Fatal(err)
		}
	}
	replacements := map[string]*ebpf.Map{}
	if sh != nil {
		if _, ok := spec.Maps["counters"]; ok {
			replacements["counters"] = sh.counters
			replacements["results"] = sh.results
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: replacements})
	if err != nil {
		tb.Fatalf("load %s: %+v", function, err)
	}
	tb.Cleanup(func() { coll.Close() })
	m := &member{prog: coll.Programs[function], coll: coll}
	switch {
	case o.mapNext != "":
		m.next = coll.Maps[o.mapNext]
	case o.rewrite != nil:
		m.next = coll.Maps[NextMap]
	}
	return m
}

func run(tb testing.TB, p *ebpf.Program, data []byte) uint32 {
	tb.Helper()
	ret, err := p.Run(&ebpf.RunOptions{Data: data})
	if err != nil {
		tb.Fatal(err)
	}
	return ret
}

func chainXDP(t *testing.T, sh *shared, constants map[string]any) (a, b, c *member) {
	spec := loadSpec(t)
	o := loadOpts{rewrite: &xdpProceed, constants: constants}
	a = loadMember(t, spec, "xdp_count_a", sh, o)
	b = loadMember(t, spec, "xdp_count_b", sh, o)
	c = loadMember(t, spec, "xdp_count_c", sh, o)
	a.link(t, b)
	b.link(t, c)
	return a, b, c
}

func TestChainRunsAllMembers(t *testing.T) {
	requireRoot(t)
	sh := newShared(t)
	a, _, _ := chainXDP(t, sh, nil)

	if ret := run(t, a.prog, frame(64)); ret != xdpPass {
		t.Fatalf("chain verdict %d, want XDP_PASS", ret)
	}
	if got := sh.counts(t, idxA, idxB, idxC); !slices.Equal(got, []uint64{1, 1, 1}) {
		t.Fatalf("counters a, b, c = %v after one packet, want [1 1 1]", got)
	}
	if ret := run(t, a.prog, frame(64)); ret != xdpPass {
		t.Fatalf("second run: verdict %d", ret)
	}
	if got := sh.counts(t, idxA, idxB, idxC); !slices.Equal(got, []uint64{2, 2, 2}) {
		t.Fatalf("counters a, b, c = %v after two packets, want [2 2 2]", got)
	}
}

func TestChainStopsOnFinalVerdict(t *testing.T) {
	requireRoot(t)
	sh := newShared(t)
	// b returns XDP_DROP, which is not a proceed-on verdict.
	a, _, _ := chainXDP(t, sh, map[string]any{"stop_mask": uint32(1 << idxB)})

	if ret := run(t, a.prog, frame(64)); ret != xdpDrop {
		t.Fatalf("chain verdict %d, want XDP_DROP from the middle member", ret)
	}
	if got := sh.counts(t, idxA, idxB, idxC); !slices.Equal(got, []uint64{1, 1, 0}) {
		t.Fatalf("counters a, b, c = %v, want [1 1 0]: c must not run after b drops", got)
	}
}

func TestChainEmptyNextReturnsVerdict(t *testing.T) {
	requireRoot(t)
	sh := newShared(t)
	a, b, _ := chainXDP(t, sh, nil)

	// Cut the chain after a.
	if err := a.next.Delete(uint32(0)); err != nil {
		t.Fatal(err)
	}
	if ret := run(t, a.prog, frame(64)); ret != xdpPass {
		t.Fatalf("verdict %d with an empty next map, want XDP_PASS", ret)
	}
	if got := sh.counts(t, idxA, idxB, idxC); !slices.Equal(got, []uint64{1, 0, 0}) {
		t.Fatalf("counters a, b, c = %v, want [1 0 0]", got)
	}

	// The last member of a chain has an empty next map.
	if ret := run(t, b.prog, frame(64)); ret != xdpPass {
		t.Fatalf("verdict %d from b, want XDP_PASS", ret)
	}
	if got := sh.counts(t, idxA, idxB, idxC); !slices.Equal(got, []uint64{1, 1, 1}) {
		t.Fatalf("counters a, b, c = %v, want [1 1 1]", got)
	}
}

func TestChainEndVerdict(t *testing.T) {
	requireRoot(t)
	sh := newShared(t)
	spec := loadSpec(t)
	end := int32(xdpTX)
	opts := Options{ProceedOn: []int32{xdpPass}, EndVerdict: &end}
	a := loadMember(t, spec, "xdp_count_a", sh, loadOpts{rewrite: &opts})
	b := loadMember(t, spec, "xdp_count_b", sh, loadOpts{rewrite: &opts, constants: map[string]any{"stop_mask": uint32(1 << idxB)}})

	if ret := run(t, a.prog, frame(64)); ret != xdpTX {
		t.Fatalf("verdict %d at the end of the chain, want EndVerdict %d", ret, end)
	}
	a.link(t, b)
	if ret := run(t, a.prog, frame(64)); ret != xdpDrop {
		t.Fatalf("verdict %d, want b's XDP_DROP (a final verdict is not replaced)", ret)
	}
	if got := sh.counts(t, idxA, idxB); !slices.Equal(got, []uint64{2, 1}) {
		t.Fatalf("counters a, b = %v, want [2 1]", got)
	}
}

func TestChainTC(t *testing.T) {
	requireRoot(t)
	end := int32(tcActUnspec)
	opts := Options{ProceedOn: []int32{tcActOK, tcActUnspec}, EndVerdict: &end}

	for _, tc := range []struct {
		name      string
		constants map[string]any
		want      int32
		counts    []uint64
	}{
		{"ok proceeds", nil, tcActUnspec, []uint64{1, 1}},
		{"unspec proceeds", map[string]any{"tc_verdict": int32(tcActUnspec)}, tcActUnspec, []uint64{1, 1}},
		{"shot stops", map[string]any{"stop_mask": uint32(1 << idxTCA)}, tcActShot, []uint64{1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sh := newShared(t)
			spec := loadSpec(t)
			a := loadMember(t, spec, "tc_count_a", sh, loadOpts{rewrite: &opts, constants: tc.constants})
			b := loadMember(t, spec, "tc_count_b", sh, loadOpts{rewrite: &opts, constants: tc.constants})
			a.link(t, b)
			if ret := int32(run(t, a.prog, frame(64))); ret != tc.want {
				t.Errorf("verdict %d, want %d", ret, tc.want)
			}
			if got := sh.counts(t, idxTCA, idxTCB); !slices.Equal(got, tc.counts) {
				t.Errorf("counters a, b = %v, want %v", got, tc.counts)
			}
		})
	}
}

func TestSubprogramExitKept(t *testing.T) {
	requireRoot(t)
	sh := newShared(t)
	spec := loadSpec(t)

	orig := spec.Programs["xdp_subprog"].Instructions
	origMain := mainLen(orig)
	subExits := countExits(orig[origMain:])
	if subExits == 0 || origMain == len(orig) {
		t.Fatalf("xdp_subprog has no subprogram with an exit (main %d of %d instructions)", origMain, len(orig))
	}

	m := loadMember(t, spec, "xdp_subprog", sh, loadOpts{rewrite: &xdpProceed})
	c := loadMember(t, spec, "xdp_count_c", sh, loadOpts{rewrite: &xdpProceed})
	m.link(t, c)

	// The rewritten stream keeps the subprogram's exits.
	cpy := spec.Copy()
	if err := Rewrite(cpy, "xdp_subprog", xdpProceed); err != nil {
		t.Fatal(err)
	}
	insns := cpy.Programs["xdp_subprog"].Instructions
	if got := countExits(insns[mainLen(insns):]); got != subExits {
		t.Errorf("subprogram exits after rewrite: %d, want %d", got, subExits)
	}

	for _, tc := range []struct {
		size    int
		class   uint64
		verdict uint32
		cRuns   uint64
	}{
		{20, 1, xdpPass, 1},
		{64, 2, xdpPass, 1},
		{1200, 3, xdpDrop, 0},
	} {
		before := sh.count(t, idxC)
		if ret := run(t, m.prog, frame(tc.size)); ret != tc.verdict {
			t.Errorf("%d-byte frame: verdict %d, want %d", tc.size, ret, tc.verdict)
		}
		if got := sh.result(t, idxSubprog); got != tc.class {
			t.Errorf("%d-byte frame: subprogram computed %d, want %d", tc.size, got, tc.class)
		}
		if got := sh.count(t, idxC) - before; got != tc.cRuns {
			t.Errorf("%d-byte frame: next member ran %d times, want %d", tc.size, got, tc.cRuns)
		}
	}
}

func countExits(insns asm.Instructions) int {
	n := 0
	for _, ins := range insns {
		if ins.OpCode.Class().IsJump() && ins.OpCode.JumpOp() == asm.Exit {
			n++
		}
	}
	return n
}

func TestBigStack(t *testing.T) {
	spec := loadSpec(t)
	info, err := Inspect(spec, "xdp_bigstack")
	if err != nil {
		t.Fatal(err)
	}
	// The program's lowest stack object is the 4-byte key at r10-468.
	if info.Slot != -480 || !info.StackKnown {
		t.Fatalf("slot %d (stack known %v), want -480 (known)", info.Slot, info.StackKnown)
	}

	requireRoot(t)
	// The rewritten program computes what the original computes.
	sh := newShared(t)
	orig := loadMember(t, spec, "xdp_bigstack", sh, loadOpts{})
	if ret := run(t, orig.prog, frame(64)); ret != xdpPass {
		t.Fatalf("original: verdict %d", ret)
	}
	want := sh.result(t, idxBigstack)
	if want == 0 {
		t.Fatal("original recorded no sum")
	}
	if err := sh.results.Put(idxBigstack, uint64(0)); err != nil {
		t.Fatal(err)
	}

	m := loadMember(t, spec, "xdp_bigstack", sh, loadOpts{rewrite: &xdpProceed})
	c := loadMember(t, spec, "xdp_count_c", sh, loadOpts{rewrite: &xdpProceed})
	m.link(t, c)
	if ret := run(t, m.prog, frame(64)); ret != xdpPass {
		t.Fatalf("rewritten: verdict %d", ret)
	}
	if got := sh.result(t, idxBigstack); got != want {
		t.Errorf("rewritten program computed %d, original %d", got, want)
	}
	if got := sh.count(t, idxC); got != 1 {
		t.Errorf("next member ran %d times, want 1", got)
	}
}

func TestFullStackRefused(t *testing.T) {
	spec := loadSpec(t)
	before := spec.Programs["xdp_fullstack"].Instructions
	err := Rewrite(spec, "xdp_fullstack", xdpProceed)
	if !errors.Is(err, ErrCannotChain) || !strings.Contains(err.Error(), "no free stack slot") {
		t.Fatalf("got %v, want ErrCannotChain: no free stack slot", err)
	}
	if _, ok := spec.Maps[NextMap]; ok {
		t.Error("failed rewrite added the next map")
	}
	if got := spec.Programs["xdp_fullstack"].Instructions; len(got) != len(before) || &got[0] != &before[0] {
		t.Error("failed rewrite changed the instructions")
	}
}

func TestTailCallerRefused(t *testing.T) {
	spec := loadSpec(t)
	err := Rewrite(spec, "xdp_tailcaller", xdpProceed)
	if !errors.Is(err, ErrCannotChain) {
		t.Fatalf("got %v, want ErrCannotChain", err)
	}
	for _, want := range []string{"bpf_tail_call", "cooperative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// The cooperative program tail-calls too.
	if err := Rewrite(spec, "xdp_cooperative", xdpProceed); !errors.Is(err, ErrCannotChain) {
		t.Errorf("cooperative program: got %v, want ErrCannotChain", err)
	}
}

func TestRewriteRefusals(t *testing.T) {
	spec := loadSpec(t)
	if err := Rewrite(spec, "no_such_program", xdpProceed); !errors.Is(err, ErrCannotChain) || !strings.Contains(err.Error(), "no_such_program") {
		t.Errorf("missing function: got %v", err)
	}
	if err := Rewrite(spec, "xdp_count_a", xdpProceed); err != nil {
		t.Fatal(err)
	}
	// A second program of the same spec would share the next map.
	if err := Rewrite(spec, "xdp_count_b", xdpProceed); !errors.Is(err, ErrCannotChain) || !strings.Contains(err.Error(), NextMap) {
		t.Errorf("second rewrite in one spec: got %v", err)
	}
	// Not a chainable program type.
	spec = loadSpec(t)
	spec.Programs["xdp_count_a"].Type = ebpf.Kprobe
	if err := Rewrite(spec, "xdp_count_a", xdpProceed); !errors.Is(err, ErrCannotChain) {
		t.Errorf("kprobe: got %v", err)
	}
	// Legacy packet loads can leave the program without an exit.
	spec = loadSpec(t)
	p := spec.Programs["tc_count_a"]
	p.Instructions = append(asm.Instructions{asm.LoadAbs(12, asm.Half).WithSymbol("tc_count_a")},
		append(asm.Instructions{p.Instructions[0].WithSymbol("")}, p.Instructions[1:]...)...)
	if err := Rewrite(spec, "tc_count_a", Options{ProceedOn: []int32{0}}); !errors.Is(err, ErrCannotChain) || !strings.Contains(err.Error(), "legacy") {
		t.Errorf("LD_ABS: got %v", err)
	}
}

// TestRewriteShape checks the rewritten instruction stream of every chainable
// program in the test object, without loading it.
func TestRewriteShape(t *testing.T) {
	names := []string{"xdp_count_a", "xdp_count_c", "tc_count_a", "xdp_subprog", "xdp_bigstack", "xdp_runcfg", "xdp_trivial"}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			spec := loadSpec(t)
			orig := spec.Programs[name].Instructions
			info, err := Inspect(spec, name)
			if err != nil {
				t.Fatal(err)
			}
			if err := Rewrite(spec, name, Options{ProceedOn: []int32{2, 2, 0}}); err != nil {
				t.Fatal(err)
			}
			insns := spec.Programs[name].Instructions

			first := insns[0]
			if first.OpCode != asm.StoreMemOp(asm.DWord) || first.Dst != asm.RFP || first.Src != asm.R1 || first.Offset != info.Slot {
				t.Errorf("first instruction %v, want *(u64 *)(r10 %d) = r1", first, info.Slot)
			}
			if first.Symbol() != name {
				t.Errorf("first instruction has symbol %q, want %q", first.Symbol(), name)
			}
			if fn := btf.FuncMetadata(&first); fn == nil || fn.Name != name {
				t.Errorf("first instruction has BTF func %v, want %s", fn, name)
			}
			if insns[1].Symbol() != "" || btf.FuncMetadata(&insns[1]) != nil {
				t.Error("original first instruction still marks the function start")
			}
			if o, n := orig[0], insns[1]; o.OpCode != n.OpCode || o.Dst != n.Dst || o.Src != n.Src || o.Offset != n.Offset || o.Constant != n.Constant {
				t.Errorf("original first instruction changed: %v became %v", orig[0], insns[1])
			}

			n := mainLen(insns)
			// Prologue + main + epilogue (2 distinct verdicts) before any subprogram.
			if want := 1 + info.MainLen + 2 + 8; n != want {
				t.Errorf("main function has %d instructions, want %d", n, want)
			}
			if got := countExits(insns[:n]); got != 2 {
				t.Errorf("%d exits in the main function, want the epilogue's 2", got)
			}
			jumps := 0
			for _, ins := range insns[1 : 1+info.MainLen] {
				if ins.Reference() == epilogueSymbol {
					jumps++
				}
			}
			if jumps != info.Exits {
				t.Errorf("%d jumps to the epilogue, want one per original exit (%d)", jumps, info.Exits)
			}
			refs := 0
			for _, ins := range insns {
				if ins.Reference() == NextMap {
					refs++
				}
			}
			if refs != 1 {
				t.Errorf("%d references to %s, want 1", refs, NextMap)
			}
			if m := spec.Maps[NextMap]; m == nil || m.Type != ebpf.ProgramArray || m.KeySize != 4 || m.ValueSize != 4 || m.MaxEntries != 1 {
				t.Errorf("next map spec %v", m)
			}
			if err := checkJumps(insns, n, spec.ByteOrder); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestCheckJumps feeds the checker streams it must refuse.
func TestCheckJumps(t *testing.T) {
	ok := asm.Instructions{
		asm.Mov.Imm(asm.R0, 0).WithSymbol("f"),
		asm.LoadImm(asm.R1, 1<<40, asm.DWord),
		asm.Instruction{OpCode: asm.Ja.Op(asm.ImmSource), Offset: 2}, // over ld_imm64 (2 slots)
		asm.LoadImm(asm.R1, 1<<40, asm.DWord),
		asm.Ja.Label(epilogueSymbol),
		asm.Return().WithSymbol(epilogueSymbol),
	}
	if err := checkJumps(ok, len(ok), nil); err != nil {
		t.Fatalf("valid stream refused: %v", err)
	}
	intoLdImm := slices.Clone(ok)
	intoLdImm[2].Offset = 1 // lands on the second half of the ld_imm64
	if err := checkJumps(intoLdImm, len(ok), nil); err == nil {
		t.Error("jump into the middle of an ld_imm64 accepted")
	}
	outside := slices.Clone(ok)
	outside[2].Offset = 10
	if err := checkJumps(outside, len(ok), nil); err == nil {
		t.Error("jump past the main function accepted")
	}
	exitLeft := slices.Clone(ok)
	exitLeft[4] = asm.Return()
	if err := checkJumps(exitLeft, len(ok), nil); err == nil {
		t.Error("exit before the epilogue accepted")
	}
	unresolved := slices.Clone(ok)
	unresolved[4] = asm.Ja.Label("nowhere")
	if err := checkJumps(unresolved, len(ok), nil); err == nil {
		t.Error("unresolved label accepted")
	}
}

func TestLoadKeepsBTF(t *testing.T) {
	requireRoot(t)
	spec := loadSpec(t)
	m := loadMember(t, spec, "xdp_subprog", nil, loadOpts{rewrite: &xdpProceed})
	info, err := m.prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := info.BTFID(); !ok {
		t.Fatal("rewritten program loaded without BTF")
	}
	funcs, err := info.FuncInfos()
	if err != nil {
		t.Fatal(err)
	}
	if len(funcs) != 2 || funcs[0].Offset != 0 || funcs[0].Func.Name != "xdp_subprog" || funcs[1].Func.Name != "classify" {
		var got []string
		for _, f := range funcs {
			got = append(got, f.Func.Name)
		}
		t.Fatalf("func infos %v (first at %d), want xdp_subprog at 0 then classify", got, funcs[0].Offset)
	}
	lines, err := info.LineInfos()
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) == 0 || lines[0].Offset != 0 {
		t.Fatal("no line info at instruction 0")
	}
}

func TestCooperative(t *testing.T) {
	spec := loadSpec(t)
	if err := Cooperative(spec, "xdp_cooperative", "coop_next"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ fn, m, want string }{
		{"xdp_count_a", "coop_next", "neither references"},
		{"xdp_cooperative", "counters", "not a ProgramArray"},
		{"xdp_cooperative", "missing", "no map"},
		{"xdp_tailcaller", "coop_next", "does not reference"},
		{"nope", "coop_next", "no program"},
	} {
		if err := Cooperative(spec, tc.fn, tc.m); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Cooperative(%s, %s) = %v, want error containing %q", tc.fn, tc.m, err, tc.want)
		}
	}

	requireRoot(t)
	sh := newShared(t)
	coop := loadMember(t, spec, "xdp_cooperative", sh, loadOpts{mapNext: "coop_next"})
	b := loadMember(t, spec, "xdp_count_b", sh, loadOpts{rewrite: &xdpProceed})
	c := loadMember(t, spec, "xdp_count_c", sh, loadOpts{rewrite: &xdpProceed})

	if ret := run(t, coop.prog, frame(64)); ret != xdpPass {
		t.Fatalf("alone: verdict %d", ret)
	}
	coop.link(t, b)
	b.link(t, c)
	if ret := run(t, coop.prog, frame(64)); ret != xdpPass {
		t.Fatalf("chained: verdict %d", ret)
	}
	if got := sh.counts(t, idxCoop, idxB, idxC); !slices.Equal(got, []uint64{2, 1, 1}) {
		t.Fatalf("counters coop, b, c = %v, want [2 1 1]", got)
	}
}

func TestRunConfig(t *testing.T) {
	spec := loadSpec(t)
	cfg, ok, err := RunConfig(spec, "xdp_runcfg")
	if err != nil || !ok {
		t.Fatalf("RunConfig = %v, %v", ok, err)
	}
	if cfg.Priority != 12 || !slices.Equal(cfg.ProceedOn, []int32{xdpDrop, xdpPass}) {
		t.Errorf("got %+v, want priority 12, proceed on [XDP_DROP XDP_PASS]", cfg)
	}
	if _, ok, err := RunConfig(spec, "xdp_count_a"); ok || err != nil {
		t.Errorf("program without run config: ok %v, err %v", ok, err)
	}
}

// xdpFilterObject returns a Debian xdp-tools object, or skips.
func xdpFilterObject(t *testing.T) string {
	t.Helper()
	path := "/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_alw_all.o"
	if _, err := os.Stat(path); err != nil {
		t.Skipf("xdp-tools object not installed: %v", err)
	}
	return path
}

// xdpProgram returns the name of the one XDP program in spec.
func xdpProgram(t *testing.T, spec *ebpf.CollectionSpec) string {
	t.Helper()
	var names []string
	for name, p := range spec.Programs {
		if p.Type == ebpf.XDP {
			names = append(names, name)
		}
	}
	if len(names) != 1 {
		t.Fatalf("%d XDP programs in the object: %v", len(names), names)
	}
	return names[0]
}

// loadXDPFilter returns the spec of Debian's xdp-filter object and its XDP
// program's name, or skips.
func loadXDPFilter(t *testing.T) (spec *ebpf.CollectionSpec, fn, path string) {
	t.Helper()
	path = xdpFilterObject(t)
	spec, err := ebpf.LoadCollectionSpec(path)
	if err != nil {
		t.Fatal(err)
	}
	// The filter pins its maps by name (LIBBPF_PIN_BY_NAME) for xdp-filter's
	// user space; the tests want private ones.
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	return spec, xdpProgram(t, spec), path
}

func TestThirdPartyObject(t *testing.T) {
	filt, fn, path := loadXDPFilter(t)

	cfg, ok, err := RunConfig(filt, fn)
	if err != nil || !ok {
		t.Fatalf("%s: RunConfig = %v, %v", filepath.Base(path), ok, err)
	}
	if len(cfg.ProceedOn) == 0 {
		t.Errorf("%s: run config %+v has no proceed-on verdict", fn, cfg)
	}
	t.Logf("%s: run config %+v", fn, cfg)

	info, err := Inspect(filt, fn)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d instructions, %d exits, slot r10%d, stack known %v", fn, info.MainLen, info.Exits, info.Slot, info.StackKnown)

	requireRoot(t)
	sh := newShared(t)
	spec := loadSpec(t)
	a := loadMember(t, spec, "xdp_count_a", sh, loadOpts{rewrite: &xdpProceed})
	mid := loadMember(t, filt, fn, nil, loadOpts{rewrite: &xdpProceed})
	c := loadMember(t, spec, "xdp_count_c", sh, loadOpts{rewrite: &xdpProceed})
	a.link(t, mid)
	mid.link(t, c)

	if ret := run(t, a.prog, frame(64)); ret != xdpPass {
		t.Fatalf("verdict %d, want XDP_PASS", ret)
	}
	if got := sh.counts(t, idxA, idxC); !slices.Equal(got, []uint64{1, 1}) {
		t.Fatalf("counters a, c = %v, want [1 1]: the packet must go through %s to c", got, fn)
	}
	// The filter saw the packet: its per-action statistics count it.
	stats := mid.coll.Maps["xdp_stats_map"]
	if stats == nil {
		t.Fatalf("%s has no xdp_stats_map", fn)
	}
	if n := statsPackets(t, stats, xdpPass); n != 1 {
		t.Errorf("%s counted %d passed packets, want 1", fn, n)
	}
}

// statsPackets sums the packet counter of one action in xdp-tools'
// xdp_stats_map (per-CPU array of struct datarec { __u64 rx_packets; __u64 rx_bytes; }).
func statsPackets(t *testing.T, m *ebpf.Map, action uint32) uint64 {
	t.Helper()
	type datarec struct{ Packets, Bytes uint64 }
	var perCPU []datarec
	if err := m.Lookup(action, &perCPU); err != nil {
		t.Fatalf("xdp_stats_map: %v", err)
	}
	var n uint64
	for _, r := range perCPU {
		n += r.Packets
	}
	return n
}

// TestRewriteRawJumps rewrites a hand-assembled program whose raw jumps cross
// an ld_imm64 and loop back to its start: every jump must keep its target.
func TestRewriteRawJumps(t *testing.T) {
	insns := asm.Instructions{
		asm.Mov.Imm(asm.R2, 0).WithSymbol("raw"), // 0
		asm.Add.Imm(asm.R2, 1),                   // 1: loop
		asm.LoadImm(asm.R3, 5, asm.DWord),        // 2: two raw slots
		// 4 (raw): if r2 < r3 goto 1 (raw offset 1 - 4 - 1)
		{OpCode: asm.JLT.Op(asm.RegSource), Dst: asm.R2, Src: asm.R3, Offset: -4},
		asm.Mov.Imm(asm.R0, xdpPass), // 5
		// if r2 == 5 goto 8 (raw 6 + 1 + 1)
		{OpCode: asm.JEq.Op(asm.ImmSource), Dst: asm.R2, Constant: 5, Offset: 1},
		asm.Return(),                 // 7: never taken
		asm.Mov.Imm(asm.R0, xdpDrop), // 8
		asm.Return(),                 // 9
	}
	spec := &ebpf.CollectionSpec{
		Maps: map[string]*ebpf.MapSpec{},
		Programs: map[string]*ebpf.ProgramSpec{
			"raw": {Name: "raw", Type: ebpf.XDP, License: "GPL", Instructions: insns},
		},
	}
	opts := Options{ProceedOn: []int32{xdpDrop}}
	if err := Rewrite(spec, "raw", opts); err != nil {
		t.Fatal(err)
	}
	out := spec.Programs["raw"].Instructions
	// Every original instruction moved down by exactly one; jump offsets
	// are relative, so they are unchanged, and their targets moved with them.
	if out[4].Offset != -4 || out[6].Offset != 1 {
		t.Fatalf("raw jump offsets changed: %v, %v", out[4], out[6])
	}
	for _, i := range []int{7, 9} { // the exits, now jumps
		if out[i].OpCode.JumpOp() != asm.Ja || out[i].Reference() != epilogueSymbol {
			t.Errorf("instruction %d is %v, want a jump to the epilogue", i, out[i])
		}
	}

	requireRoot(t)
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	defer coll.Close()
	if ret := run(t, coll.Programs["raw"], frame(64)); ret != xdpDrop {
		t.Fatalf("verdict %d, want XDP_DROP after the loop", ret)
	}
}

func TestStackSlotChoice(t *testing.T) {
	ret := asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()}
	for _, tc := range []struct {
		name  string
		body  asm.Instructions
		slot  int16
		known bool
		fails bool
	}{
		{"no stack", nil, -8, true, false},
		{"4-byte store", asm.Instructions{asm.StoreImm(asm.RFP, -4, 0, asm.Word)}, -16, true, false},
		{"address taken later", asm.Instructions{
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Mov.Imm(asm.R1, 0),
			asm.Add.Imm(asm.R2, -40),
		}, -48, true, false},
		{"variable offset", asm.Instructions{
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Reg(asm.R2, asm.R3),
			asm.StoreImm(asm.RFP, -16, 0, asm.Word),
		}, -24, false, false},
		{"frame pointer stored", asm.Instructions{asm.StoreMem(asm.RFP, -8, asm.RFP, asm.DWord)}, -16, false, false},
		{"full stack", asm.Instructions{asm.StoreMem(asm.RFP, -512, asm.R1, asm.DWord)}, 0, false, true},
		{"load at -508", asm.Instructions{asm.LoadMem(asm.R0, asm.RFP, -508, asm.Word)}, 0, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			insns := append(slices.Clone(tc.body), ret...)
			insns[0] = insns[0].WithSymbol("f")
			info, err := analyze(insns)
			if tc.fails {
				if !errors.Is(err, ErrCannotChain) {
					t.Fatalf("got %+v, %v; want ErrCannotChain", info, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if info.Slot != tc.slot || info.StackKnown != tc.known {
				t.Errorf("slot %d known %v, want %d known %v", info.Slot, info.StackKnown, tc.slot, tc.known)
			}
		})
	}
}

// runs sums a member's per-CPU run counter.
func runs(tb testing.TB, m *member) uint64 {
	tb.Helper()
	var per []uint64
	if err := m.coll.Maps[RunsMap].Lookup(uint32(0), &per); err != nil {
		tb.Fatal(err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n
}

// TestCountRuns: with CountRuns every member counts each time it runs,
// tail-called members included (the kernel's statistics miss those), and
// the count does not change what the program computes.
func TestCountRuns(t *testing.T) {
	requireRoot(t)
	sh := newShared(t)
	spec := loadSpec(t)
	opts := Options{ProceedOn: []int32{xdpPass}, CountRuns: true}
	a := loadMember(t, spec, "xdp_count_a", sh, loadOpts{rewrite: &opts})
	b := loadMember(t, spec, "xdp_count_b", sh, loadOpts{rewrite: &opts, constants: map[string]any{"stop_mask": uint32(1 << idxB)}})
	c := loadMember(t, spec, "xdp_count_c", sh, loadOpts{rewrite: &opts})
	a.link(t, b)
	b.link(t, c)
	for i := 0; i < 5; i++ {
		if v := run(t, a.prog, frame(64)); v != xdpDrop {
			t.Fatalf("verdict %d, want XDP_DROP from b", v)
		}
	}
	if got := []uint64{runs(t, a), runs(t, b), runs(t, c)}; got[0] != 5 || got[1] != 5 || got[2] != 0 {
		t.Fatalf("run counters a, b, c = %v, want [5 5 0]", got)
	}
	if got := sh.counts(t, idxA, idxB, idxC); got[0] != 5 || got[1] != 5 || got[2] != 0 {
		t.Fatalf("program counters a, b, c = %v, want [5 5 0]", got)
	}
	// A rewritten program using most of its stack still fits the counter.
	if err := Rewrite(loadSpec(t), "xdp_bigstack", opts); err != nil {
		t.Fatalf("bigstack with CountRuns: %v", err)
	}
}
