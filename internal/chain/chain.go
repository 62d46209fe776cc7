// Package chain prepares XDP and TC programs to run as members of a chain:
// linked by tail calls, or fused into one program.
//
// [Fuse] builds one program from the members' code, run straight through
// in order (each exit becomes a check of the verdict), with every member's
// subprograms, maps and global data kept its own. A chain of such members
// costs what one program doing the same steps costs.
//
// Tail-call chains support two kinds of member:
//
//   - Ordinary programs, compiled by anyone and unaware of chaining. [Rewrite]
//     changes their instructions at load time: the context pointer is saved
//     to a free stack slot at entry, every exit of the main function jumps to
//     an appended epilogue, and the epilogue tail-calls the next member
//     through a one-entry PROG_ARRAY ([NextMap]) when the verdict is one the
//     chain proceeds on.
//   - Cooperative programs following L3AF's contract: they declare a
//     PROG_ARRAY and tail-call its key 0 themselves. [Cooperative] checks the
//     contract; nothing is rewritten.
//
// The package only prepares specs. Loading, filling the PROG_ARRAYs and
// attaching are the caller's job. The kernel requires all programs stored in
// one PROG_ARRAY to be compatible (same program type, same JIT state, same
// XDP frags flag), so load every member the same way.
package chain

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// NextMap is the name of the PROG_ARRAY (1 entry, key 0) that Rewrite adds to the
// spec: the daemon stores the next member's program in it.
const NextMap = "leaf_chain_next"

// RunsMap is the name of the per-CPU array (1 entry, key 0, u64) that
// Rewrite adds when Options.CountRuns is set: the member's prologue counts
// each run in it. The kernel's own run statistics miss tail-called
// programs, so this is how the members after the first are counted.
const RunsMap = "leaf_chain_runs"

// epilogueSymbol labels the first instruction of the appended epilogue, and
// tailSymbol the tail call sequence inside it. Jumps reference them by name
// and cilium/ebpf resolves the offsets when the program is marshalled.
const (
	epilogueSymbol = "leaf_chain_epilogue"
	tailSymbol     = "leaf_chain_tail"
	countedSymbol  = "leaf_chain_counted"
)

// maxStack is the BPF stack size of one frame (MAX_BPF_STACK).
const maxStack = 512

// ErrCannotChain wraps every reason a program cannot be rewritten.
var ErrCannotChain = errors.New("program cannot be chained")

// Options control the epilogue Rewrite appends.
type Options struct {
	// ProceedOn lists the verdicts on which the next member runs.
	ProceedOn []int32
	// EndVerdict, if set, is returned instead of the program's verdict when the verdict
	// is a proceed-on verdict and no next member is set (the tail call fails). TC chains
	// use -1 (TC_ACT_UNSPEC = TCX_NEXT) so that TCX goes on to programs attached after
	// leaf's link. XDP leaves it nil (return the verdict).
	EndVerdict *int32
	// CountRuns adds RunsMap and a prologue that counts each run of the
	// program in it (a per-CPU increment: about a nanosecond).
	CountRuns bool
}

// Info describes how Rewrite changes (or would change) a program.
type Info struct {
	// Slot is the r10-relative offset of the 8-byte stack slot holding the
	// saved context pointer.
	Slot int16
	// StackKnown is false when the main function copies r10 into another
	// register in a way the analysis cannot follow, so its stack use is
	// not fully known. Slot is then chosen below every offset seen, and the
	// verifier rejects the program if the guess is wrong: the value reloaded
	// before the tail call would not be a context pointer.
	StackKnown bool
	// Exits is the number of exits of the main function turned into jumps.
	Exits int
	// MainLen is the number of instructions of the main function, before
	// the rewrite.
	MainLen int
}

func cannot(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCannotChain, fmt.Sprintf(format, args...))
}

// Inspect reports how Rewrite would change spec.Programs[function], or why
// it cannot, without changing anything.
func Inspect(spec *ebpf.CollectionSpec, function string) (Info, error) {
	prog, err := chainable(spec, function)
	if err != nil {
		return Info{}, err
	}
	return analyze(prog.Instructions)
}

