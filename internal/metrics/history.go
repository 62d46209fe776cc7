package metrics

import (
	"context"
	"sort"
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
// holds), a histogram counts its observations.
type History struct {
	status   StatusSource
	objs     ObjectsSource
	interval time.Duration
	capacity int

	mu      sync.Mutex
	samples []sample // oldest first, at most capacity
	meta    map[seriesKey]seriesMeta
}

type seriesKey struct{ attachment, metric string }

type seriesMeta struct{ help, typ, verdict string }

type sample struct {
	at     time.Time
	values map[seriesKey]float64
}

// NewHistory samples status and objects every interval, keeping capacity
// samples.
func NewHistory(status StatusSource, objs ObjectsSource, interval time.Duration, capacity int) *History {
	return &History{status: status, objs: objs, interval: interval, capacity: capacity, meta: map[seriesKey]seriesMeta{}}
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
	s := sample{at: time.Now(), values: map[seriesKey]float64{}}
	meta := map[seriesKey]seriesMeta{}
	add := func(k seriesKey, m seriesMeta, v float64) {
		if len(s.values) < MaxHistorySeries {
			s.values[k], meta[k] = v, m
		}
	}
	if st, err := h.status.Status(); err == nil {
		for _, a := range st.Attachments {
			if a.RunCount != nil {
				add(seriesKey{a.Name, runsMetric}, seriesMeta{"Times the program ran.", manifest.MetricCounter, ""}, float64(*a.RunCount))
			}
			if a.RunTimeNs != nil {
				add(seriesKey{a.Name, runTimeMetric}, seriesMeta{"Time the program spent running.", manifest.MetricCounter, ""}, float64(*a.RunTimeNs)/1e9)
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
					add(seriesKey{o.Attachment, manifest.MetricName(o.Package, d.Name)}, seriesMeta{d.Help, typ, d.Verdict}, v)
				}
			}
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.samples) == h.capacity {
		h.samples = append(h.samples[:0], h.samples[1:]...)
	}
	h.samples = append(h.samples, s)
	for k, m := range meta {
		h.meta[k] = m
	}
	h.forgetLocked()
}

// forgetLocked drops the descriptions of series no sample holds any more.
func (h *History) forgetLocked() {
	if len(h.meta) <= MaxHistorySeries {
		return
	}
	live := map[seriesKey]bool{}
	for _, s := range h.samples {
		for k := range s.values {
			live[k] = true
		}
	}
	for k := range h.meta {
		if !live[k] {
			delete(h.meta, k)
		}
	}
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

// Snapshot returns the samples held, every series lined up with the
// sample times.
func (h *History) Snapshot() *v1.History {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := &v1.History{Interval: h.interval.Seconds(), Times: make([]time.Time, len(h.samples)), Series: []v1.Series{}}
	seen := map[seriesKey]bool{}
	var keys []seriesKey
	for _, s := range h.samples {
		for k := range s.values {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].attachment != keys[j].attachment {
			return keys[i].attachment < keys[j].attachment
		}
		return keys[i].metric < keys[j].metric
	})
	for _, k := range keys {
		m := h.meta[k]
		ser := v1.Series{Attachment: k.attachment, Metric: k.metric, Help: m.help, Type: m.typ, Verdict: m.verdict, Values: make([]*float64, len(h.samples))}
		for i, s := range h.samples {
			if v, ok := s.values[k]; ok {
				ser.Values[i] = &v
			}
		}
		out.Series = append(out.Series, ser)
	}
	for i, s := range h.samples {
		out.Times[i] = s.at
	}
	return out
}
