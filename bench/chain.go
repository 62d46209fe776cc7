package bench

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/leaf-ebpf/leaf/internal/chain"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/manifest"
)

// The chain cost benchmark: the cost per packet of an XDP chain of N
// members, measured with BPF_PROG_TEST_RUN on a 64-byte frame, against
// the same N steps done by one program and against a chain built the way
// l3afd builds it. The programs are in bpf/chainbench.bpf.c.

//go:embed bpf/chainbench.bpf.o
var chainObject []byte

// ChainObject returns the compiled chain benchmark programs
// (bench/bpf/chainbench.bpf.o).
func ChainObject() []byte { return bytes.Clone(chainObject) }

// ChainSizes are the chain lengths the benchmark reports.
var ChainSizes = []int{1, 2, 5, 10}

// ChainStepProgram is the trivial program every chain repeats, and
// ChainSlotConst the load-time constant choosing its counter slot.
const (
	ChainStepProgram = "xdp_step"
	ChainSlotConst   = "slot"
)

const (
	xdpPass = 2
	// stepsMap is the per-CPU array each step counts into, and maxSteps its
	// size.
	stepsMap = "steps"
	maxSteps = 16
)

// ChainKind is one way of running N steps on a packet.
type ChainKind int

const (
	// Leaf is leaf's tail-call chain: N copies of the unmodified step
	// program, each rewritten by chain.Rewrite with its own
	// leaf_chain_next map, member i wired to member i+1.
	Leaf ChainKind = iota
	// Fused is leaf's fused chain: one program chain.Fuse builds from N
	// copies of the unmodified step program, each with its own global
	// data (its slot constant).
	Fused
	// Single is one program doing the N steps inline.
	Single
	// L3afd is a root program tail-calling the first of N cooperative
	// members, each doing its step and tail-calling key 0 of its own
	// PROG_ARRAY, which holds the next member.
	L3afd
	// Leafd is leaf's chain applied through a real leafd: the program of
	// the hook's link. Only when the caller adds it (ChainBench.AddLeafd).
	Leafd
	numKinds
)

func (k ChainKind) String() string {
	switch k {
	case Leaf:
		return "leaf tail calls"
	case Fused:
		return "leaf fused"
	case Single:
		return "single program"
	case L3afd:
		return "l3afd-style"
	case Leafd:
		return "leafd's chain"
	}
	return fmt.Sprintf("ChainKind(%d)", int(k))
}

// ChainBench holds the loaded programs of every configuration: for each
// kind and size the program a packet enters, and the empty program that
// measures the harness floor.
type ChainBench struct {
	Sizes []int
	Empty *ebpf.Program
	entry [numKinds]map[int]*ebpf.Program

	spec    *ebpf.CollectionSpec
	closers []interface{ Close() error }
}

// LoadChainBench loads every configuration for the given chain sizes (at
// most 16) and checks each once: one run must return XDP_PASS and count
// exactly one packet in each of its N steps' slots. It needs root.
func LoadChainBench(sizes []int) (_ *ChainBench, err error) {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(chainObject))
	if err != nil {
		return nil, fmt.Errorf("chainbench.bpf.o: %w", err)
	}
	c := &ChainBench{Sizes: slices.Clone(sizes), spec: spec}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	for k := range c.entry[:Leafd] {
		c.entry[k] = map[int]*ebpf.Program{}
	}
	if c.Empty, _, err = c.load("xdp_empty", 0, nil); err != nil {
		return nil, err
	}
	for _, n := range sizes {
		if n < 1 || n > maxSteps {
			return nil, fmt.Errorf("chain size %d: want 1 to %d", n, maxSteps)
		}
		for _, k := range []ChainKind{Leaf, Fused, Single, L3afd} {
			steps, err := c.newSteps()
			if err != nil {
				return nil, err
			}
			var p *ebpf.Program
			switch k {
			case Leaf:
				p, err = c.leafChain(n, steps)
			case Fused:
				p, err = c.fusedChain(n, steps)
			case Single:
				p, _, err = c.load(fmt.Sprintf("xdp_single_%d", n), 0, steps)
			case L3afd:
				p, err = c.l3afdChain(n, steps)
			}
			if err != nil {
				return nil, fmt.Errorf("%s of %d: %w", k, n, err)
			}
			if err := checkSteps(p, steps, n); err != nil {
				return nil, fmt.Errorf("%s of %d: %w", k, n, err)
			}
			c.entry[k][n] = p
		}
	}
	return c, nil
}

