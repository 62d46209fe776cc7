package bench

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/internal/netnsutil"
	"github.com/leaf-ebpf/leaf/internal/testenv"
	"github.com/leaf-ebpf/leaf/packages"
)

// attachKind is one way of attaching a program to an interface, with the
// object and program it attaches.
type attachKind struct {
	name, object, program string
	// netns spreads the 50 interfaces over this many sandboxes (network
	// namespace pairs) instead of one.
	netns  int
	attach Attacher
}

var attachKinds = []attachKind{
	{name: "xdp-native", object: "portfilter/portfilter.bpf.o", program: "xdp_port_filter", netns: 1, attach: XDPNative},
	{name: "xdp-generic", object: "portfilter/portfilter.bpf.o", program: "xdp_port_filter", netns: 1, attach: xdpGeneric},
	{name: "xdp-native-8netns", object: "portfilter/portfilter.bpf.o", program: "xdp_port_filter", netns: 8, attach: XDPNative},
	{name: "tcx", object: "pktcount/pktcount.bpf.o", program: "count_tc", netns: 1, attach: TCXIngress},
}

func xdpGeneric(prog *ebpf.Program, ifindex int) (link.Link, error) {
	return link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPGenericMode})
}

// attachTarget is one interface of the 50: its namespace and index.
type attachTarget struct {
	netns   string
	ifindex int
}

// BenchmarkLoadAttach50 splits the reference apply (50 programs, each with
// its own maps, loaded and attached on 50 veths) into its two halves, and
// attaches with 1, 2, 4 and 8 threads at once: what running attaches in
// parallel could win, per hook kind (XDP native, XDP generic, XDP native
// with the veths spread over 8 network namespaces, TCX ingress). Metrics,
// per run of 50:
//
//	load-ms        ebpf.NewCollection of the 50, one after another
//	attach-ms      attaching the 50 (wall time)
//	attach-cpu-ms  the attaching threads' CPU time
//
// Run: go test -run '^$' -bench LoadAttach50 -benchtime 3x ./bench/
func BenchmarkLoadAttach50(b *testing.B) {
	testenv.RequireKernel(b)
	for _, kind := range attachKinds {
		b.Run("hook="+kind.name, func(b *testing.B) {
			targets := attachTargets(b, kind.netns, 50)
			obj, err := packages.FS.ReadFile(kind.object)
			if err != nil {
				b.Fatal(err)
			}
			spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
			if err != nil {
				b.Fatal(err)
			}
			noDataMappings(spec)
			for _, workers := range []int{1, 2, 4, 8} {
				b.Run(fmt.Sprintf("threads=%d", workers), func(b *testing.B) {
					var load, attach, cpu time.Duration
					for range b.N {
						l, a, c := loadAttach(b, spec, kind, targets, workers)
						load, attach, cpu = load+l, attach+a, cpu+c
					}
					n := float64(b.N) * 1e6
					b.ReportMetric(float64(load)/n, "load-ms")
					b.ReportMetric(float64(attach)/n, "attach-ms")
					b.ReportMetric(float64(cpu)/n, "attach-cpu-ms")
				})
			}
		})
	}
}

