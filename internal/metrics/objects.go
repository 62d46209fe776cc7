package metrics

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/nativeint"
	"github.com/leaf-ebpf/leaf/internal/reconciler"
)

// ObjectsSource lists each attachment's program, maps and declared
// metrics at scrape time.
type ObjectsSource interface {
	Objects() ([]reconciler.Objects, error)
}

var (
	descVerified = prometheus.NewDesc("leaf_program_verified_instructions",
		"Instructions the verifier processed when it loaded the attachment's program.", []string{"attachment"}, nil)
	descProgMem = prometheus.NewDesc("leaf_program_memory_bytes",
		"Memory the attachment's program holds (the kernel's memlock accounting).", []string{"attachment"}, nil)
	descMapMem = prometheus.NewDesc("leaf_map_memory_bytes",
		"Memory a map of the attachment holds (the kernel's memlock accounting).", []string{"attachment", "map"}, nil)
	descMapEntries = prometheus.NewDesc("leaf_map_entries",
		"Entries in a hash or LRU map of the attachment (with leaf_map_max_entries: its fill level).", []string{"attachment", "map"}, nil)
	descMapMax = prometheus.NewDesc("leaf_map_max_entries",
		"Capacity of a hash or LRU map of the attachment.", []string{"attachment", "map"}, nil)
)

// objectsCollector exports, per attachment, program and map figures and
// the metrics its package declares, all read from the kernel at scrape
// time. Label values are bounded: attachment names, map names, and the
// keys of maps a package declared by-key metrics for (bounded by the
// map's size).
type objectsCollector struct {
	src ObjectsSource

	mu sync.Mutex
	// rates holds the last sample of every rate series.
	rates map[string]rateSample
}

type rateSample struct {
	value uint64
	at    time.Time
	rate  float64
	ok    bool
}

// rateWindow is the least time between two samples a rate is computed
// from; scrapes closer together see the previous rate.
const rateWindow = time.Second

// Describe sends nothing: declared metrics are known only at scrape time,
// which makes this an unchecked collector.
func (c *objectsCollector) Describe(chan<- *prometheus.Desc) {}

func (c *objectsCollector) Collect(ch chan<- prometheus.Metric) {
	objs, err := c.src.Objects()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descVerified, err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	families := map[string]string{} // name → label signature, so versions never clash
	for _, o := range objs {
		c.program(ch, o)
		c.maps(ch, o)
		for _, m := range o.Metrics {
			c.declared(ch, o, m, families, seen)
		}
	}
	for k := range c.rates {
		if !seen[k] {
			delete(c.rates, k)
		}
	}
}

func (c *objectsCollector) program(ch chan<- prometheus.Metric, o reconciler.Objects) {
	prog, err := ebpf.NewProgramFromID(o.ProgramID)
	if err != nil {
		return
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return
	}
	if n, ok := info.VerifiedInstructions(); ok {
		ch <- prometheus.MustNewConstMetric(descVerified, prometheus.GaugeValue, float64(n), o.Attachment)
	}
	if n, ok := info.Memlock(); ok {
		ch <- prometheus.MustNewConstMetric(descProgMem, prometheus.GaugeValue, float64(n), o.Attachment)
	}
}

func (c *objectsCollector) maps(ch chan<- prometheus.Metric, o reconciler.Objects) {
	for _, name := range sortedMapNames(o.Maps) {
		m, err := ebpf.LoadPinnedMap(o.Maps[name], &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			continue
		}
		if info, err := m.Info(); err == nil {
			if n, ok := info.Memlock(); ok {
				ch <- prometheus.MustNewConstMetric(descMapMem, prometheus.GaugeValue, float64(n), o.Attachment, name)
			}
		}
		if hashLike(m.Type()) {
			ch <- prometheus.MustNewConstMetric(descMapEntries, prometheus.GaugeValue, float64(countKeys(m)), o.Attachment, name)
			ch <- prometheus.MustNewConstMetric(descMapMax, prometheus.GaugeValue, float64(m.MaxEntries()), o.Attachment, name)
		}
		m.Close()
	}
}

// declared exports one metric a package declared, for one attachment.
func (c *objectsCollector) declared(ch chan<- prometheus.Metric, o reconciler.Objects, d manifest.Metric, families map[string]string, seen map[string]bool) {
	path, ok := o.Maps[d.Map]
	if !ok {
		return // not this program's map
	}
	name := manifest.MetricName(o.Package, d.Name)
	labels := []string{"attachment"}
	if d.ByKey != "" {
		labels = append(labels, d.ByKey)
	}
	sig := d.Type + fmt.Sprint(labels)
	if prev, ok := families[name]; ok && prev != sig {
		return // another version of the package declares it differently
	}
	families[name] = sig
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return
	}
	defer m.Close()
	values, err := readValues(m, d)
	if err != nil {
		return
	}
	desc := prometheus.NewDesc(name, d.Help, labels, nil)
	if d.Type == manifest.MetricHistogram {
		ch <- histogram(desc, d, values, o.Attachment)
		return
	}
	for _, k := range sortedKeys(values) {
		v := values[k]
		if d.SkipZero && v == 0 {
			continue
		}
		lv := []string{o.Attachment}
		if d.ByKey != "" {
			lv = append(lv, keyLabel(d.KeyFormat, k, m.KeySize()))
		}
		switch d.Type {
		case manifest.MetricCounter:
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), lv...)
		case manifest.MetricGauge:
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v), lv...)
		case manifest.MetricRate:
			id := name + fmt.Sprint(lv)
			seen[id] = true
			if r, ok := c.rate(id, v); ok {
				ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, r, lv...)
			}
		}
	}
}