// Close releases every program and map.
func (c *ChainBench) Close() error {
	var errs []error
	for i := len(c.closers) - 1; i >= 0; i-- {
		errs = append(errs, c.closers[i].Close())
	}
	c.closers = nil
	return errors.Join(errs...)
}

// Entry returns the program a packet enters for kind k and size n, or nil.
func (c *ChainBench) Entry(k ChainKind, n int) *ebpf.Program {
	if k < 0 || k >= numKinds {
		return nil
	}
	return c.entry[k][n]
}

// AddLeafd registers the entry programs of chains leafd applied (by size)
// as the Leafd kind. The caller keeps ownership of the programs.
func (c *ChainBench) AddLeafd(entries map[int]*ebpf.Program) {
	c.entry[Leafd] = entries
}

func (c *ChainBench) newSteps() (*ebpf.Map, error) {
	m, err := ebpf.NewMap(c.spec.Maps[stepsMap].Copy())
	if err != nil {
		return nil, fmt.Errorf("create %s map: %w", stepsMap, err)
	}
	c.closers = append(c.closers, m)
	return m, nil
}

// load loads one program of the object, alone, with its slot constant set
// and its steps map replaced by steps (if not nil). It returns the program
// and the maps created for it by name. Only the maps the program uses are
// created.
func (c *ChainBench) load(fn string, slot uint32, steps *ebpf.Map, rewrite ...func(*ebpf.CollectionSpec) error) (*ebpf.Program, map[string]*ebpf.Map, error) {
	spec := c.spec.Copy()
	ps := spec.Programs[fn]
	if ps == nil {
		return nil, nil, fmt.Errorf("no program %s in chainbench.bpf.o", fn)
	}
	spec.Programs = map[string]*ebpf.ProgramSpec{fn: ps}
	if err := spec.Variables[ChainSlotConst].Set(slot); err != nil {
		return nil, nil, err
	}
	for _, f := range rewrite {
		if err := f(spec); err != nil {
			return nil, nil, err
		}
	}
	used := map[string]bool{}
	for _, ins := range ps.Instructions {
		if ins.IsLoadFromMap() {
			used[ins.Reference()] = true
		}
	}
	for name := range spec.Maps {
		if !used[name] {
			delete(spec.Maps, name)
		}
	}
	for name, v := range spec.Variables {
		if !used[v.SectionName] {
			delete(spec.Variables, name)
		}
	}
	opts := ebpf.CollectionOptions{}
	if steps != nil && used[stepsMap] {
		opts.MapReplacements = map[string]*ebpf.Map{stepsMap: steps}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", fn, err)
	}
	p := coll.Programs[fn]
	c.closers = append(c.closers, p)
	maps := map[string]*ebpf.Map{}
	for name, m := range coll.Maps {
		if name == stepsMap && steps != nil {
			m.Close()
			continue
		}
		maps[name] = m
		c.closers = append(c.closers, m)
	}
	return p, maps, nil
}

// leafChain loads n copies of the unmodified step program the way leafd
// loads chain members (internal/applier: one copy of the spec each,
// rewritten by chain.Rewrite with the hook's default proceed-on verdicts,
// each with its own leaf_chain_next map) and wires member i to i+1. It
// returns the first member.
func (c *ChainBench) leafChain(n int, steps *ebpf.Map) (*ebpf.Program, error) {
	opts := chain.Options{ProceedOn: desired.DefaultProceedOn(manifest.HookXDP)}
	rewrite := func(spec *ebpf.CollectionSpec) error { return chain.Rewrite(spec, ChainStepProgram, opts) }
	progs := make([]*ebpf.Program, n)
	nexts := make([]*ebpf.Map, n)
	for i := range n {
		p, maps, err := c.load(ChainStepProgram, uint32(i), steps, rewrite)
		if err != nil {
			return nil, err
		}
		progs[i], nexts[i] = p, maps[chain.NextMap]
		if nexts[i] == nil {
			return nil, fmt.Errorf("member %d has no %s map", i, chain.NextMap)
		}
	}
	for i := 0; i+1 < n; i++ {
		if err := nexts[i].Put(uint32(0), progs[i+1]); err != nil {
			return nil, fmt.Errorf("wire member %d to %d: %w", i, i+1, err)
		}
	}
	return progs[0], nil
}

