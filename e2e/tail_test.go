package e2e

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// pktmonRepo lays out examples/pktmon with its companion built.
func pktmonRepo(t *testing.T) string {
	t.Helper()
	src := filepath.Join("..", "examples", "pktmon")
	dir := filepath.Join(t.TempDir(), "pktmon")
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	for _, f := range []string{"leaf.yaml", "README.md", "pktmon.bpf.c", "pktmon.bpf.o"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), data, 0o644)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "bin", "pktmon-summary"), "./companion")
	cmd.Dir, cmd.Env = src, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the companion: %v: %s", err, out)
	}
	return filepath.Dir(dir)
}

// TestTailRingBufferUnderLoad deploys examples/pktmon (ring buffer and
// companion) and tails its ring buffer with `leaf tail` while the pair
// carries a UDP flood: records arrive decoded from struct event with the
// manifest's formats (addresses, ports), the totals match what was
// printed, leafd's tail metrics count them, the lost counters are
// exported, a second tail of the same map is refused while the first
// runs, and the companion prints the per-protocol counts.
func TestTailRingBufferUnderLoad(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	addr := fmt.Sprintf("127.0.0.1:%d", metricsPort(t))
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--repository-allow-unsigned", pktmonRepo(t), "--companion-dir", companionDir(t), "--metrics-address", addr}})
	att := fmt.Sprintf("pktmon-tail-%d", os.Getpid())
	apply(t, d, doc(fmt.Sprintf("name: %s\npackage: pktmon@1.0.0\nhook: {type: xdp, interface: %s, netns: %s}\ncompanion: {args: [-interval, 200ms]}", att, p.IfB, p.NsB)))

	// The tail starts before the load, so that it is still waiting for
	// records when a second tail of the map is tried (and refused).
	// A probe may take the map before the first tail does; the first
	// then ends refused and starts again.
	const want = 5000
	var res chan cliResult
	start := func() {
		res = make(chan cliResult, 1)
		go func() {
			res <- runCLI(t, d.Socket, nil, "tail", att, "events", "--max", fmt.Sprint(want), "--for", "60s", "-o", "json")
		}()
	}
	start()
	waitUntil(t, "a second tail refused while the first runs", func() bool {
		select {
		case r := <-res:
			if !strings.Contains(r.Stderr, "being tailed already") {
				t.Fatalf("the first tail ended before any load: exit %d, %s", r.Code, r.Stderr)
			}
			start()
			return false
		default:
		}
		r := runCLI(t, d.Socket, nil, "tail", att, "events", "--max", "1", "--for", "1ms")
		return r.Code != 0 && strings.Contains(r.Stderr, "being tailed already")
	})

	// Load: datagrams as fast as one sender goes, for the whole tail.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent atomic.Int64
	conn := p.Dial(t, 7401)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			conn.Write([]byte("pktmon load"))
			sent.Add(1)
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	r := <-res
	if r.Code != 0 {
		t.Fatalf("leaf tail: exit %d: %s", r.Code, r.Stderr)
	}
	recs, end := tailRecords(t, r.Stdout)
	records := len(recs)
	src, dst := p.AddrA.String(), p.AddrB.String()
	for _, rec := range recs {
		if rec["saddr"] == src && (rec["dport"] != "7401" || rec["daddr"] != dst || rec["protocol"] != float64(17)) {
			t.Fatalf("record %v; want UDP %s → %s:7401", rec, src, dst)
		}
	}
	// A ring buffer reports no kernel losses (the program counts those):
	// what leafd read is what it sent plus what the client was too slow
	// for.
	if end == nil || end.Records != want || uint64(records)+end.Lost != want || records == 0 {
		t.Fatalf("printed %d records, end %+v; want %d read, each printed or counted lost", records, end, want)
	}
	t.Logf("sent about %d datagrams while tailing %d records; %d lost by leafd or the kernel", sent.Load(), records, end.Lost)

	fam := scrapeMetrics(t, addr)
	labels := map[string]string{"attachment": att, "map": "events"}
	if v := metricValue(t, fam, "leaf_tail_records_total", labels); v < want {
		t.Errorf("leaf_tail_records_total = %v, want at least %d", v, want)
	}
	if m := metricSeries(fam, "leaf_tail_lost_records_total", labels); end.Lost > 0 && m == nil {
		t.Errorf("%d records lost but leaf_tail_lost_records_total is absent", end.Lost)
	}
	if m := metricSeries(fam, "leaf_pkg_pktmon_records_lost_total", map[string]string{"attachment": att}); m == nil {
		t.Error("leaf_pkg_pktmon_records_lost_total is absent")
	}
	if v := metricValue(t, fam, "leaf_pkg_pktmon_packets_total", map[string]string{"attachment": att, "protocol": "17"}); v < want {
		t.Errorf("packets_total{protocol=17} = %v, want at least %d", v, want)
	}
	waitUntil(t, "the companion prints UDP counts", func() bool {
		return strings.Contains(d.Logs(), "packets proto17=")
	})

	// A map that is no ring buffer is refused with the reason.
	if r := runCLI(t, d.Socket, nil, "tail", att, "protocols", "--max", "1"); r.Code == 0 || !strings.Contains(r.Stderr, "reads ring buffers and perf event arrays") {
		t.Errorf("tail of an array: exit %d, %s", r.Code, r.Stderr)
	}
}