// Rewrite changes spec.Programs[function] in place so that: at entry it saves the
// context pointer (r1) in a free 8-byte stack slot; every exit of the MAIN function
// (not exits of bpf-to-bpf subprograms) becomes a jump to an appended epilogue; the
// epilogue returns the verdict (r0) unless it is in ProceedOn, in which case it
// reloads ctx from the slot and bpf_tail_call(ctx, &NextMap, 0); if the tail call
// returns (empty slot) it returns the verdict (or EndVerdict). It adds NextMap to
// spec.Maps (type ProgramArray, key 4, value 4, max 1) and makes the program reference it.
//
// It fails with an error wrapping ErrCannotChain, saying why, when: the function is
// missing or is not an XDP or TC program; the program already calls
// bpf_tail_call (use the cooperative mode); it uses the legacy LD_ABS/LD_IND
// instructions (they can leave the program without passing through an exit);
// no free stack slot can be found; the collection already has a map named
// NextMap (rewrite one copy of the spec per chained program); the epilogue
// would be out of jump range.
//
// On error, spec is unchanged.
func Rewrite(spec *ebpf.CollectionSpec, function string, opts Options) error {
	prog, err := chainable(spec, function)
	if err != nil {
		return err
	}
	insns := prog.Instructions
	info, err := analyze(insns)
	if err != nil {
		return err
	}

	if opts.CountRuns {
		if _, ok := spec.Maps[RunsMap]; ok {
			return cannot("the collection already has a map named %s", RunsMap)
		}
		// The run counter's key needs 4 more bytes of stack below the slot.
		if int(info.Slot)-8 < -maxStack {
			return cannot("no free stack slot for the run counter's key")
		}
	}
	out, err := rewrite(insns, info, opts)
	if err != nil {
		return err
	}
	if err := checkJumps(out, info.MainLen+prologueLen(opts)+epilogueLen(opts), spec.ByteOrder); err != nil {
		return fmt.Errorf("%w: rewritten program is inconsistent: %v", ErrCannotChain, err)
	}

	prog.Instructions = out
	if spec.Maps == nil {
		spec.Maps = make(map[string]*ebpf.MapSpec)
	}
	spec.Maps[NextMap] = &ebpf.MapSpec{
		Name:       NextMap,
		Type:       ebpf.ProgramArray,
		KeySize:    4,
		ValueSize:  4,
		MaxEntries: 1,
	}
	if opts.CountRuns {
		spec.Maps[RunsMap] = runsMapSpec()
	}
	return nil
}

// chainable returns the program if it is a candidate for Rewrite.
func chainable(spec *ebpf.CollectionSpec, function string) (*ebpf.ProgramSpec, error) {
	prog := spec.Programs[function]
	if prog == nil {
		return nil, cannot("no program %q in the collection", function)
	}
	switch prog.Type {
	case ebpf.XDP, ebpf.SchedCLS, ebpf.SchedACT:
	default:
		return nil, cannot("program %q has type %s: only XDP and TC programs can be chained", function, prog.Type)
	}
	if len(prog.Instructions) == 0 {
		return nil, cannot("program %q has no instructions", function)
	}
	if _, ok := spec.Maps[NextMap]; ok {
		return nil, cannot("the collection already has a map named %s (already rewritten? rewrite one copy of the spec per chained program)", NextMap)
	}
	for i, ins := range prog.Instructions {
		switch {
		case ins.IsBuiltinCall() && ins.Constant == int64(asm.FnTailCall):
			return nil, cannot("program %q already calls bpf_tail_call (instruction %d): use the cooperative mode (declare its PROG_ARRAY as the chain map)", function, i)
		case ins.OpCode.Class() == asm.LdClass && (ins.OpCode.Mode() == asm.AbsMode || ins.OpCode.Mode() == asm.IndMode):
			return nil, cannot("program %q uses a legacy packet load (%v at instruction %d), which can end the program without passing through an exit", function, ins, i)
		case ins.Symbol() == epilogueSymbol || ins.Symbol() == tailSymbol:
			return nil, cannot("program %q already has a chain epilogue", function)
		case ins.Reference() == NextMap:
			return nil, cannot("program %q already references %s", function, NextMap)
		}
	}
	return prog, nil
}

// mainLen returns the number of instructions of the main function: cilium/ebpf
// appends the bpf-to-bpf subprograms a program calls after it, each starting
// with an instruction that carries the subprogram's symbol.
func mainLen(insns asm.Instructions) int {
	for i := 1; i < len(insns); i++ {
		if funcStart(insns[i]) {
			return i
		}
	}
	return len(insns)
}

// funcStart reports whether ins starts a function: it carries a symbol
// other than the epilogue's labels.
func funcStart(ins asm.Instruction) bool {
	sym := ins.Symbol()
	return sym != "" && sym != epilogueSymbol && sym != tailSymbol && sym != countedSymbol
}