// fusedChain loads n copies of the unmodified step program fused into
// one program, the way leafd loads a fused chain (internal/applier: one
// copy of the spec per member, chain.Fuse, every member's steps map the
// shared one). It returns the program.
func (c *ChainBench) fusedChain(n int, steps *ebpf.Map) (*ebpf.Program, error) {
	spec, err := fusedChainSpec(c.spec, n)
	if err != nil {
		return nil, err
	}
	replacements := map[string]*ebpf.Map{}
	for i := range n {
		replacements[chain.MemberMap(i, stepsMap)] = steps
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: replacements})
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	p := coll.Programs[chain.FusedProgram]
	delete(coll.Programs, chain.FusedProgram)
	coll.Close()
	c.closers = append(c.closers, p)
	return p, nil
}

// fusedChainSpec is the fused chain of n copies of the step program of
// spec (chainbench.bpf.o), member i counting in slot i mod 16, with only
// the maps the step uses.
func fusedChainSpec(spec *ebpf.CollectionSpec, n int) (*ebpf.CollectionSpec, error) {
	members := make([]chain.Member, n)
	for i := range n {
		ms := &ebpf.CollectionSpec{
			Maps:      map[string]*ebpf.MapSpec{stepsMap: spec.Maps[stepsMap].Copy(), ".rodata": spec.Maps[".rodata"].Copy()},
			Variables: map[string]*ebpf.VariableSpec{ChainSlotConst: spec.Variables[ChainSlotConst].Copy()},
			Programs:  map[string]*ebpf.ProgramSpec{ChainStepProgram: spec.Programs[ChainStepProgram].Copy()},
			Types:     spec.Types,
			ByteOrder: spec.ByteOrder,
		}
		if err := ms.Variables[ChainSlotConst].Set(uint32(i % maxSteps)); err != nil {
			return nil, err
		}
		members[i] = chain.Member{Spec: ms, Function: ChainStepProgram, ProceedOn: desired.DefaultProceedOn(manifest.HookXDP)}
	}
	return chain.Fuse(members, chain.FuseOptions{})
}

// FusedLoad is what loading a fused chain of N members costs.
type FusedLoad struct {
	N int
	// Insns is the fused program's length; Verified the instructions the
	// verifier processed (0 if the kernel does not say).
	Insns, Verified int
	// Median is the median time of chain.Fuse plus loading (map creation
	// and verification), over the runs.
	Median time.Duration
}

// MeasureFusedLoads builds and loads fused chains of each size rounds
// times and reports the median time of each.
func MeasureFusedLoads(sizes []int, rounds int) ([]FusedLoad, error) {
	base, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(chainObject))
	if err != nil {
		return nil, err
	}
	var out []FusedLoad
	for _, n := range sizes {
		fl := FusedLoad{N: n}
		var times []float64
		for range rounds {
			t0 := time.Now()
			spec, err := fusedChainSpec(base, n)
			if err != nil {
				return nil, fmt.Errorf("fuse %d: %w", n, err)
			}
			coll, err := ebpf.NewCollection(spec)
			if err != nil {
				return nil, fmt.Errorf("load the fused chain of %d: %w", n, err)
			}
			times = append(times, float64(time.Since(t0)))
			fl.Insns = len(spec.Programs[chain.FusedProgram].Instructions)
			if info, err := coll.Programs[chain.FusedProgram].Info(); err == nil {
				if v, ok := info.VerifiedInstructions(); ok {
					fl.Verified = int(v)
				}
			}
			coll.Close()
		}
		fl.Median = time.Duration(Median(times))
		out = append(out, fl)
	}
	return out, nil
}