// attachTargets makes n veths spread over sandboxes sandboxes.
func attachTargets(b *testing.B, sandboxes, n int) []attachTarget {
	var targets []attachTarget
	for i := range sandboxes {
		per := n / sandboxes
		if i < n%sandboxes {
			per++
		}
		s := sandbox(b, per)
		path := filepath.Join("/var/run/netns", s.NsB)
		for _, ifc := range s.Ifaces {
			idx, err := netnsutil.Ifindex(path, ifc)
			if err != nil {
				b.Fatal(err)
			}
			targets = append(targets, attachTarget{path, idx})
		}
	}
	// Interleave the namespaces, so that threads working on neighbouring
	// targets work in different ones.
	out := make([]attachTarget, 0, len(targets))
	for i := range n / sandboxes {
		for j := range sandboxes {
			if k := j*(n/sandboxes) + i + min(j, n%sandboxes); k < len(targets) {
				out = append(out, targets[k])
			}
		}
	}
	for len(out) < len(targets) {
		for _, t := range targets {
			if !containsTarget(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

func containsTarget(ts []attachTarget, t attachTarget) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// loadAttach loads one collection per target, one after another, then
// attaches them with workers threads, and detaches and closes everything.
func loadAttach(b *testing.B, spec *ebpf.CollectionSpec, kind attachKind, targets []attachTarget, workers int) (load, attach, cpu time.Duration) {
	t0 := time.Now()
	colls := make([]*ebpf.Collection, len(targets))
	defer func() {
		for _, c := range colls {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range colls {
		var err error
		if colls[i], err = ebpf.NewCollection(spec); err != nil {
			b.Fatal(err)
		}
	}
	load = time.Since(t0)
	links := make([]link.Link, len(targets))
	t0 = time.Now()
	cpu, err := onThreads(workers, len(targets), func(i int) (time.Duration, error) {
		var cpu time.Duration
		err := netnsutil.Do(targets[i].netns, func() error {
			c0, _ := threadCPU()
			defer func() { c1, _ := threadCPU(); cpu = time.Duration(c1 - c0) }()
			var err error
			links[i], err = kind.attach(colls[i].Programs[kind.program], targets[i].ifindex)
			return err
		})
		return cpu, err
	})
	attach = time.Since(t0)
	for _, l := range links {
		if l != nil {
			l.Close()
		}
	}
	if err != nil {
		b.Fatal(err)
	}
	return load, attach, cpu
}

// loadKind is one kind of kernel object loaded 50 times.
type loadKind struct {
	name string
	load func() (io.Closer, error)
}

var loadKinds = []loadKind{
	// A long program: the verifier walks each of its 100 000
	// instructions once (no branches to explore) and the JIT compiles
	// them.
	{name: "verifier-100k-insns", load: func() (io.Closer, error) {
		insns := make(asm.Instructions, 0, 100_002)
		insns = append(insns, asm.Mov.Imm(asm.R0, 0))
		for range 100_000 {
			insns = append(insns, asm.Add.Imm(asm.R0, 1))
		}
		insns = append(insns, asm.Mov.Imm(asm.R0, 2), asm.Return())
		return ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL", Instructions: insns})
	}},
	// bench/bpf/verifyheavy.bpf.o: a loop the verifier walks 50 000
	// times, each time remembering the state at the loop's branch.
	{name: "verifyheavy", load: func() (io.Closer, error) {
		spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(VerifyHeavyObject))
		if err != nil {
			return nil, err
		}
		c, err := ebpf.NewCollection(spec)
		if err != nil {
			return nil, err
		}
		return collCloser{c}, nil
	}},
	// The firewall's per-rule hit counters: a per-CPU array of 262 144
	// entries, which the kernel allocates one per-CPU slot at a time.
	{name: "percpu-array-262144", load: func() (io.Closer, error) {
		return ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 262144})
	}},
	// An array of the same size and 76-byte values (the firewall's rules).
	{name: "array-262144x76", load: func() (io.Closer, error) {
		return ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 76, MaxEntries: 262144})
	}},
}

// BenchmarkLoad20 loads 20 objects of each kind with 1 and 2 threads at
// once: whether the kernel lets loads overlap on our 2 CPUs (the verifier
// and the JIT do; allocating a per-CPU map's slots takes one global mutex
// per slot and does not). Metrics, per run of 20:
//
//	load-ms      wall time
//	load-cpu-ms  the loading threads' CPU time
//
// Run: go test -run '^$' -bench Load20 -benchtime 3x ./bench/
func BenchmarkLoad20(b *testing.B) {
	testenv.RequireKernel(b)
	for _, kind := range loadKinds {
		for _, workers := range []int{1, 2} {
			b.Run(fmt.Sprintf("kind=%s/threads=%d", kind.name, workers), func(b *testing.B) {
				var wall, cpu time.Duration
				for range b.N {
					w, c := loadN(b, kind, 20, workers)
					wall, cpu = wall+w, cpu+c
				}
				n := float64(b.N) * 1e6
				b.ReportMetric(float64(wall)/n, "load-ms")
				b.ReportMetric(float64(cpu)/n, "load-cpu-ms")
			})
		}
	}
}

// loadN loads n objects of kind on workers threads and closes them.
func loadN(b *testing.B, kind loadKind, n, workers int) (wall, cpu time.Duration) {
	objs := make([]io.Closer, n)
	t0 := time.Now()
	cpu, err := onThreads(workers, n, func(i int) (time.Duration, error) {
		c0, _ := threadCPU()
		var err error
		objs[i], err = kind.load()
		c1, _ := threadCPU()
		return time.Duration(c1 - c0), err
	})
	wall = time.Since(t0)
	for _, o := range objs {
		if o != nil {
			o.Close()
		}
	}
	if err != nil {
		b.Fatal(err)
	}
	return wall, cpu
}

// onThreads runs fn(0) … fn(n-1) on workers goroutines, each locked to
// its OS thread, and returns the sum of the CPU times fn reports and one
// of its errors.
func onThreads(workers, n int, fn func(i int) (time.Duration, error)) (time.Duration, error) {
	var cpuNS atomic.Int64
	var failed atomic.Value
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				cpu, err := fn(i)
				cpuNS.Add(int64(cpu))
				if err != nil {
					failed.Store(err)
				}
			}
		}()
	}
	wg.Wait()
	err, _ := failed.Load().(error)
	return time.Duration(cpuNS.Load()), err
}

type collCloser struct{ c *ebpf.Collection }

func (c collCloser) Close() error { c.c.Close(); return nil }
