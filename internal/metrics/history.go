package metrics

import (
	"cmp"
	"context"
	"maps"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/reconciler"
)

// History defaults: a sample every 2 seconds, the last 10 minutes.
const (
	DefaultHistoryInterval = 2 * time.Second
	DefaultHistorySamples  = 300
	// MaxHistorySeries bounds the series one sample holds (attachments
	// times the metrics their packages declare).
	MaxHistorySeries = 1024
)

// Names of the program statistics the history samples besides the
// declared metrics (the same names /metrics exports).
const (
	runsMetric    = "leaf_program_runs_total"
	runTimeMetric = "leaf_program_run_time_seconds_total"
)

// History keeps the last minutes of every attachment's declared metrics
// and program run counts, for the console's charts: a bounded ring of
// samples read from the kernel every interval, so a page opened now
// shows what happened before it was opened. A by-key metric is summed
// over its keys (one series per attachment and metric, whatever the map
// holds), a histogram counts its observations. Memory is bounded by
// capacity × MaxHistorySeries values (about 2.4 MB at the defaults,
// a few KB per series in practice).
type History struct {
	status   StatusSource
	objs     ObjectsSource
	interval time.Duration
	capacity int

	mu    sync.Mutex
	times []time.Time // oldest first, at most capacity
	// series hold one value per time, NaN where the series had none.
	series map[seriesKey]*seriesData
}

type seriesKey struct{ attachment, metric string }

type seriesData struct {
	help, typ, verdict string
	values             []float64
}

// NewHistory samples status and objects every interval, keeping capacity
// samples.
func NewHistory(status StatusSource, objs ObjectsSource, interval time.Duration, capacity int) *History {
	return &History{status: status, objs: objs, interval: interval, capacity: capacity, series: map[seriesKey]*seriesData{}}
}

// Run samples until ctx is done.
func (h *History) Run(ctx context.Context) {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		h.Sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sample reads one sample now. A source that fails leaves its series out
// of this sample (a gap in the chart), not the whole history.
func (h *History) Sample() {
	at := time.Now()
	got := map[seriesKey]*seriesData{}
	add := func(k seriesKey, help, typ, verdict string, v float64) {
		got[k] = &seriesData{help: help, typ: typ, verdict: verdict, values: []float64{v}}
	}
	if st, err := h.status.Status(); err == nil {
		for _, a := range st.Attachments {
			if a.RunCount != nil {
				add(seriesKey{a.Name, runsMetric}, "Times the program ran.", manifest.MetricCounter, "", float64(*a.RunCount))
			}
			if a.RunTimeNs != nil {
				add(seriesKey{a.Name, runTimeMetric}, "Time the program spent running.", manifest.MetricCounter, "", float64(*a.RunTimeNs)/1e9)
			}
		}
	}
	if objs, err := h.objs.Objects(); err == nil {
		for _, o := range objs {
			for _, d := range chartable(o.Metrics) {
				if v, ok := declaredTotal(o, d); ok {
					typ := manifest.MetricCounter
					if d.Type == manifest.MetricGauge {
						typ = manifest.MetricGauge
					}
					add(seriesKey{o.Attachment, manifest.MetricName(o.Package, d.Name)}, d.Help, typ, d.Verdict, v)
				}
			}
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	full := len(h.times) == h.capacity
	h.times = push(h.times, at, full)
	for k, s := range h.series {
		v := math.NaN()
		if g, ok := got[k]; ok {
			v = g.values[0]
			s.help, s.typ, s.verdict = g.help, g.typ, g.verdict
			delete(got, k)
		}
		s.values = push(s.values, v, full)
		if allNaN(s.values) {
			delete(h.series, k) // gone for the whole window
		}
	}
	for k, g := range got {
		if len(h.series) >= MaxHistorySeries {
			break
		}
		values := make([]float64, len(h.times))
		for i := range values {
			values[i] = math.NaN()
		}
		values[len(values)-1] = g.values[0]
		g.values = values
		h.series[k] = g
	}
}

// push appends v, dropping the oldest value when the ring is full.
func push[T any](ring []T, v T, full bool) []T {
	if full {
		ring = append(ring[:0], ring[1:]...)
	}
	return append(ring, v)
}

func allNaN(vs []float64) bool {
	for _, v := range vs {
		if !math.IsNaN(v) {
			return false
		}
	}
	return true
}

// chartable leaves out rate metrics that read the same map key as a
// counter of the package: the console draws the counter's rate already.
func chartable(ms []manifest.Metric) []manifest.Metric {
	counted := map[string]bool{}
	for _, m := range ms {
		if m.Type == manifest.MetricCounter {
			counted[rateKey(m)] = true
		}
	}
	var out []manifest.Metric
	for _, m := range ms {
		if m.Type == manifest.MetricRate && counted[rateKey(m)] {
			continue
		}
		out = append(out, m)
	}
	return out
}

func rateKey(m manifest.Metric) string {
	if m.Key == nil {
		return m.Map
	}
	return m.Map + "/" + strconv.FormatUint(*m.Key, 10)
}

// declaredTotal reads a declared metric of one attachment as one number:
// a by-key metric summed over its keys, a histogram's observation count.
func declaredTotal(o reconciler.Objects, d manifest.Metric) (float64, bool) {
	path, ok := o.Maps[d.Map]
	if !ok {
		return 0, false
	}
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return 0, false
	}
	defer m.Close()
	values, err := readValues(m, d)
	if err != nil {
		return 0, false
	}
	var sum uint64
	for k, v := range values {
		if d.Type == manifest.MetricHistogram && k > uint64(len(d.Buckets)) {
			continue // the sum key, not a bucket
		}
		sum += v
	}
	return float64(sum), true
}

// Snapshot returns the last n samples held (all of them when n is 0 or
// more than held), every series lined up with the sample times; series
// with no value in them are left out.
func (h *History) Snapshot(n int) *v1.History {
	h.mu.Lock()
	defer h.mu.Unlock()
	from := 0
	if n > 0 && n < len(h.times) {
		from = len(h.times) - n
	}
	out := &v1.History{Interval: h.interval.Seconds(), Capacity: h.capacity, Times: slices.Clone(h.times[from:]), Series: []v1.Series{}}
	if out.Times == nil {
		out.Times = []time.Time{}
	}
	keys := slices.SortedFunc(maps.Keys(h.series), func(a, b seriesKey) int {
		return cmp.Or(cmp.Compare(a.attachment, b.attachment), cmp.Compare(a.metric, b.metric))
	})
	for _, k := range keys {
		s := h.series[k]
		values := s.values[from:]
		if allNaN(values) {
			continue
		}
		ser := v1.Series{Attachment: k.attachment, Metric: k.metric, Help: s.help, Type: s.typ, Verdict: s.verdict, Values: make([]*float64, len(values))}
		for i, v := range values {
			if !math.IsNaN(v) {
				ser.Values[i] = &v
			}
		}
		out.Series = append(out.Series, ser)
	}
	return out
}