// l3afdChain builds the chain the way l3afd does: a root program whose
// PROG_ARRAY holds the first member, and n cooperative members, each
// tail-calling key 0 of its own PROG_ARRAY, filled with the next member.
// It returns the root.
func (c *ChainBench) l3afdChain(n int, steps *ebpf.Map) (*ebpf.Program, error) {
	root, rootMaps, err := c.load("xdp_root", 0, nil)
	if err != nil {
		return nil, err
	}
	progs := make([]*ebpf.Program, n)
	nexts := make([]*ebpf.Map, n)
	for i := range n {
		p, maps, err := c.load("xdp_coop_step", uint32(i), steps)
		if err != nil {
			return nil, err
		}
		progs[i], nexts[i] = p, maps["coop_next"]
	}
	if err := rootMaps["root_next"].Put(uint32(0), progs[0]); err != nil {
		return nil, fmt.Errorf("wire the root to member 0: %w", err)
	}
	for i := 0; i+1 < n; i++ {
		if err := nexts[i].Put(uint32(0), progs[i+1]); err != nil {
			return nil, fmt.Errorf("wire member %d to %d: %w", i, i+1, err)
		}
	}
	return root, nil
}

// checkSteps runs p once and checks that it returned XDP_PASS and counted
// one packet in each of the slots 0..n-1 of steps and none elsewhere.
func checkSteps(p *ebpf.Program, steps *ebpf.Map, n int) error {
	before, err := stepCounts(steps)
	if err != nil {
		return err
	}
	ret, err := p.Run(&ebpf.RunOptions{Data: Frame()})
	if err != nil {
		return err
	}
	if ret != xdpPass {
		return fmt.Errorf("verdict %d, want XDP_PASS", ret)
	}
	after, err := stepCounts(steps)
	if err != nil {
		return err
	}
	for i := range after {
		want := uint64(0)
		if i < n {
			want = 1
		}
		if got := after[i] - before[i]; got != want {
			return fmt.Errorf("step slot %d counted %d packets, want %d", i, got, want)
		}
	}
	return nil
}

// stepCounts returns each slot's count summed over the CPUs.
func stepCounts(m *ebpf.Map) ([]uint64, error) {
	out := make([]uint64, maxSteps)
	for i := range out {
		var per []uint64
		if err := m.Lookup(uint32(i), &per); err != nil {
			return nil, fmt.Errorf("read %s slot %d: %w", stepsMap, i, err)
		}
		for _, v := range per {
			out[i] += v
		}
	}
	return out, nil
}

// Frame is the test packet: a 64-byte Ethernet frame (broadcast, IPv4
// ethertype, zero payload).
func Frame() []byte {
	b := make([]byte, 64)
	copy(b, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x00})
	return b
}

// ChainSample is one timed run of repeat packets.
type ChainSample struct {
	// CPU is the calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID)
	// spent in the BPF_PROG_TEST_RUN call, in ns per packet. It leaves out
	// time the thread spent off the CPU, as the kernel's own timer does,
	// and is not rounded.
	CPU float64
	// Kernel is what the kernel reports: its timer over the run loop
	// (time spent rescheduled left out) divided by repeat, rounded down to
	// a whole nanosecond.
	Kernel time.Duration
}

// ChainResult is the median cost per packet of every configuration.
type ChainResult struct {
	Sizes []int
	// Floor is the empty program: the harness's own cost per packet.
	Floor float64
	// NS[k][n] is the median ns per packet (thread CPU time) of kind k
	// with n steps; KernelNS[k][n] the median of the kernel's figures.
	NS, KernelNS [numKinds]map[int]float64
	// KernelFloor is the median of the kernel's figures for the empty
	// program.
	KernelFloor float64
	// Samples[k][n] are the individual runs, in run order.
	Samples [numKinds]map[int][]ChainSample
	// FloorSamples are the empty program's runs.
	FloorSamples []ChainSample
	// Rounds and Repeat are the runs per configuration and the packets per
	// run; Retried counts runs redone because a signal interrupted them.
	Rounds, Repeat, Retried int
}

