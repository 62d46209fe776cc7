package bench

import (
	"context"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// The benchmarks run a real leafd (testenv.StartDaemon: its own process,
// private bpffs and socket) and attach the portfilter XDP program to veth
// ends in a throwaway network namespace. Each reports the default ns/op
// and the median of the per-iteration timings as median-ns/op.
//
//	go test -run '^$' -bench . -benchtime 20x ./bench/

// daemon starts leafd at info level (testenv logs at debug by default,
// which is not what a host runs).
func daemon(b *testing.B) *testenv.Daemon {
	b.Helper()
	testenv.RequireKernel(b)
	return testenv.StartDaemon(b, testenv.DaemonOptions{Args: []string{"--log-level", "info"}})
}

func sandbox(b *testing.B, n int) *Sandbox {
	b.Helper()
	s, err := NewSandbox(nil, n)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := s.Close(); err != nil {
			b.Error(err)
		}
	})
	return s
}

// benchApply applies doc (n attachments) from the empty state in every
// iteration; the delete in between, and the wait for the kernel to free
// the detached programs and maps, are not timed.
func benchApply(b *testing.B, n int, document func(netns string, ifaces []string) []byte) {
	d := daemon(b)
	s := sandbox(b, n)
	doc := document(s.NsB, s.Ifaces)
	ctx := context.Background()
	var took []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		res, err := d.Client.Apply(ctx, doc, false)
		took = append(took, time.Since(start))
		if err != nil {
			b.Fatalf("apply: %v", err)
		}
		b.StopTimer()
		if err := CheckApply(res, n, false); err != nil {
			b.Fatal(err)
		}
		// Detach, and let the kernel free what ran before the next run.
		if _, err := Clear(ctx, d.Client, true); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(Summarize(took).Median.Nanoseconds()), "median-ns/op")
}

// BenchmarkApplyOne applies one portfilter XDP attachment on a veth end,
// from the empty state.
func BenchmarkApplyOne(b *testing.B) { benchApply(b, 1, Document) }

// BenchmarkApplyOneVsReference is issue 9's target in one run: each
// iteration applies one portfilter XDP attachment through leafd and then
// loads and attaches the same program straight through cilium/ebpf
// (bench.Direct) on the same veth, each from a clean kernel (the other's
// objects freed). It reports both medians and their ratio.
func BenchmarkApplyOneVsReference(b *testing.B) {
	d := daemon(b)
	s := sandbox(b, 1)
	doc := Document(s.NsB, s.Ifaces)
	ctx := context.Background()
	var own, ref []time.Duration
	SettleRCU() // the first iteration starts as every other: after setting up the daemon and the veths
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		res, err := d.Client.Apply(ctx, doc, false)
		own = append(own, time.Since(start))
		if err != nil {
			b.Fatalf("apply: %v", err)
		}
		b.StopTimer()
		if err := CheckApply(res, 1, false); err != nil {
			b.Fatal(err)
		}
		if _, err := Clear(ctx, d.Client, true); err != nil {
			b.Fatal(err)
		}
		took, closeAll, err := Direct(s.NsB, s.Ifaces)
		if err != nil {
			b.Fatal(err)
		}
		ref = append(ref, took)
		if err := closeAll(true); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	o, r := Summarize(own).Median, Summarize(ref).Median
	b.ReportMetric(float64(o.Nanoseconds()), "leaf-median-ns")
	b.ReportMetric(float64(r.Nanoseconds()), "reference-median-ns")
	b.ReportMetric(float64(o)/float64(r), "leaf/reference")
}

// BenchmarkApplyOneTCX applies one pktcount TCX ingress attachment on a
// veth end, from the empty state.
func BenchmarkApplyOneTCX(b *testing.B) { benchApply(b, 1, TCXDocument) }

// BenchmarkApply50 applies 50 portfilter XDP attachments on 50 veth ends
// in one document, from the empty state.
func BenchmarkApply50(b *testing.B) { benchApply(b, 50, Document) }

// BenchmarkReapplyNoop applies the same 50-attachment document again:
// leafd must find nothing to do.
func BenchmarkReapplyNoop(b *testing.B) {
	d := daemon(b)
	s := sandbox(b, 50)
	doc := Document(s.NsB, s.Ifaces)
	ctx := context.Background()
	if _, err := d.Client.Apply(ctx, doc, false); err != nil {
		b.Fatalf("apply: %v", err)
	}
	var took []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		res, err := d.Client.Apply(ctx, doc, false)
		took = append(took, time.Since(start))
		if err != nil {
			b.Fatalf("re-apply: %v", err)
		}
		b.StopTimer()
		if err := CheckApply(res, 50, true); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(Summarize(took).Median.Nanoseconds()), "median-ns/op")
	// Detach before the namespaces and the daemon go: SIGTERM leaves
	// programs attached by design.
	if _, err := Clear(ctx, d.Client, true); err != nil {
		b.Error(err)
	}
}

// BenchmarkDirect50 loads and attaches the same 50 programs straight
// through cilium/ebpf, without leafd: the kernel's share of
// BenchmarkApply50.
func BenchmarkDirect50(b *testing.B) {
	testenv.RequireKernel(b)
	s := sandbox(b, 50)
	var took []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, closeAll, err := Direct(s.NsB, s.Ifaces)
		if err != nil {
			b.Fatal(err)
		}
		took = append(took, d)
		b.StopTimer()
		if err := closeAll(true); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(Summarize(took).Median.Nanoseconds()), "median-ns/op")
}

func TestSummarize(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	for _, c := range []struct {
		in       []time.Duration
		med, p90 time.Duration
	}{
		{ms(5), 5 * time.Millisecond, 5 * time.Millisecond},
		{ms(4, 1, 3, 2), 2500 * time.Microsecond, 4 * time.Millisecond},
		{ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 5500 * time.Microsecond, 9 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11), 6 * time.Millisecond, 10 * time.Millisecond},
	} {
		s := Summarize(c.in)
		if s.Median != c.med || s.P90 != c.p90 || s.N != len(c.in) {
			t.Errorf("Summarize(%v) = %+v, want median %v p90 %v", c.in, s, c.med, c.p90)
		}
	}
	if s := Summarize(nil); s.N != 0 {
		t.Errorf("Summarize(nil) = %+v", s)
	}
}

func TestDocument(t *testing.T) {
	if got := string(Document("ns", nil)); got != "apiVersion: leaf.dev/v1alpha1\nkind: HostState\nmetadata: {name: bench}\nspec:\n  attachments: []\n" {
		t.Errorf("empty document:\n%s", got)
	}
	want := "    - name: pf-bv0\n      package: portfilter@1.0.0\n      hook: {type: xdp, interface: bv0, netns: ns}\n      params: {ports: [7001, 7003]}\n"
	if got := string(Document("ns", []string{"bv0"})); got[len(got)-len(want):] != want {
		t.Errorf("document:\n%s", got)
	}
}
