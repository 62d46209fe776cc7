package chain

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// BenchmarkChainHop measures the cost per packet (BPF_PROG_TEST_RUN, 64-byte
// frame) of a chain of N rewritten trivial members against one unmodified
// trivial program, all run in the same process. Metrics:
//
//	ns/pkt       the chain of N members
//	single-ns/pkt one unmodified program
//	ns/hop       (chain of N - chain of 1) / (N-1): what one more member costs
//
// "plain" members are rewritten as leafd did before run counting; "counted"
// members also count their runs (Options.CountRuns), as leafd's are;
// "fused" and "fused-counted" are the same members fused into one program.
//
// Run: go test -run '^$' -bench ChainHop -benchtime 2000000x ./internal/chain/
func BenchmarkChainHop(b *testing.B) {
	requireRoot(b)
	spec := loadSpec(b)
	single := loadMember(b, spec, "xdp_trivial", nil, loadOpts{})

	counted := Options{ProceedOn: xdpProceed.ProceedOn, CountRuns: true}
	variants := map[string][]*member{}
	for name, opts := range map[string]*Options{"plain": &xdpProceed, "counted": &counted} {
		ms := make([]*member, 10)
		for i := range ms {
			ms[i] = loadMember(b, spec, "xdp_trivial", nil, loadOpts{rewrite: opts})
		}
		variants[name] = ms
	}
	data := frame(64)

	// measure returns the best of three runs of b.N packets: test_run
	// timings on a shared machine are noisy upwards only.
	measure := func(b *testing.B, p *ebpf.Program) time.Duration {
		b.Helper()
		best := time.Duration(-1)
		for range 3 {
			ret, d, err := p.Benchmark(data, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			if ret != xdpPass {
				b.Fatalf("verdict %d, want XDP_PASS", ret)
			}
			if best < 0 || d < best {
				best = d
			}
		}
		return best
	}
	// chain links members[0..n-1] and cuts the chain after the last one.
	chain := func(b *testing.B, members []*member, n int) *ebpf.Program {
		b.Helper()
		for i := 0; i < n-1; i++ {
			members[i].link(b, members[i+1])
		}
		if err := members[n-1].next.Delete(uint32(0)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			b.Fatal(err)
		}
		return members[0].prog
	}

	// fused returns the n members fused into one program.
	fused := func(b *testing.B, n int, opts FuseOptions) *ebpf.Program {
		b.Helper()
		var ms []Member
		for range n {
			ms = append(ms, fuseMember(b, spec, "xdp_trivial", xdpProceed.ProceedOn, nil))
		}
		return loadFused(b, ms, opts, nil).Programs[FusedProgram]
	}
	for _, variant := range []string{"fused", "fused-counted"} {
		opts := FuseOptions{CountRuns: variant == "fused-counted"}
		for _, n := range []int{1, 2, 5, 10} {
			b.Run(fmt.Sprintf("%s/N=%d", variant, n), func(b *testing.B) {
				base := measure(b, single.prog)
				one := measure(b, fused(b, 1, opts))
				total := measure(b, fused(b, n, opts))
				b.ReportMetric(float64(total.Nanoseconds()), "ns/pkt")
				b.ReportMetric(float64(base.Nanoseconds()), "single-ns/pkt")
				if n > 1 {
					b.ReportMetric(float64(total.Nanoseconds()-one.Nanoseconds())/float64(n-1), "ns/hop")
				}
			})
		}
	}
	for _, variant := range []string{"plain", "counted"} {
		for _, n := range []int{1, 2, 5, 10} {
			b.Run(fmt.Sprintf("%s/N=%d", variant, n), func(b *testing.B) {
				members := variants[variant]
				base := measure(b, single.prog)
				one := measure(b, chain(b, members, 1))
				total := measure(b, chain(b, members, n))
				b.ReportMetric(float64(total.Nanoseconds()), "ns/pkt")
				b.ReportMetric(float64(base.Nanoseconds()), "single-ns/pkt")
				if n > 1 {
					b.ReportMetric(float64(total.Nanoseconds()-one.Nanoseconds())/float64(n-1), "ns/hop")
				}
			})
		}
	}
}
