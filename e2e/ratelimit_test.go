package e2e

import (
	"bytes"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/leaf-ebpf/leaf/internal/frames"
	"github.com/leaf-ebpf/leaf/internal/testenv"
	"github.com/leaf-ebpf/leaf/packages"
)

// load loads the program with its load-time constants, as leafd would,
// and sets ports, rate and burst.
func loadRatelimit(t *testing.T, consts map[string]any, rate, burst uint64, ports ...uint16) *ebpf.Collection {
	t.Helper()
	testenv.RequireKernel(t)
	obj, err := packages.FS.ReadFile("ratelimit/ratelimit.bpf.o")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range consts {
		if err := spec.Variables[name].Set(v); err != nil {
			t.Fatalf("set %s: %v", name, err)
		}
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		t.Fatalf("load: %+v", err)
	}
	t.Cleanup(coll.Close)
	for _, p := range ports {
		if err := coll.Maps["rl_ports"].Put(p, uint8(1)); err != nil {
			t.Fatal(err)
		}
	}
	coll.Maps["rl_config"].Put(uint32(0), rate)
	coll.Maps["rl_config"].Put(uint32(1), burst)
	return coll
}

func rlVerdicts(t *testing.T, prog *ebpf.Program, pkt frames.Packet, n int) (passed int) {
	t.Helper()
	for i := 0; i < n; i++ {
		ret, err := prog.Run(&ebpf.RunOptions{Data: pkt.Build()})
		if err != nil {
			t.Fatal(err)
		}
		if ret == 2 {
			passed++
		}
	}
	return passed
}

func syn(src, dst string, dport uint16) frames.Packet {
	return frames.Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: frames.TCP, Sport: 40000, Dport: dport, TCPFlags: frames.SYN}
}

