package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// TestChainBench loads every chain configuration (which checks that each
// runs all its steps once and passes the packet) and measures them
// briefly: it keeps the benchmark working without taking time.
func TestChainBench(t *testing.T) {
	testenv.RequireKernel(t)
	c, err := LoadChainBench(ChainSizes)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Measure(3, 1000, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []ChainKind{Leaf, Fused, Single, L3afd} {
		for _, n := range ChainSizes {
			if len(res.Samples[k][n]) != 3 {
				t.Errorf("%s of %d: %d samples, want 3", k, n, len(res.Samples[k][n]))
			}
		}
	}
	if res.Has(Leafd) {
		t.Error("leafd chains measured without being added")
	}
	if _, ok := res.PerHop(Leaf, 1); ok {
		t.Error("per-hop cost of a chain of 1")
	}
	if _, ok := res.PerHop(Leaf, 10); !ok {
		t.Error("no per-hop cost of a chain of 10")
	}
}

// TestMeasureFusedLoads builds and loads the largest fused chain (32
// members, the tail-call limit) and a small one.
func TestMeasureFusedLoads(t *testing.T) {
	testenv.RequireKernel(t)
	loads, err := MeasureFusedLoads([]int{2, 32}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(loads) != 2 || loads[1].N != 32 || loads[1].Insns <= loads[0].Insns || loads[1].Median <= 0 {
		t.Fatalf("loads %+v", loads)
	}
}

var (
	chainOnce  sync.Once
	chainBench *ChainBench
	chainErr   error
)

// BenchmarkChainCost reports the cost per packet (BPF_PROG_TEST_RUN,
// 64-byte frame, b.N packets per run) of a leaf chain of N trivial
// members, of one program doing the same N steps, of an l3afd-style chain
// of N, and of an empty program (the harness floor), interleaved over 5
// rounds; each metric is the median. ns/op is the leaf chain's ns/pkt.
//
//	go test -run '^$' -bench ChainCost -benchtime 1000000x ./bench/
func BenchmarkChainCost(b *testing.B) {
	testenv.RequireKernel(b)
	chainOnce.Do(func() { chainBench, chainErr = LoadChainBench(ChainSizes) })
	if chainErr != nil {
		b.Fatal(chainErr)
	}
	for _, n := range ChainSizes {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			sizes := []int{1, n}
			if n == 1 {
				sizes = []int{1}
			}
			sub := *chainBench
			sub.Sizes = sizes
			res, err := sub.Measure(5, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.NS[Leaf][n], "ns/op")
			b.ReportMetric(res.NS[Single][n], "single-ns/pkt")
			b.ReportMetric(res.NS[L3afd][n], "l3afd-ns/pkt")
			b.ReportMetric(res.Floor, "floor-ns/pkt")
			if h, ok := res.PerHop(Leaf, n); ok {
				b.ReportMetric(h, "leaf-ns/hop")
			}
			if h, ok := res.PerHop(L3afd, n); ok {
				b.ReportMetric(h, "l3afd-ns/hop")
			}
			if r, ok := res.Ratio(Leaf, Single, n, false); ok {
				b.ReportMetric(r, "leaf/single")
			}
		})
	}
}

// TestChainLeafd applies chains of every size through a real leafd and
// measures the programs the hooks' links run, briefly.
func TestChainLeafd(t *testing.T) {
	testenv.RequireKernel(t)
	if testing.Short() {
		t.Skip("starts leafd")
	}
	repo := t.TempDir()
	if err := WriteChainRepository(repo); err != nil {
		t.Fatal(err)
	}
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--log-level", "info", "--repository-allow-unsigned", repo}})
	s, err := NewSandbox(nil, len(ChainSizes))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	entries, err := LeafdChains(ctx, d.Client, s.NsB, s.Ifaces, ChainSizes)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, p := range entries {
			p.Close()
		}
		if _, err := Clear(ctx, d.Client, false); err != nil {
			t.Error(err)
		}
	}()
	c, err := LoadChainBench([]int{1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Sizes = ChainSizes
	c.AddLeafd(entries)
	res, err := c.Measure(2, 1000, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ChainSizes {
		if len(res.Samples[Leafd][n]) != 2 {
			t.Errorf("leafd chain of %d: %d samples, want 2", n, len(res.Samples[Leafd][n]))
		}
	}
}
