package tail

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// TestPerfBufferLosses loads testdata's perfmon (bpf_perf_event_output
// into a perf event array) and runs it with BPF_PROG_TEST_RUN, pinned to
// one CPU, far more times than the per-CPU buffer holds before anything
// reads: the tail reads the records that fit, each decoded from struct
// datagram, and leafd's lost counter holds the rest once the kernel
// reports them (with the next record it writes, on the next run). Every
// record written is either read or counted lost, and the kernel's loss
// notice is no record of its own.
func TestPerfBufferLosses(t *testing.T) {
	testenv.RequireKernel(t)
	obj := filepath.Join("..", "..", "testdata", "packages", "perfmon", "perfmon.bpf.o")
	spec, err := ebpf.LoadCollectionSpec(obj)
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Variables["port"].Set(uint16(7777)); err != nil {
		t.Fatal(err)
	}
	btfRaw, err := MarshalType(spec.Types, "datagram")
	if err != nil {
		t.Fatal(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer coll.Close()
	pin := filepath.Join(testenv.BPFFS(t), "events")
	if err := coll.Maps["events"].Pin(pin); err != nil {
		t.Fatal(err)
	}
	src := Source{Attachment: "perf-test", Map: "events", PinPath: pin, BTF: btfRaw,
		Records: &manifest.Records{Map: "events", Type: "datagram", Formats: map[string]string{"saddr": "ipv4", "daddr": "ipv4", "sport": "port", "dport": "port"}}}
	r, dec, err := Prepare(src)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	stats := NewStats()
	pkt := udpPacket(0x0102030405060708)
	tailAll := func(max int) []v1.TailEvent {
		var evs []v1.TailEvent
		err := stats.Run(context.Background(), src, r, dec, Options{Max: max, For: 2 * time.Second},
			func(ev v1.TailEvent) error { evs = append(evs, ev); return nil }, func() error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 || evs[len(evs)-1].End == nil {
			t.Fatalf("tail ended without totals: %+v", evs)
		}
		return evs
	}

	const burst = 20000
	runOnOneCPU(t, coll.Programs["perfmon"], pkt, burst)
	first := tailAll(burst)
	end1 := first[len(first)-1].End
	want := map[string]string{"seq": "72623859790382856", "saddr": "10.1.2.3", "daddr": "10.4.5.6", "sport": "4242", "dport": "7777", "len": fmt.Sprint(len(pkt))}
	for _, ev := range first[:len(first)-1] {
		checkRecord(t, ev, want)
	}
	// Records leafd read but the (here never slow) client had no room
	// for are counted lost by leafd; the kernel's losses are not known yet.
	if n := uint64(len(first) - 1); n+end1.Lost != end1.Records || n == 0 || end1.Records >= burst {
		t.Fatalf("first tail: %d records printed, end %+v; want some of %d read, each printed or counted lost", n, end1, burst)
	}

	// One more record: the kernel reports the losses before it.
	runOnOneCPU(t, coll.Programs["perfmon"], pkt, 1)
	second := tailAll(1)
	if len(second) != 2 || second[1].End.Records != 1 {
		t.Fatalf("second tail: %+v, want one record and the totals", second)
	}
	checkRecord(t, second[0], want)
	kernelLost := second[0].Lost
	if kernelLost == 0 || second[1].End.Lost != kernelLost || end1.Records+kernelLost != burst {
		t.Fatalf("%d read, then %d reported lost by the kernel (end %+v); want %d in all", end1.Records, kernelLost, second[1].End, burst)
	}
	if got := testCounter(t, stats.lost, src); got != float64(end1.Lost+kernelLost) {
		t.Errorf("leaf_tail_lost_records_total = %v, want %d", got, end1.Lost+kernelLost)
	}
	if got := testCounter(t, stats.records, src); got != float64(end1.Records+1) {
		t.Errorf("leaf_tail_records_total = %v, want %d", got, end1.Records+1)
	}
	t.Logf("%d records written: %d read, %d lost by the kernel, %d by leafd", burst+1, end1.Records+1, kernelLost, end1.Lost)
}

func checkRecord(t *testing.T, ev v1.TailEvent, want map[string]string) {
	t.Helper()
	if ev.End != nil || ev.Record == nil || ev.Error != "" {
		t.Fatalf("event %+v; want a decoded record", ev)
	}
	for k, v := range want {
		if got := fmt.Sprint(ev.Record[k]); got != v {
			t.Fatalf("record %v: %s = %s, want %s", ev.Record, k, got, v)
		}
	}
}

func testCounter(t *testing.T, c *prometheus.CounterVec, src Source) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.WithLabelValues(src.Attachment, src.Map).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// runOnOneCPU runs prog repeat times on one CPU, so that every record
// goes to that CPU's buffer (and the kernel's loss notice with the next
// one), on a thread that ends with the run.
func runOnOneCPU(t *testing.T, prog *ebpf.Program, pkt []byte, repeat uint32) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread exits with its affinity
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil {
			errc <- err
			return
		}
		cpu := 0
		for !set.IsSet(cpu) {
			cpu++
		}
		set.Zero()
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			errc <- err
			return
		}
		_, err := prog.Run(&ebpf.RunOptions{Data: pkt, Repeat: repeat})
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("test run: %v", err)
	}
}

// udpPacket is an Ethernet frame with a UDP datagram 10.1.2.3:4242 →
// 10.4.5.6:7777 whose payload is seq, big endian.
func udpPacket(seq uint64) []byte {
	p := make([]byte, 14+20+8+8)
	binary.BigEndian.PutUint16(p[12:], unix.ETH_P_IP)
	ip := p[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	copy(ip[12:], []byte{10, 1, 2, 3})
	copy(ip[16:], []byte{10, 4, 5, 6})
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], 4242)
	binary.BigEndian.PutUint16(udp[2:], 7777)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	binary.BigEndian.PutUint64(udp[8:], seq)
	return p
}
