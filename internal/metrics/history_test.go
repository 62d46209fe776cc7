package metrics

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/reconciler"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

type objectsFunc func() ([]reconciler.Objects, error)

func (f objectsFunc) Objects() ([]reconciler.Objects, error) { return f() }

func u64(v uint64) *uint64 { return &v }

// The history reads declared metrics from real pinned maps: one series per
// attachment and metric (by-key summed, a histogram's count), rates that
// repeat a counter left out, run counts from status, at most capacity
// samples, and a series that appears late lined up with nulls before it.
func TestHistory(t *testing.T) {
	totals, byPort, sizes := historyMaps(t)
	metrics := historyMetrics()
	runs := false
	status := statusFunc(func() (*v1.Status, error) {
		st := &v1.Status{Attachments: []v1.AttachmentStatus{{Name: "f"}}}
		if runs {
			st.Attachments[0].RunCount, st.Attachments[0].RunTimeNs = u64(10), u64(5e9)
		}
		return st, nil
	})
	objs := objectsFunc(func() ([]reconciler.Objects, error) {
		return []reconciler.Objects{{Attachment: "f", Package: "pf", Maps: map[string]string{"totals": totals, "by_port": byPort, "sizes": sizes}, Metrics: metrics}}, nil
	})
	h := NewHistory(status, objs, DefaultHistoryInterval, 3)
	h.Sample()
	runs = true
	for range 3 {
		h.Sample()
	}
	checkHistory(t, h)
	checkGaps(t, status, objs, &runs)
}

// historyMaps pins three real maps: totals (array), by_port (hash) and
// sizes (histogram buckets 0..2, the sum at key 3).
func historyMaps(t testing.TB) (totals, byPort, sizes string) {
	testenv.RequireKernel(t)
	dir := testenv.BPFFS(t)
	pin := func(name string, typ ebpf.MapType, entries map[uint32]uint64) string {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: typ, KeySize: 4, ValueSize: 8, MaxEntries: 8})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		for k, v := range entries {
			if err := m.Put(k, v); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(dir, name)
		if err := m.Pin(path); err != nil {
			t.Fatal(err)
		}
		return path
	}
	return pin("totals", ebpf.Array, map[uint32]uint64{0: 40, 1: 2}),
		pin("by_port", ebpf.Hash, map[uint32]uint64{80: 5, 443: 7}),
		pin("sizes", ebpf.Array, map[uint32]uint64{0: 3, 1: 4, 2: 1, 3: 900})
}

// historyMetrics declares a metric of every kind over historyMaps.
func historyMetrics() []manifest.Metric {
	return []manifest.Metric{
		{Name: "passed_total", Help: "passed", Type: manifest.MetricCounter, Map: "totals", Key: u64(0), Verdict: "XDP_PASS"},
		{Name: "dropped_total", Help: "dropped", Type: manifest.MetricCounter, Map: "totals", Key: u64(1), Verdict: "XDP_DROP"},
		{Name: "dropped_per_second", Help: "rate", Type: manifest.MetricRate, Map: "totals", Key: u64(1)},
		{Name: "ports", Help: "by port", Type: manifest.MetricGauge, Map: "by_port", ByKey: "port"},
		{Name: "size", Help: "sizes", Type: manifest.MetricHistogram, Map: "sizes", Buckets: []float64{64, 512}, SumKey: u64(3)},
	}
}

func checkHistory(t *testing.T, h *History) {
	got := h.Snapshot(0)
	if len(got.Times) != 3 {
		t.Fatalf("%d samples, want the capacity 3", len(got.Times))
	}
	want := map[string]struct {
		typ, verdict string
		value        float64
	}{
		"leaf_pkg_pf_passed_total":  {"counter", "XDP_PASS", 40},
		"leaf_pkg_pf_dropped_total": {"counter", "XDP_DROP", 2},
		"leaf_pkg_pf_ports":         {"gauge", "", 12},
		"leaf_pkg_pf_size":          {"counter", "", 8},
		runsMetric:                  {"counter", "", 10},
		runTimeMetric:               {"counter", "", 5},
	}
	for _, s := range got.Series {
		w, ok := want[s.Metric]
		if !ok {
			t.Errorf("unexpected series %s", s.Metric)
			continue
		}
		delete(want, s.Metric)
		if s.Attachment != "f" || s.Type != w.typ || s.Verdict != w.verdict || len(s.Values) != 3 {
			t.Errorf("%s: %+v, want type %s verdict %q and 3 values", s.Metric, s, w.typ, w.verdict)
			continue
		}
		for i, v := range s.Values {
			if v == nil || *v != w.value {
				t.Errorf("%s[%d] = %v, want %v", s.Metric, i, v, w.value)
			}
		}
	}
	for m := range want {
		t.Errorf("no series %s", m)
	}
	// The last sample only, as the console asks once it has the rest.
	last := h.Snapshot(1)
	if len(last.Times) != 1 || !last.Times[0].Equal(got.Times[2]) || last.Capacity != 3 || len(last.Series) != len(got.Series) {
		t.Fatalf("last sample: %d times, capacity %d, %d series", len(last.Times), last.Capacity, len(last.Series))
	}
	for _, s := range last.Series {
		if len(s.Values) != 1 || s.Values[0] == nil {
			t.Errorf("%s: last values %v", s.Metric, s.Values)
		}
	}
}

// checkGaps: a run count that shows up later has nulls before it, and one
// gone for a whole window is forgotten.
func checkGaps(t *testing.T, status StatusSource, objs ObjectsSource, runs *bool) {
	h := NewHistory(status, objs, DefaultHistoryInterval, 3)
	*runs = false
	h.Sample()
	*runs = true
	h.Sample()
	found := false
	for _, s := range h.Snapshot(0).Series {
		if s.Metric == runsMetric {
			found = true
			if s.Values[0] != nil || s.Values[1] == nil {
				t.Errorf("runs %v, want a gap then a value", s.Values)
			}
		}
	}
	if !found {
		t.Error("no runs series")
	}
	// Gone for a whole window (statistics off again): forgotten.
	*runs = false
	for range 3 {
		h.Sample()
	}
	for _, s := range h.Snapshot(0).Series {
		if s.Metric == runsMetric {
			t.Errorf("runs still held after a window without them: %v", s.Values)
		}
	}
}

// BenchmarkHistorySample: one sample of 50 attachments declaring the five
// metrics of historyMetrics each, read from real maps.
func BenchmarkHistorySample(b *testing.B) {
	totals, byPort, sizes := historyMaps(b)
	var atts []v1.AttachmentStatus
	var objs []reconciler.Objects
	for i := range 50 {
		name := fmt.Sprintf("a%d", i)
		atts = append(atts, v1.AttachmentStatus{Name: name, RunCount: u64(1), RunTimeNs: u64(1)})
		objs = append(objs, reconciler.Objects{Attachment: name, Package: "pf", Maps: map[string]string{"totals": totals, "by_port": byPort, "sizes": sizes}, Metrics: historyMetrics()})
	}
	h := NewHistory(statusFunc(func() (*v1.Status, error) { return &v1.Status{Attachments: atts}, nil }),
		objectsFunc(func() ([]reconciler.Objects, error) { return objs, nil }), DefaultHistoryInterval, DefaultHistorySamples)
	for b.Loop() {
		h.Sample()
	}
}