// TestSYNBucketsPerSourcePrefix: at one new connection a second with a
// burst of 5, the first 5 SYNs from a /24 (or /64) pass and the rest drop;
// another prefix has its own bucket; ACKs, other ports and UDP are not
// limited.
func TestSYNBucketsPerSourcePrefix(t *testing.T) {
	coll := loadRatelimit(t, map[string]any{"syn_only": uint8(1), "source_prefix4": uint8(24), "source_prefix6": uint8(64)}, 1, 5, 80)
	prog := coll.Programs["xdp_ratelimit"]
	for _, c := range []struct {
		name string
		pkt  frames.Packet
		n    int
		want int
	}{
		{"v4 SYNs", syn("10.0.0.1", "10.9.0.1", 80), 8, 5},
		{"v4 same /24", syn("10.0.0.77", "10.9.0.1", 80), 3, 0},
		{"v4 other /24", syn("10.0.1.1", "10.9.0.1", 80), 8, 5},
		{"v4 other port", syn("10.0.0.1", "10.9.0.1", 81), 8, 8},
		{"v4 ACKs", frames.Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.9.0.1"), Proto: frames.TCP, Dport: 80, TCPFlags: frames.ACK}, 8, 8},
		{"v4 SYN-ACKs", frames.Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.9.0.1"), Proto: frames.TCP, Dport: 80, TCPFlags: frames.SYN | frames.ACK}, 8, 8},
		{"v4 UDP", frames.Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.9.0.1"), Proto: frames.UDP, Dport: 80}, 8, 8},
		{"v6 SYNs", syn("fd00:1:2:3::1", "fd00::2", 80), 8, 5},
		{"v6 same /64", syn("fd00:1:2:3::99", "fd00::2", 80), 3, 0},
		{"v6 other /64", syn("fd00:1:2:4::1", "fd00::2", 80), 8, 5},
	} {
		if got := rlVerdicts(t, prog, c.pkt, c.n); got != c.want {
			t.Errorf("%s: %d of %d passed, want %d", c.name, got, c.n, c.want)
		}
	}
}

// TestSharedBucketAcrossCPUs: one bucket, packets from every CPU at once
// (BPF_PROG_TEST_RUN on a thread pinned to each CPU), far above the rate.
// The compare-and-swap keeps the total that passes within burst + rate ×
// elapsed; it must also not fall far below it (the flood never stops).
func TestSharedBucketAcrossCPUs(t *testing.T) {
	const rate, burst = 200_000, 1000
	coll := loadRatelimit(t, map[string]any{"syn_only": uint8(0)}, rate, burst, 9000)
	prog := coll.Programs["xdp_ratelimit"]
	pkt := frames.Packet{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.9.0.1"), Proto: frames.UDP, Dport: 9000}.Build()
	cpus := runtime.NumCPU()
	var wg sync.WaitGroup
	start := time.Now()
	for cpu := 0; cpu < cpus; cpu++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			var set unix.CPUSet
			set.Set(cpu)
			unix.SchedSetaffinity(0, &set)
			for i := 0; i < 10; i++ {
				if _, err := prog.Run(&ebpf.RunOptions{Data: pkt, Repeat: 200_000}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var passed, dropped uint64
	var per []uint64
	coll.Maps["rl_stats"].Lookup(uint32(0), &per)
	for _, v := range per {
		passed += v
	}
	coll.Maps["rl_stats"].Lookup(uint32(1), &per)
	for _, v := range per {
		dropped += v
	}
	limit := burst + rate*elapsed.Seconds()
	t.Logf("%d CPUs, %v: %d passed, %d dropped; burst + rate × elapsed = %.0f (%.1f%%)", cpus, elapsed, passed, dropped, limit, 100*float64(passed)/limit)
	if float64(passed) > limit {
		t.Fatalf("%d packets passed, more than burst + rate × elapsed = %.0f", passed, limit)
	}
	// The floor is loose on purpose: tokens beyond the burst are lost while
	// both flooding threads are descheduled, which a busy machine does for
	// many milliseconds; what must hold is that the bucket refills (more
	// than two bursts pass) and that the flood is cut (some are dropped).
	if passed <= 2*burst || dropped == 0 {
		t.Fatalf("%d passed and %d dropped, want more than %d passed (the bucket refills) and some dropped", passed, dropped, 2*burst)
	}
}

// TestRatelimitHoldsFloodToRate deploys ratelimit through leafd on B's XDP
// hook (UDP to port 7100 at 200 packets/s, burst 20) and floods that port
// from A for a second while a paced flow to port 7101 runs beside it. The
// flood gets through at its rate (within 10% of burst + rate × elapsed,
// never above it by more than the rate's granularity); the other flow
// loses nothing.
func TestRatelimitHoldsFloodToRate(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	apply(t, d, doc(fmt.Sprintf(`name: rl
package: ratelimit@1.0.0
hook: {type: xdp, interface: %s, netns: %s}
params: {ports: [7100], rate: 200, burst: 20, syn_only: false}`, p.IfB, p.NsB)))

	flood := p.NewUDPFlow(t, p.AddrB, 7100)
	other := p.NewUDPFlow(t, p.AddrB, 7101)
	// ARP first, so the flood's first packets are not queued behind it.
	if got := other.Send(t, 1, time.Second); got != 1 {
		t.Fatal("no datagram reaches B")
	}
	var wg sync.WaitGroup
	var otherGot int
	otherDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 50; i++ {
			other.Tx.Write([]byte("o"))
			time.Sleep(10 * time.Millisecond)
		}
	}()
	go func() {
		defer close(otherDone)
		buf := make([]byte, 16)
		for otherGot < 50 {
			other.Rx.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := other.Rx.Read(buf); err != nil {
				return
			}
			otherGot++
		}
	}()
	sent := 0
	start := time.Now()
	for time.Since(start) < time.Second {
		if _, err := flood.Tx.Write([]byte("f")); err == nil {
			sent++
		}
	}
	elapsed := time.Since(start)
	got := 0
	buf := make([]byte, 16)
	for {
		flood.Rx.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := flood.Rx.Read(buf); err != nil {
			break
		}
		got++
	}
	wg.Wait()
	<-otherDone

	want := 20 + 200*elapsed.Seconds()
	t.Logf("flood: %d sent in %v (%.0f/s), %d arrived, burst + rate × elapsed = %.0f; other flow: %d of 50", sent, elapsed, float64(sent)/elapsed.Seconds(), got, want, otherGot)
	if sent < 2000 {
		t.Fatalf("only %d datagrams sent: not a flood", sent)
	}
	// Above the bound is a bug; below it by more than 30 % only if the
	// sender stalled longer than a burst's worth (100 ms) on a busy machine.
	if float64(got) < 0.7*want || float64(got) > want+1 {
		t.Errorf("%d of the flood arrived, want %.0f (-30%%)", got, want)
	}
	if otherGot != 50 {
		t.Errorf("other traffic: %d of 50 arrived", otherGot)
	}
	stats, err := d.Client.DumpMap(ctx(t), "rl", "rl_stats")
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[uint64]uint64{}
	for _, e := range stats.Entries {
		byKey[*e.KeyUint] = *e.ValueUint
	}
	// The veth may drop a little of a flood before XDP sees it.
	if byKey[0] != uint64(got) || byKey[1] > uint64(sent-got) || float64(byKey[1]) < 0.9*float64(sent-got) {
		t.Errorf("counters passed %d dropped %d, want %d and about %d", byKey[0], byKey[1], got, sent-got)
	}
}