// TestTailPerfEventArray deploys testdata's perfmon, whose program writes
// a record per UDP datagram to its port with bpf_perf_event_output into a
// perf event array, sends numbered datagrams from the pair's other end
// while `leaf tail` runs, and checks each record decoded from struct
// datagram against what was sent (addresses, ports, frame length,
// sequence number), the totals, and leafd's tail metrics, the lost
// counter included. (internal/tail's TestPerfBufferLosses overflows the
// buffer.)
func TestTailPerfEventArray(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	testdata, _ := filepath.Abs(filepath.Join("..", "testdata", "packages"))
	addr := fmt.Sprintf("127.0.0.1:%d", metricsPort(t))
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--repository-allow-unsigned", testdata, "--metrics-address", addr}})
	att := fmt.Sprintf("perfmon-tail-%d", os.Getpid())
	const port, want = 7402, 20
	apply(t, d, doc(fmt.Sprintf("name: %s\npackage: perfmon@1.0.0\nhook: {type: xdp, interface: %s, netns: %s}\nparams: {port: %d}", att, p.IfB, p.NsB, port)))

	// The program writes only while a reader holds the buffer: send
	// numbered datagrams until the tail has its records.
	res := make(chan cliResult, 1)
	go func() {
		res <- runCLI(t, d.Socket, nil, "tail", att, "events", "--max", fmt.Sprint(want), "--for", "60s", "-o", "json")
	}()
	rx := p.Listen(t, port)
	defer rx.Close()
	conn := p.Dial(t, port)
	payload := make([]byte, 8)
	var r cliResult
	var sent uint64
	for done := false; !done; {
		sent++
		binary.BigEndian.PutUint64(payload, sent)
		if _, err := conn.Write(payload); err != nil {
			t.Fatal(err)
		}
		select {
		case r = <-res:
			done = true
		case <-time.After(20 * time.Millisecond):
		}
	}
	if r.Code != 0 {
		t.Fatalf("leaf tail: exit %d: %s", r.Code, r.Stderr)
	}

	sport := fmt.Sprint(conn.LocalAddr().(*net.UDPAddr).Port)
	fields := map[string]string{"saddr": p.AddrA.String(), "daddr": p.AddrB.String(), "sport": sport, "dport": fmt.Sprint(port), "len": fmt.Sprint(14 + 20 + 8 + len(payload))}
	recs, end := tailRecords(t, r.Stdout)
	records := len(recs)
	var last float64
	for _, rec := range recs {
		for k, v := range fields {
			if got := fmt.Sprint(rec[k]); got != v {
				t.Fatalf("record %v: %s = %s, want %s", rec, k, got, v)
			}
		}
		// Datagrams go one by one over one veth: in order, each once.
		seq, _ := rec["seq"].(float64)
		if seq <= last || seq > float64(sent) {
			t.Fatalf("record %v: seq %v after %v; %d sent", rec, seq, last, sent)
		}
		last = seq
	}
	if end == nil || records != want || end.Records != want || end.Lost != 0 {
		t.Fatalf("printed %d records, end %+v; want %d, none lost", records, end, want)
	}
	t.Logf("sent %d datagrams; tailed %d records", sent, records)

	fam := scrapeMetrics(t, addr)
	labels := map[string]string{"attachment": att, "map": "events"}
	if v := metricValue(t, fam, "leaf_tail_records_total", labels); v != want {
		t.Errorf("leaf_tail_records_total = %v, want %d", v, want)
	}
	if v := metricValue(t, fam, "leaf_tail_lost_records_total", labels); v != 0 {
		t.Errorf("leaf_tail_lost_records_total = %v, want 0", v)
	}
}

// tailRecords reads the output of `leaf tail -o json`: the records, each
// decoded, and the totals.
func tailRecords(t *testing.T, stdout string) (records []map[string]any, end *v1.TailEnd) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var ev v1.TailEvent
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if ev.End != nil {
			end = ev.End
			continue
		}
		if ev.Record == nil || ev.Error != "" {
			t.Fatalf("record not decoded: %+v", ev)
		}
		records = append(records, ev.Record)
	}
	return records, end
}
