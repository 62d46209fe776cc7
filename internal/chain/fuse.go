package chain

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// FusedProgram is the name of the one program Fuse builds.
const FusedProgram = "leaf_fused"

// Member is one program of a fused chain.
type Member struct {
	// Spec holds the member's program and its maps and global data, with
	// its load-time constants already set. Fuse does not change it.
	Spec *ebpf.CollectionSpec
	// Function names the member's program in Spec.
	Function string
	// ProceedOn lists the verdicts on which the next member runs.
	ProceedOn []int32
}

// FuseOptions control the program Fuse builds.
type FuseOptions struct {
	// EndVerdict, if set, is returned when the last member returns a
	// proceed-on verdict, as Options.EndVerdict in a tail-call chain.
	EndVerdict *int32
	// CountRuns gives each member a run counter of its own
	// (MemberMap(i, RunsMap)) that the member's first instructions
	// increment.
	CountRuns bool
}

// MemberMap returns the key under which a fused collection holds member
// i's map (or global data section) name. Each member keeps maps of its
// own even where names clash; MapSpec.Name, the name the kernel shows,
// stays the member's.
func MemberMap(i int, name string) string { return strconv.Itoa(i) + "/" + name }

// SplitMemberMap is the inverse of MemberMap.
func SplitMemberMap(key string) (member int, name string, ok bool) {
	idx, name, found := strings.Cut(key, "/")
	if !found {
		return 0, "", false
	}
	i, err := strconv.Atoi(idx)
	if err != nil || i < 0 {
		return 0, "", false
	}
	return i, name, true
}

// CanFuse reports why spec.Programs[function] cannot be a member of a
// fused chain, or nil if it can. The verifier has the last word: a fused
// chain can still be refused as a whole (complexity, stack).
func CanFuse(spec *ebpf.CollectionSpec, function string) error {
	prog, err := chainable(spec, function)
	if err != nil {
		return err
	}
	_, err = analyze(prog.Instructions)
	return err
}

// fusePart is one member's program as Fuse sees it.
type fusePart struct {
	prog *ebpf.ProgramSpec
	info Info
	// insns are the member's instructions with its symbols, bpf-to-bpf
	// references and map references renamed to its own.
	insns asm.Instructions
}

// Fuse builds one program that runs the members' code straight through,
// in order, and returns it in a collection with every member's maps and
// global data (keys from MemberMap) and variables (likewise keyed).
//
// The program saves the context pointer in a stack slot below every
// member's stack use; each member's main function follows, its exits
// turned into a jump to a check of its verdict: a final verdict is
// returned, a proceed-on verdict reloads the context pointer and falls
// through to the next member. The members share one stack frame, since
// they run one after another. Their subprograms follow, unchanged but
// renamed. A member that never proceeds ends the chain: the members after
// it keep their maps but contribute no code.
//
// It fails with an error wrapping ErrCannotChain when a member cannot be
// fused (see CanFuse), the members differ in program type, attach type,
// flags or licence, or their stacks cannot fit in one frame together.
func Fuse(members []Member, opts FuseOptions) (*ebpf.CollectionSpec, error) {
	return fuse(members, opts, checkLimits)
}

// fuse is Fuse with the check of the kernel's limits given (nil: leave
// them to the kernel).
func fuse(members []Member, opts FuseOptions, check func([]fusePart, int, FuseOptions) error) (*ebpf.CollectionSpec, error) {
	parts, slot, err := fuseParts(members, opts)
	if err != nil {
		return nil, err
	}
	license, err := fusedLicense(parts)
	if err != nil {
		return nil, err
	}
	// Members after one that never proceeds are never reached; the
	// verifier refuses unreachable code.
	reached := len(members)
	for i, m := range members[:len(members)-1] {
		if len(m.ProceedOn) == 0 {
			reached = i + 1
			break
		}
	}
	frame := -int(slot)
	if opts.CountRuns {
		frame += 8 // the run counter's key, below the slot
	}
	if frame > maxStack {
		return nil, cannot("no free stack slot: the members together use %d of %d bytes of stack", frame-8, maxStack)
	}
	if check != nil {
		if err := check(parts[:reached], frame, opts); err != nil {
			return nil, err
		}
	}

	var out, subprogs asm.Instructions
	for i := range reached {
		block, err := fusedBlock(parts[i], i, i == reached-1, slot, members[i].ProceedOn, opts)
		if err != nil {
			return nil, fmt.Errorf("member %d (%s): %w", i, members[i].Function, err)
		}
		out = append(out, block...)
		subprogs = append(subprogs, parts[i].insns[parts[i].info.MainLen:]...)
	}
	out = fixFuncMetadata(append(out, subprogs...))
	return fusedCollection(members, parts[0].prog, out, license, opts), nil
}