// analyze finds the main function's exits and a free stack slot.
func analyze(insns asm.Instructions) (Info, error) {
	n := mainLen(insns)
	info := Info{MainLen: n}
	for _, ins := range insns[:n] {
		if ins.OpCode.JumpOp() == asm.Exit && ins.OpCode.Class().IsJump() {
			info.Exits++
		}
	}
	if info.Exits == 0 {
		return Info{}, cannot("main function has no exit")
	}
	var lowest int
	lowest, info.StackKnown = stackUse(insns[:n])

	// Objects on the stack lie at and above their lowest offset; the slot
	// goes in the next aligned 8 bytes below everything seen.
	slot := -((-lowest + 7) &^ 7) - 8
	if slot < -maxStack {
		return Info{}, cannot("no free stack slot: the main function uses %d of %d bytes of stack", -lowest, maxStack)
	}
	info.Slot = int16(slot)
	return info, nil
}

// stackUse returns the lowest r10-relative offset one function touches or
// takes the address of (other functions have frames of their own), and
// whether that is all it can touch: known is false when it copies r10 in
// a way the analysis cannot follow.
func stackUse(insns asm.Instructions) (lowest int, known bool) {
	known = true
	note := func(off int) {
		if off < lowest {
			lowest = off
		}
	}
	for i, ins := range insns {
		op := ins.OpCode
		switch cls := op.Class(); {
		case cls == asm.LdXClass:
			if ins.Src == asm.RFP {
				note(int(ins.Offset))
			}
		case cls == asm.StXClass || cls == asm.StClass:
			if ins.Dst == asm.RFP {
				note(int(ins.Offset))
			}
			if cls == asm.StXClass && ins.Src == asm.RFP {
				// The frame pointer itself is stored somewhere.
				known = false
			}
		case cls.IsALU():
			if ins.Src == asm.RFP && op.Source() == asm.RegSource {
				off, ok := frameAddress(insns, i)
				if ok {
					note(off)
				} else {
					known = false
				}
			}
		}
	}
	return lowest, known
}

// frameAddress recognises "rX = r10; ...; rX += imm" starting at insns[i] and
// returns imm. It follows rX forward in straight-line code until the next
// instruction that touches it.
func frameAddress(insns asm.Instructions, i int) (int, bool) {
	mov := insns[i]
	if mov.OpCode.ALUOp() != asm.Mov || mov.OpCode.Class() != asm.ALU64Class {
		return 0, false
	}
	reg := mov.Dst
	for j := i + 1; j < len(insns); j++ {
		ins := insns[j]
		if funcStart(ins) || ins.OpCode.Class().IsJump() {
			return 0, false
		}
		uses := ins.Dst == reg || (ins.Src == reg && !ins.OpCode.IsDWordLoad() && sourceIsReg(ins))
		if !uses {
			continue
		}
		if ins.OpCode == asm.Add.Op(asm.ImmSource) && ins.Dst == reg {
			return int(ins.Constant), true
		}
		return 0, false
	}
	return 0, false
}

// sourceIsReg reports whether ins reads its Src register.
func sourceIsReg(ins asm.Instruction) bool {
	switch cls := ins.OpCode.Class(); {
	case cls.IsALU() || cls.IsJump():
		return ins.OpCode.Source() == asm.RegSource
	case cls == asm.LdXClass || cls == asm.StXClass:
		return true
	}
	return false
}

// prologueLen is the number of instructions rewrite puts before the main
// function, ld_imm64 counting as one.
func prologueLen(opts Options) int {
	if opts.CountRuns {
		return len(countRuns(0)) + 1
	}
	return 1
}

// countRuns increments the per-CPU run counter: key 0 goes on the stack
// below the context slot, the lookup clobbers r0-r5, and r1 gets the
// context back from its slot before the original code starts.
func countRuns(slot int16) asm.Instructions {
	key := slot - 8
	return asm.Instructions{
		asm.StoreImm(asm.RFP, key, 0, asm.Word),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(key)),
		asm.LoadMapPtr(asm.R1, 0).WithReference(RunsMap),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, countedSymbol),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.RFP, slot, asm.DWord).WithSymbol(countedSymbol),
	}
}

// epilogueLen is the number of instructions rewrite appends after the main
// function, ld_imm64 counting as one.
func epilogueLen(opts Options) int {
	verdicts := dedup(opts.ProceedOn)
	if len(verdicts) == 0 {
		return 1
	}
	// compares, exit, save verdict, reload ctx, load map, key, call, set r0, exit
	return len(verdicts) + 8
}

func dedup(v []int32) []int32 {
	out := slices.Clone(v)
	slices.Sort(out)
	return slices.Compact(out)
}