// rate turns successive samples of a counter into a per-second rate. The
// first sample gives none; a counter that went down (a reload without
// carried-over maps) starts again from zero.
func (c *objectsCollector) rate(id string, v uint64) (float64, bool) {
	if c.rates == nil {
		c.rates = map[string]rateSample{}
	}
	now := time.Now()
	prev, ok := c.rates[id]
	if !ok {
		c.rates[id] = rateSample{value: v, at: now}
		return 0, false
	}
	dt := now.Sub(prev.at)
	if dt < rateWindow {
		return prev.rate, prev.ok
	}
	delta := float64(v)
	if v >= prev.value {
		delta = float64(v - prev.value)
	}
	r := delta / dt.Seconds()
	c.rates[id] = rateSample{value: v, at: now, rate: r, ok: true}
	return r, true
}

// readValues reads what a metric needs: one key, every key (by key or to
// sum, returned under key 0), or a histogram's bucket keys.
func readValues(m *ebpf.Map, d manifest.Metric) (map[uint64]uint64, error) {
	switch {
	case d.Key != nil:
		v, err := lookup(m, *d.Key)
		if err != nil {
			return nil, err
		}
		return map[uint64]uint64{*d.Key: v}, nil
	case d.Type == manifest.MetricHistogram, d.ByKey != "":
		return readAll(m)
	}
	all, err := readAll(m)
	if err != nil {
		return nil, err
	}
	var sum uint64
	for _, v := range all {
		sum += v
	}
	return map[uint64]uint64{0: sum}, nil
}

func histogram(desc *prometheus.Desc, d manifest.Metric, values map[uint64]uint64, attachment string) prometheus.Metric {
	buckets := map[float64]uint64{}
	var cum uint64
	for i, bound := range d.Buckets {
		cum += values[uint64(i)]
		buckets[bound] = cum
	}
	count := cum + values[uint64(len(d.Buckets))]
	var sum float64
	if d.SumKey != nil {
		sum = float64(values[*d.SumKey])
	}
	return prometheus.MustNewConstHistogram(desc, count, sum, buckets, attachment)
}

// lookup reads one integer key, summing per-CPU values; a missing key of a
// hash map reads as 0.
func lookup(m *ebpf.Map, key uint64) (uint64, error) {
	k := nativeint.Bytes(key, int(m.KeySize()))
	if perCPU(m.Type()) {
		var vals [][]byte
		if err := m.Lookup(k, &vals); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				return 0, nil
			}
			return 0, err
		}
		var sum uint64
		for _, v := range vals {
			sum += nativeint.Uint(v)
		}
		return sum, nil
	}
	var v []byte
	if err := m.Lookup(k, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return 0, nil
		}
		return 0, err
	}
	return nativeint.Uint(v), nil
}

// readAll reads every key of the map (at most its capacity).
func readAll(m *ebpf.Map) (map[uint64]uint64, error) {
	out := map[uint64]uint64{}
	var key []byte
	it := m.Iterate()
	if perCPU(m.Type()) {
		var vals [][]byte
		for len(out) <= int(m.MaxEntries()) && it.Next(&key, &vals) {
			var sum uint64
			for _, v := range vals {
				sum += nativeint.Uint(v)
			}
			out[nativeint.Uint(key)] = sum
		}
	} else {
		var val []byte
		for len(out) <= int(m.MaxEntries()) && it.Next(&key, &val) {
			out[nativeint.Uint(key)] = nativeint.Uint(val)
		}
	}
	return out, it.Err()
}

// countKeys counts a map's keys, walking at most its capacity.
func countKeys(m *ebpf.Map) int {
	cur := make([]byte, m.KeySize())
	next := make([]byte, m.KeySize())
	n := 0
	var at any // nil: start from the first key
	for n <= int(m.MaxEntries()) {
		if err := m.NextKey(at, next); err != nil {
			break
		}
		n++
		copy(cur, next)
		at = cur
	}
	return n
}

// keyLabel shows a key in the metric's keyFormat; decimal by default.
func keyLabel(format string, key uint64, size uint32) string {
	if format == "" {
		return strconv.FormatUint(key, 10)
	}
	return manifest.Format(format, nativeint.Bytes(key, int(size)))
}

func perCPU(t ebpf.MapType) bool {
	switch t {
	case ebpf.PerCPUHash, ebpf.PerCPUArray, ebpf.LRUCPUHash:
		return true
	}
	return false
}

func hashLike(t ebpf.MapType) bool {
	switch t {
	case ebpf.Hash, ebpf.PerCPUHash, ebpf.LRUHash, ebpf.LRUCPUHash:
		return true
	}
	return false
}

func sortedMapNames(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedKeys(m map[uint64]uint64) []uint64 {
	out := make([]uint64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