// fuseParts checks that every member can be fused and that they can share
// one program, and returns them renamed apart, with the stack slot below
// all of them.
func fuseParts(members []Member, opts FuseOptions) ([]fusePart, int16, error) {
	if len(members) == 0 {
		return nil, 0, cannot("no members to fuse")
	}
	parts := make([]fusePart, len(members))
	slot := int16(0)
	for i, m := range members {
		prog, err := chainable(m.Spec, m.Function)
		if err == nil {
			parts[i].info, err = analyze(prog.Instructions)
		}
		if err != nil {
			return nil, 0, fmt.Errorf("member %d (%s): %w", i, m.Function, err)
		}
		if opts.CountRuns && m.Spec.Maps[RunsMap] != nil {
			return nil, 0, cannot("member %d (%s): the collection already has a map named %s", i, m.Function, RunsMap)
		}
		parts[i].prog = prog
		parts[i].insns = renameMember(prog.Instructions, i)
		slot = min(slot, parts[i].info.Slot)
	}
	return parts, slot, sameKind(parts)
}

// fusedCollection holds the fused program and every member's maps and
// variables under MemberMap keys.
func fusedCollection(members []Member, first *ebpf.ProgramSpec, insns asm.Instructions, license string, opts FuseOptions) *ebpf.CollectionSpec {
	spec := &ebpf.CollectionSpec{
		Maps:      map[string]*ebpf.MapSpec{},
		Variables: map[string]*ebpf.VariableSpec{},
		Programs: map[string]*ebpf.ProgramSpec{FusedProgram: {
			Name: FusedProgram, Type: first.Type, AttachType: first.AttachType,
			SectionName: first.SectionName, Flags: first.Flags, License: license,
			ByteOrder: first.ByteOrder, Instructions: insns,
		}},
		ByteOrder: members[0].Spec.ByteOrder,
	}
	for i, m := range members {
		for name, ms := range m.Spec.Maps {
			spec.Maps[MemberMap(i, name)] = ms.Copy()
		}
		for name, vs := range m.Spec.Variables {
			c := vs.Copy()
			c.SectionName = MemberMap(i, vs.SectionName)
			spec.Variables[MemberMap(i, name)] = c
		}
		if opts.CountRuns {
			spec.Maps[MemberMap(i, RunsMap)] = runsMapSpec()
		}
	}
	return spec
}

// maxUsedMaps is the most maps one program may use (MAX_USED_MAPS).
const maxUsedMaps = 64

// usedMaps counts the maps the fused program will reference: each
// member's own, global data sections included, and its run counter.
func usedMaps(parts []fusePart, countRuns bool) int {
	n := 0
	for _, p := range parts {
		seen := map[string]bool{}
		for _, ins := range p.insns {
			if ins.IsLoadFromMap() && ins.Reference() != "" && !seen[ins.Reference()] {
				seen[ins.Reference()] = true
				n++
			}
		}
		if countRuns {
			n++
		}
	}
	return n
}