// Measure runs every configuration rounds times, repeat packets each
// (BPF_PROG_TEST_RUN, 64-byte frame), interleaved: each round runs every
// configuration once, in a shuffled order, so that load from elsewhere on
// the machine spreads over all of them. Each run is timed twice, by the
// thread's CPU time and by the kernel (see ChainSample); the results are
// the medians of the rounds. progress, if not nil, is called after each
// run.
func (c *ChainBench) Measure(rounds, repeat int, progress func(what string, s ChainSample)) (*ChainResult, error) {
	type config struct {
		k ChainKind
		n int
		p *ebpf.Program
	}
	var configs []config
	configs = append(configs, config{k: -1, p: c.Empty})
	for k := range numKinds {
		for _, n := range c.Sizes {
			if p := c.entry[k][n]; p != nil {
				configs = append(configs, config{k, n, p})
			}
		}
	}
	res := &ChainResult{Sizes: c.Sizes, Rounds: rounds, Repeat: repeat}
	for k := range numKinds {
		res.NS[k], res.KernelNS[k], res.Samples[k] = map[int]float64{}, map[int]float64{}, map[int][]ChainSample{}
	}
	data := Frame()
	// test_run runs on the calling thread's CPU, and the CPU time read is
	// this thread's: keep it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	run := func(cf config) (ChainSample, error) {
		for {
			interrupted := false
			t0, err := threadCPU()
			if err != nil {
				return ChainSample{}, err
			}
			ret, d, err := cf.p.Benchmark(data, repeat, func() { interrupted = true })
			t1, err2 := threadCPU()
			if err = errors.Join(err, err2); err != nil {
				return ChainSample{}, err
			}
			if ret != xdpPass {
				return ChainSample{}, fmt.Errorf("%s of %d: verdict %d, want XDP_PASS", cf.k, cf.n, ret)
			}
			if interrupted {
				// The CPU time includes the interrupted attempt.
				res.Retried++
				continue
			}
			return ChainSample{CPU: float64(t1-t0) / float64(repeat), Kernel: d}, nil
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	order := make([]int, len(configs))
	for i := range order {
		order[i] = i
	}
	for range rounds {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order {
			cf := configs[i]
			s, err := run(cf)
			if err != nil {
				return nil, err
			}
			what := "empty program"
			if cf.k < 0 {
				res.FloorSamples = append(res.FloorSamples, s)
			} else {
				res.Samples[cf.k][cf.n] = append(res.Samples[cf.k][cf.n], s)
				what = fmt.Sprintf("%s of %d", cf.k, cf.n)
			}
			if progress != nil {
				progress(what, s)
			}
		}
	}
	res.Floor, res.KernelFloor = medians(res.FloorSamples)
	for k := range numKinds {
		for n, s := range res.Samples[k] {
			res.NS[k][n], res.KernelNS[k][n] = medians(s)
		}
	}
	return res, nil
}

// threadCPU returns the calling thread's CPU time in ns.
func threadCPU() (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, fmt.Errorf("clock_gettime(CLOCK_THREAD_CPUTIME_ID): %w", err)
	}
	return ts.Nano(), nil
}

func medians(s []ChainSample) (cpu, kernel float64) {
	var c, k []float64
	for _, x := range s {
		c = append(c, x.CPU)
		k = append(k, float64(x.Kernel.Nanoseconds()))
	}
	return Median(c), Median(k)
}

// Has reports whether kind k was measured.
func (r *ChainResult) Has(k ChainKind) bool { return len(r.NS[k]) > 0 }

// PerHop is what one more member costs in a chain of kind k:
// (t(n) - t(1)) / (n - 1). ok is false for n = 1 or a missing size.
func (r *ChainResult) PerHop(k ChainKind, n int) (float64, bool) {
	one, ok1 := r.NS[k][1]
	tn, okn := r.NS[k][n]
	if n < 2 || !ok1 || !okn {
		return 0, false
	}
	return (tn - one) / float64(n-1), true
}

// Ratio is t(kind a, n) / t(kind b, n); with net, the floor is taken off
// both first.
func (r *ChainResult) Ratio(a, b ChainKind, n int, net bool) (float64, bool) {
	ta, oka := r.NS[a][n]
	tb, okb := r.NS[b][n]
	if !oka || !okb {
		return 0, false
	}
	if net {
		ta, tb = ta-r.Floor, tb-r.Floor
	}
	if tb <= 0 {
		return 0, false
	}
	return ta / tb, true
}

// median of v; the mean of the middle two for an even count.
// Median is the median of v (the mean of the middle two for an even
// count), 0 for none.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