// rewrite builds the new instruction stream:
//
//	prologue:  *(u64 *)(r10 + slot) = r1        (takes over the function's symbol and BTF func info)
//	main:      the original main function, each exit replaced by "goto epilogue"
//	epilogue:  if w0 == v1 goto tail            (one per proceed-on verdict)
//	           ...
//	           exit
//	tail:      r6 = r0
//	           r1 = *(u64 *)(r10 + slot)
//	           r2 = map[NextMap]
//	           r3 = 0
//	           call bpf_tail_call
//	           r0 = r6                           (or r0 = EndVerdict)
//	           exit
//	subprograms, unchanged
//
// Jumps inside the main function are relative and keep their targets: the
// prologue shifts all of them by one, and replacing an exit by a jump keeps
// every size. The epilogue sits between the main function and the
// subprograms, so the verifier counts it as part of the main function.
func rewrite(insns asm.Instructions, info Info, opts Options) (asm.Instructions, error) {
	n := info.MainLen
	verdicts := dedup(opts.ProceedOn)

	first := insns[0]
	prologue := asm.StoreMem(asm.RFP, info.Slot, asm.R1, asm.DWord).WithSymbol(first.Symbol())
	if src := first.Source(); src != nil {
		prologue = prologue.WithSource(src)
	}
	if fn := btf.FuncMetadata(&first); fn != nil {
		prologue = btf.WithFuncMetadata(prologue, fn)
	}
	first = first.WithSymbol("")
	first = btf.WithFuncMetadata(first, nil)

	out := make(asm.Instructions, 0, len(insns)+prologueLen(opts)+epilogueLen(opts))
	out = append(out, prologue)
	if opts.CountRuns {
		out = append(out, countRuns(info.Slot)...)
	}
	out = append(out, first)
	out = append(out, insns[1:n]...)

	// Raw offset of the epilogue, counted from the start of the new stream.
	var epilogueOff asm.RawInstructionOffset
	for _, ins := range out {
		epilogueOff += asm.RawInstructionOffset(ins.Size() / asm.InstructionSize)
	}
	var off asm.RawInstructionOffset
	for i := range out {
		ins := out[i]
		if ins.OpCode.Class().IsJump() && ins.OpCode.JumpOp() == asm.Exit {
			jump := asm.Ja.Label(epilogueSymbol)
			if dist := int64(epilogueOff) - int64(off) - 1; dist > 32767 {
				// Out of reach of a 16-bit offset: gotol (Linux 6.4).
				jump = asm.LongJump(epilogueSymbol)
			}
			out[i] = jump.WithMetadata(ins.Metadata).WithReference(epilogueSymbol)
		}
		off += asm.RawInstructionOffset(ins.Size() / asm.InstructionSize)
	}

	// Comments become BTF line info, which shows in "bpftool prog dump".
	// Only add them to programs that have line info: the kernel then wants
	// line info at the start of every function, and those have none.
	comment := func(ins asm.Instruction, c string) asm.Instruction {
		if insns[0].Source() == nil {
			return ins
		}
		return ins.WithSource(asm.Comment(c))
	}
	if len(verdicts) == 0 {
		out = append(out, comment(asm.Return().WithSymbol(epilogueSymbol), "leaf chain: no proceed-on verdicts"))
	} else {
		for i, v := range verdicts {
			cmp := asm.JEq.Imm32(asm.R0, v, tailSymbol)
			if i == 0 {
				cmp = comment(cmp.WithSymbol(epilogueSymbol), "leaf chain: proceed to the next member?")
			}
			out = append(out, cmp)
		}
		end := asm.Mov.Reg(asm.R0, asm.R6)
		if opts.EndVerdict != nil {
			// 64-bit move of the sign-extended value, like C's "return -1;".
			end = asm.Mov.Imm(asm.R0, *opts.EndVerdict)
		}
		out = append(out,
			asm.Return(),
			comment(asm.Mov.Reg(asm.R6, asm.R0).WithSymbol(tailSymbol), "leaf chain: tail call the next member"),
			asm.LoadMem(asm.R1, asm.RFP, info.Slot, asm.DWord),
			asm.LoadMapPtr(asm.R2, 0).WithReference(NextMap),
			asm.Mov.Imm(asm.R3, 0),
			asm.FnTailCall.Call(),
			end,
			asm.Return(),
		)
	}
	out = append(out, insns[n:]...)
	return out, nil
}