// fusedBlock returns member i's part of the main function: its entry
// (save the context pointer for the first member, reload it for the
// others), its run counter, its main function with every exit turned into
// a jump to its epilogue, and the epilogue.
func fusedBlock(p fusePart, i int, last bool, slot int16, proceedOn []int32, opts FuseOptions) (asm.Instructions, error) {
	main := p.insns[:p.info.MainLen]
	first := main[0]
	var entry asm.Instruction
	if i == 0 {
		entry = asm.StoreMem(asm.RFP, slot, asm.R1, asm.DWord).WithSymbol(FusedProgram)
		if fn := btf.FuncMetadata(&first); fn != nil {
			entry = btf.WithFuncMetadata(entry, fn)
		}
	} else {
		entry = asm.LoadMem(asm.R1, asm.RFP, slot, asm.DWord).WithSymbol(memberSymbol(i, "leaf_start"))
	}
	if src := first.Source(); src != nil {
		entry = entry.WithSource(src)
	}
	first = btf.WithFuncMetadata(first.WithSymbol(""), nil)

	block := asm.Instructions{entry}
	if opts.CountRuns {
		block = append(block, countRunsIn(slot, MemberMap(i, RunsMap), memberSymbol(i, countedSymbol))...)
	}
	block = append(block, first)
	block = append(block, main[1:]...)

	epilogue := memberSymbol(i, epilogueSymbol)
	var end asm.RawInstructionOffset
	for _, ins := range block {
		end += asm.RawInstructionOffset(ins.Size() / asm.InstructionSize)
	}
	var off asm.RawInstructionOffset
	for j, ins := range block {
		if ins.OpCode.Class().IsJump() && ins.OpCode.JumpOp() == asm.Exit {
			jump := asm.Ja.Label(epilogue)
			if int64(end)-int64(off)-1 > 32767 {
				jump = asm.LongJump(epilogue)
			}
			block[j] = jump.WithMetadata(ins.Metadata).WithReference(epilogue)
		}
		off += asm.RawInstructionOffset(ins.Size() / asm.InstructionSize)
	}

	verdicts := dedup(proceedOn)
	target := memberSymbol(i+1, "leaf_start")
	if last {
		if opts.EndVerdict == nil || len(verdicts) == 0 {
			return append(block, asm.Return().WithSymbol(epilogue)), nil
		}
		target = memberSymbol(i, tailSymbol)
	}
	for k, v := range verdicts {
		cmp := asm.JEq.Imm32(asm.R0, v, target)
		if k == 0 {
			cmp = cmp.WithSymbol(epilogue)
		}
		block = append(block, cmp)
	}
	ret := asm.Return()
	if len(verdicts) == 0 {
		ret = ret.WithSymbol(epilogue)
	}
	block = append(block, ret)
	if last {
		// 64-bit move of the sign-extended value, like C's "return -1;".
		block = append(block, asm.Mov.Imm(asm.R0, *opts.EndVerdict).WithSymbol(target), asm.Return())
	}
	return block, nil
}

// renameMember gives member i's symbols, the bpf-to-bpf calls and jumps
// that name them, and its map references names of their own, so that
// members built from the same object (or objects with the same function
// and map names) stay apart.
func renameMember(insns asm.Instructions, i int) asm.Instructions {
	out := make(asm.Instructions, len(insns))
	for j, ins := range insns {
		if sym := ins.Symbol(); sym != "" {
			ins = ins.WithSymbol(memberSymbol(i, sym))
		}
		if ref := ins.Reference(); ref != "" {
			switch {
			case ins.IsLoadFromMap():
				ins = ins.WithReference(MemberMap(i, ref))
			case ins.IsFunctionReference(), ins.OpCode.Class().IsJump() && ins.OpCode.JumpOp() != asm.Call:
				ins = ins.WithReference(memberSymbol(i, ref))
			}
		}
		out[j] = ins
	}
	return out
}

func memberSymbol(i int, sym string) string { return "leaf_m" + strconv.Itoa(i) + "_" + sym }

// sameKind checks that the members can share one program: the same
// program type, attach type and flags (XDP frags, for example).
func sameKind(parts []fusePart) error {
	first := parts[0].prog
	for i, p := range parts[1:] {
		switch {
		case p.prog.Type != first.Type:
			return cannot("member %d has program type %s, member 0 %s", i+1, p.prog.Type, first.Type)
		case p.prog.AttachType != first.AttachType:
			return cannot("member %d has attach type %s, member 0 %s", i+1, p.prog.AttachType, first.AttachType)
		case p.prog.Flags != first.Flags:
			return cannot("member %d has program flags %#x, member 0 %#x", i+1, p.prog.Flags, first.Flags)
		}
	}
	return nil
}

// gplCompatible lists the licence strings the kernel treats as GPL
// compatible (license_is_gpl_compatible).
var gplCompatible = map[string]bool{
	"GPL": true, "GPL v2": true, "GPL and additional rights": true,
	"Dual BSD/GPL": true, "Dual MIT/GPL": true, "Dual MPL/GPL": true,
}

// fusedLicense is the members' common licence, or "GPL" when they differ
// but all are GPL compatible. Otherwise fusing would change what some
// member may call, so it is refused.
func fusedLicense(parts []fusePart) (string, error) {
	lic := parts[0].prog.License
	same, gpl := true, true
	for _, p := range parts {
		same = same && p.prog.License == lic
		gpl = gpl && gplCompatible[p.prog.License]
	}
	switch {
	case same:
		return lic, nil
	case gpl:
		return "GPL", nil
	}
	return "", cannot("members have different licences, not all GPL compatible")
}

// checkLimits refuses a chain that the kernel would refuse for its stack
// or its number of maps, saying so before the verifier does.
func checkLimits(parts []fusePart, frame int, opts FuseOptions) error {
	if n := usedMaps(parts, opts.CountRuns); n > maxUsedMaps {
		return cannot("the members use %d maps together, the kernel allows %d per program", n, maxUsedMaps)
	}
	return checkFusedStack(parts, frame)
}

