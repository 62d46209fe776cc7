package e2e

import (
	"fmt"
	"os/exec"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// TestDeclaredMetrics runs the built-in packages under real traffic and
// checks the metrics their manifests declare against what was sent and
// against the maps read through the API: by-key counters (portfilter
// drops per port), single keys, sums, a rate, a histogram with its sum
// (pktcount packet sizes), and per-uid exec counts; plus program and map
// figures (verified instructions, memory, fill level of hash maps) and
// the event counters.
func TestDeclaredMetrics(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	addr := fmt.Sprintf("127.0.0.1:%d", metricsPort(t))
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--metrics-address", addr}})
	apply(t, d, doc(
		portFilter(p, "pf", "1.0.0", 19, 21),
		fmt.Sprintf("name: cnt\npackage: pktcount@1.0.0\nprogram: count_xdp\npriority: 60\nhook: {type: xdp, interface: %s, netns: %s}", p.IfB, p.NsB),
		"name: ex\npackage: execcount@1.0.0\nhook: {type: tracepoint, tracepoint: sched/sched_process_exec}",
	))
	p.Delivered(t, 19, 7, 100*time.Millisecond)
	p.Delivered(t, 21, 3, 100*time.Millisecond)
	if n := p.Delivered(t, 20, 10, time.Second); n != 10 {
		t.Fatalf("%d of 10 packets to an open port arrived", n)
	}
	for i := 0; i < 3; i++ {
		if err := exec.Command("/bin/true").Run(); err != nil {
			t.Fatal(err)
		}
	}
	// Stray packets (IPv6 neighbour discovery) may still arrive: read the
	// maps before and after the scrape, and want the metrics in between.
	_, counters1 := mapSum(t, d, "cnt", "counters")
	_, sizes1 := mapSum(t, d, "cnt", "sizes")
	fam := scrapeMetrics(t, addr)
	_, counters := mapSum(t, d, "cnt", "counters")
	_, sizes := mapSum(t, d, "cnt", "sizes")
	between := func(v float64, lo, hi uint64) bool { return v >= float64(lo) && v <= float64(hi) }
	pf := map[string]string{"attachment": "pf"}
	cnt := map[string]string{"attachment": "cnt"}

	// portfilter: exact, since only the test sends UDP to these ports.
	if v := metricValue(t, fam, "leaf_pkg_portfilter_drops_total", map[string]string{"attachment": "pf", "port": "19"}); v != 7 {
		t.Errorf("drops_total{port=19} = %v, want 7", v)
	}
	if v := metricValue(t, fam, "leaf_pkg_portfilter_drops_total", map[string]string{"attachment": "pf", "port": "21"}); v != 3 {
		t.Errorf("drops_total{port=21} = %v, want 3", v)
	}
	if v := metricValue(t, fam, "leaf_pkg_portfilter_dropped_total", pf); v != 10 {
		t.Errorf("dropped_total = %v, want 10", v)
	}
	passed := metricValue(t, fam, "leaf_pkg_portfilter_passed_total", pf)
	if passed < 10 || passed > pktsOrZero(counters) {
		t.Errorf("passed_total = %v; want ≥ 10 and at most what the next member counted (%d)", passed, counters[0])
	}
	if fam["leaf_pkg_portfilter_drops_total"].GetType() != dto.MetricType_COUNTER {
		t.Errorf("drops_total is %v, want a counter", fam["leaf_pkg_portfilter_drops_total"].GetType())
	}

	// pktcount runs after portfilter in the chain: it sees what passed.
	pkts := metricValue(t, fam, "leaf_pkg_pktcount_packets_total", cnt)
	if pkts < 10 || !between(pkts, counters1[0], counters[0]) {
		t.Errorf("packets_total = %v; want ≥ 10 and what the map holds (%d..%d)", pkts, counters1[0], counters[0])
	}
	if b := metricValue(t, fam, "leaf_pkg_pktcount_bytes_total", cnt); !between(b, counters1[1], counters[1]) {
		t.Errorf("bytes_total = %v; the map holds %d..%d", b, counters1[1], counters[1])
	}
	h := metricSeries(fam, "leaf_pkg_pktcount_packet_size_bytes", cnt).GetHistogram()
	if !between(float64(h.GetSampleCount()), counters1[0], counters[0]) || !between(h.GetSampleSum(), sizes1[7], sizes[7]) {
		t.Errorf("histogram count %d sum %v; want the packet count (%d..%d) and the byte sum (%d..%d)", h.GetSampleCount(), h.GetSampleSum(), counters1[0], counters[0], sizes1[7], sizes[7])
	}
	var cum1, cum uint64
	for i, b := range h.GetBucket() {
		cum1 += sizes1[uint64(i)]
		cum += sizes[uint64(i)]
		if !between(float64(b.GetCumulativeCount()), cum1, cum) {
			t.Errorf("bucket le=%v holds %d, want %d..%d (cumulative over the map's keys)", b.GetUpperBound(), b.GetCumulativeCount(), cum1, cum)
		}
	}
	if le64 := h.GetBucket()[0]; le64.GetUpperBound() != 64 || le64.GetCumulativeCount() < 10 {
		t.Errorf("the small test datagrams did not land in le=64: %v", le64)
	}

	// execcount counts per uid; the tests run as root.
	if v := metricValue(t, fam, "leaf_pkg_execcount_execs_total", map[string]string{"attachment": "ex", "uid": "0"}); v < 3 {
		t.Errorf("execs_total{uid=0} = %v, want ≥ 3", v)
	}

	// Program and map figures.
	for _, a := range []string{"pf", "cnt", "ex"} {
		l := map[string]string{"attachment": a}
		if v := metricValue(t, fam, "leaf_program_verified_instructions", l); v <= 0 {
			t.Errorf("%s: verified instructions %v", a, v)
		}
		if v := metricValue(t, fam, "leaf_program_memory_bytes", l); v <= 0 {
			t.Errorf("%s: program memory %v", a, v)
		}
	}
	bp := map[string]string{"attachment": "pf", "map": "blocked_ports"}
	if e, m := metricValue(t, fam, "leaf_map_entries", bp), metricValue(t, fam, "leaf_map_max_entries", bp); e != 2 || m != 1024 {
		t.Errorf("blocked_ports fill %v of %v, want 2 of 1024", e, m)
	}
	if e := metricValue(t, fam, "leaf_map_entries", map[string]string{"attachment": "pf", "map": "drops"}); e != 2 {
		t.Errorf("drops holds %v entries, want 2 (ports 19 and 21)", e)
	}
	if metricSeries(fam, "leaf_map_entries", map[string]string{"attachment": "pf", "map": "totals"}) != nil {
		t.Error("an array map reports a fill level")
	}
	if v := metricValue(t, fam, "leaf_map_memory_bytes", bp); v <= 0 {
		t.Errorf("blocked_ports memory %v", v)
	}
	if v := metricValue(t, fam, "leaf_events_total", map[string]string{"type": "apply"}); v < 3 {
		t.Errorf("leaf_events_total{type=apply} = %v, want ≥ 3", v)
	}
	if metricSeries(fam, "leaf_events_total", map[string]string{"type": "drift"}) == nil {
		t.Error("leaf_events_total{type=drift} is not exported before the first drift")
	}

	// A rate needs two scrapes at least a second apart.
	if metricSeries(fam, "leaf_pkg_pktcount_packets_per_second", cnt) != nil {
		t.Error("a rate appeared after one scrape")
	}
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if n := p.Delivered(t, 20, 40, time.Second); n != 40 {
		t.Fatalf("%d of 40 arrived", n)
	}
	time.Sleep(time.Second - time.Since(start) + 100*time.Millisecond)
	fam2 := scrapeMetrics(t, addr)
	rate := metricValue(t, fam2, "leaf_pkg_pktcount_packets_per_second", cnt)
	pkts2 := metricValue(t, fam2, "leaf_pkg_pktcount_packets_total", cnt)
	// The rate covers the time between the two scrapes; it cannot exceed
	// the packets counted over at least the rate window.
	if rate < 10 || rate > pkts2-pkts+1 {
		t.Errorf("packets_per_second = %v after %v packets in a little over a second", rate, pkts2-pkts)
	}
	if metricSeries(fam2, "leaf_pkg_portfilter_packets_per_second", pf) == nil {
		t.Error("portfilter's summed rate is missing")
	}
	checks := fam2["leaf_drift_check_duration_seconds"].GetMetric()[0].GetHistogram()
	if checks.GetSampleCount() == 0 {
		t.Fatal("no drift check recorded")
	}
	t.Logf("drift checks: %d, mean %.2f ms (2 XDP members on one hook, 1 tracepoint)", checks.GetSampleCount(), 1000*checks.GetSampleSum()/float64(checks.GetSampleCount()))
}

func pktsOrZero(counters map[uint64]uint64) float64 { return float64(counters[0]) }