// checkJumps marshals a copy of insns, which resolves every symbolic jump and
// call, and checks that each jump of the first mainLen instructions (main
// function and epilogue) lands on an instruction inside them, that no exit
// remains before the epilogue, and that bpf-to-bpf calls land on a
// subprogram start.
func checkJumps(insns asm.Instructions, mainLen int, bo binary.ByteOrder) error {
	if bo == nil {
		bo = nativeEndian()
	}
	cpy := make(asm.Instructions, len(insns))
	copy(cpy, insns)
	var buf bytes.Buffer
	if err := cpy.Marshal(&buf, bo); err != nil {
		return err
	}
	decoded, err := asm.AppendInstructions(nil, &buf, bo, "linux")
	if err != nil {
		return err
	}
	if len(decoded) != len(insns) {
		return fmt.Errorf("%d instructions decode as %d", len(insns), len(decoded))
	}

	// Raw offsets of instruction starts, and of the end of the main part.
	starts := make(map[int64]int, len(decoded))
	var mainEnd int64
	iter := decoded.Iterate()
	for iter.Next() {
		starts[int64(iter.Offset)] = iter.Index
		if iter.Index == mainLen-1 {
			mainEnd = int64(iter.Offset) + int64(iter.Ins.Size()/asm.InstructionSize)
		}
	}
	subprogStart := func(raw int64) bool {
		i, ok := starts[raw]
		return ok && funcStart(insns[i])
	}

	iter = decoded.Iterate()
	for iter.Next() {
		if iter.Index >= mainLen {
			break
		}
		ins := iter.Ins
		op := ins.OpCode
		if !op.Class().IsJump() {
			continue
		}
		pc := int64(iter.Offset)
		switch jop := op.JumpOp(); {
		case jop == asm.Exit:
			if !inEpilogue(insns, iter.Index) {
				return fmt.Errorf("instruction %d: exit left in the main function", iter.Index)
			}
		case jop == asm.Call:
			if ins.Src == asm.PseudoCall && !subprogStart(pc+1+ins.Constant) {
				return fmt.Errorf("instruction %d: call to %d is not a subprogram start", iter.Index, pc+1+ins.Constant)
			}
		default:
			target := pc + 1 + int64(ins.Offset)
			if op.Class() == asm.Jump32Class && jop == asm.Ja {
				target = pc + 1 + ins.Constant
			}
			if _, ok := starts[target]; !ok || target < 0 || target >= mainEnd {
				return fmt.Errorf("instruction %d (%v): target %d outside the main function [0, %d) or inside an instruction", iter.Index, *ins, target, mainEnd)
			}
		}
	}
	return nil
}

// nativeEndian returns binary.LittleEndian or binary.BigEndian, the values
// cilium/ebpf's marshalling accepts.
func nativeEndian() binary.ByteOrder {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], 1)
	if b[0] == 1 {
		return binary.LittleEndian
	}
	return binary.BigEndian
}

// inEpilogue reports whether insns[i] belongs to the epilogue: it follows
// the epilogue symbol in the same function.
func inEpilogue(insns asm.Instructions, i int) bool {
	for j := i; j >= 0; j-- {
		switch insns[j].Symbol() {
		case epilogueSymbol, tailSymbol:
			return true
		case "":
			continue
		default:
			return false
		}
	}
	return false
}

// Cooperative checks L3AF's cooperative contract: the program references a map named
// mapName of type ProgramArray and calls bpf_tail_call; the daemon fills key 0 of that
// map with the next member. Returns an error saying what is missing otherwise.
func Cooperative(spec *ebpf.CollectionSpec, function, mapName string) error {
	prog := spec.Programs[function]
	if prog == nil {
		return fmt.Errorf("cooperative chaining: no program %q in the collection", function)
	}
	m := spec.Maps[mapName]
	switch {
	case m == nil:
		return fmt.Errorf("cooperative chaining: program %q: the collection has no map named %q", function, mapName)
	case m.Type != ebpf.ProgramArray:
		return fmt.Errorf("cooperative chaining: program %q: map %q is a %s, not a ProgramArray", function, mapName, m.Type)
	case m.MaxEntries < 1:
		return fmt.Errorf("cooperative chaining: program %q: map %q has no entries", function, mapName)
	}
	var refs, calls bool
	for _, ins := range prog.Instructions {
		if ins.IsLoadFromMap() && ins.Reference() == mapName {
			refs = true
		}
		if ins.IsBuiltinCall() && ins.Constant == int64(asm.FnTailCall) {
			calls = true
		}
	}
	switch {
	case !refs && !calls:
		return fmt.Errorf("cooperative chaining: program %q neither references map %q nor calls bpf_tail_call", function, mapName)
	case !refs:
		return fmt.Errorf("cooperative chaining: program %q does not reference map %q", function, mapName)
	case !calls:
		return fmt.Errorf("cooperative chaining: program %q does not call bpf_tail_call", function)
	}
	return nil
}