// checkFusedStack refuses a chain whose shared main frame plus a member's
// deepest chain of bpf-to-bpf calls exceeds the kernel's 512 bytes, where
// the stack use is known. The kernel rounds each frame up to 16 bytes
// when it JITs the program (to 32 for the interpreter, which the verifier
// then judges).
func checkFusedStack(parts []fusePart, frame int) error {
	main := roundFrame(frame)
	for i, p := range parts {
		if !p.info.StackKnown {
			continue
		}
		depth, known := callDepth(p.insns, p.info.MainLen)
		if known && main+depth > maxStack {
			return cannot("stack: the shared frame (%d bytes) and member %d's deepest bpf-to-bpf calls (%d bytes) need more than %d bytes", main, i, depth, maxStack)
		}
	}
	return nil
}

func roundFrame(n int) int { return (n + 15) &^ 15 }

// callDepth returns the stack the deepest chain of subprogram calls from
// the main function (insns[:mainLen]) needs, not counting the main frame.
func callDepth(insns asm.Instructions, mainLen int) (int, bool) {
	type fn struct {
		frame   int
		known   bool
		callees []string
	}
	funcs := map[string]*fn{}
	var mainCalls []string
	start, name := 0, ""
	flush := func(end int) {
		body := insns[start:end]
		calls := calledSymbols(body)
		if name == "" {
			mainCalls = calls
			return
		}
		lowest, known := stackUse(body)
		funcs[name] = &fn{frame: roundFrame(-lowest), known: known, callees: calls}
	}
	for i := mainLen; i < len(insns); i++ {
		if funcStart(insns[i]) {
			flush(i)
			start, name = i, insns[i].Symbol()
		}
	}
	flush(len(insns))
	if mainLen == len(insns) {
		return 0, true
	}

	memo := map[string]int{}
	known := true
	var depth func(string, int) int
	depth = func(sym string, level int) int {
		f := funcs[sym]
		if f == nil || level > 8 {
			// An unknown callee, or deeper than the kernel allows: let
			// the verifier judge.
			known = false
			return 0
		}
		if d, ok := memo[sym]; ok {
			return d
		}
		known = known && f.known
		deepest := 0
		for _, c := range f.callees {
			deepest = max(deepest, depth(c, level+1))
		}
		memo[sym] = f.frame + deepest
		return memo[sym]
	}
	deepest := 0
	for _, c := range mainCalls {
		deepest = max(deepest, depth(c, 1))
	}
	return deepest, known
}

func calledSymbols(insns asm.Instructions) []string {
	var out []string
	for _, ins := range insns {
		if ins.IsFunctionCall() && ins.Reference() != "" {
			out = append(out, ins.Reference())
		}
	}
	return out
}

// fixFuncMetadata keeps BTF function and line information only where the
// kernel accepts it: every function (the fused main one and every
// subprogram) must have function information if any has, and line
// information at its first instruction if any instruction has some.
// Members built without BTF next to members with it lose it all; missing
// line information at a function start is filled with a comment.
func fixFuncMetadata(insns asm.Instructions) asm.Instructions {
	called := map[string]bool{}
	for _, ins := range insns {
		if ins.IsFunctionReference() {
			called[ins.Reference()] = true
		}
	}
	starts := []int{0}
	for i := 1; i < len(insns); i++ {
		if btf.FuncMetadata(&insns[i]) != nil || called[insns[i].Symbol()] && insns[i].Symbol() != "" {
			starts = append(starts, i)
		}
	}
	allFunc, anySource := true, false
	for _, i := range starts {
		allFunc = allFunc && btf.FuncMetadata(&insns[i]) != nil
	}
	for i := range insns {
		if !allFunc {
			insns[i] = btf.WithFuncMetadata(insns[i], nil).WithSource(nil)
		}
		anySource = anySource || insns[i].Source() != nil
	}
	if anySource {
		for _, i := range starts {
			if insns[i].Source() == nil {
				insns[i] = insns[i].WithSource(asm.Comment("leaf fused chain"))
			}
		}
	}
	return insns
}

// countRunsIn is countRuns with the counter map and label given.
func countRunsIn(slot int16, runsMap, counted string) asm.Instructions {
	insns := countRuns(slot)
	for i, ins := range insns {
		switch {
		case ins.Reference() == RunsMap:
			insns[i] = ins.WithReference(runsMap)
		case ins.Reference() == countedSymbol:
			insns[i] = ins.WithReference(counted)
		}
		if insns[i].Symbol() == countedSymbol {
			insns[i] = insns[i].WithSymbol(counted)
		}
	}
	return insns
}

func runsMapSpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{Name: RunsMap, Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1}
}
