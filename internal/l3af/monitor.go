package l3af

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/nativeint"
)

// DefaultPollInterval is how often monitor_maps are sampled (l3afd's
// metrics poll interval), and DefaultIntervals how many samples max-rate
// and avg span (l3afd's n-metric-samples).
const (
	DefaultPollInterval = 30 * time.Second
	DefaultIntervals    = 20
)

// direction is l3afd's direction label of a hook.
var direction = map[string]string{HookXDPIngress: "xdpingress", HookTCIngress: "ingress", HookTCEgress: "egress"}

// sampled is one monitored map key's recent samples.
type sampled struct {
	last    float64
	hasLast bool
	ring    []float64
	value   float64
}

// add takes a sample and computes the aggregate as l3afd does: scalar is
// the value; max-rate the largest change between two samples in the
// window; avg the mean of the window's values.
func (s *sampled) add(agg string, v float64, n int) {
	switch agg {
	case AggScalar:
		s.value = v
		return
	case AggMaxRate:
		if !s.hasLast {
			s.last, s.hasLast = v, true
			return
		}
		d := v - s.last
		if d < 0 {
			d = -d
		}
		s.last = v
		s.ring = append(s.ring, d)
	case AggAvg:
		s.ring = append(s.ring, v)
	}
	if len(s.ring) > n {
		s.ring = s.ring[len(s.ring)-n:]
	}
	s.value = 0
	for _, x := range s.ring {
		if agg == AggMaxRate {
			s.value = max(s.value, x)
		} else {
			s.value += x / float64(len(s.ring))
		}
	}
}

// monitor holds the samples and the lifecycle counters l3afd exports.
type monitor struct {
	mu      sync.Mutex
	samples map[string]*sampled
	counts  map[[3]string]float64 // {kind, attachment program, direction/iface}
	started map[string]time.Time
}

// Sample reads every monitored map once.
func (s *Service) Sample() {
	cfg, err := configOf(s.engine.Desired())
	if err != nil {
		return
	}
	s.mon.mu.Lock()
	defer s.mon.mu.Unlock()
	if s.mon.samples == nil {
		s.mon.samples = map[string]*sampled{}
	}
	live := map[string]bool{}
	for _, e := range cfg.entries() {
		if skip(e.prog) {
			continue
		}
		att := AttachmentName(e.iface, e.hook, e.prog.Name)
		for _, mm := range e.prog.MonitorMaps {
			id := sampleID(att, mm)
			live[id] = true
			v, err := s.readMap(att, mm.Name, uint64(mm.Key))
			if err != nil {
				continue
			}
			sp := s.mon.samples[id]
			if sp == nil {
				sp = &sampled{}
				s.mon.samples[id] = sp
			}
			sp.add(mm.Aggregator, v, s.intervals())
		}
	}
	for id := range s.mon.samples {
		if !live[id] {
			delete(s.mon.samples, id)
		}
	}
}

func sampleID(att string, mm MonitorMap) string {
	return att + "\x00" + mm.Name + "\x00" + strconv.Itoa(mm.Key) + "\x00" + mm.Aggregator
}

func (s *Service) intervals() int {
	if s.opts.Intervals > 0 {
		return s.opts.Intervals
	}
	return DefaultIntervals
}

// Run samples the monitored maps every poll interval until ctx ends. It
// first creates monitored keys that are missing, as l3afd does when it
// loads a program: after leafd starts from a stored or imported state,
// or after a program was put back, the program counts again.
func (s *Service) Run(ctx context.Context) {
	every := s.opts.PollInterval
	if every <= 0 {
		every = DefaultPollInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if cfg, err := configOf(s.engine.Desired()); err == nil {
			s.ensureMonitorKeys(cfg)
		}
		s.Sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readMap reads one key of an attachment's pinned map as an unsigned
// integer, summed over CPUs for per-CPU maps.
func (s *Service) readMap(att, name string, key uint64) (float64, error) {
	m, err := ebpf.LoadPinnedMap(s.opts.MapPin(att, name), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer m.Close()
	k, err := encodeKey(key, m.KeySize())
	if err != nil {
		return 0, err
	}
	switch m.Type() {
	case ebpf.PerCPUArray, ebpf.PerCPUHash, ebpf.LRUCPUHash:
		var vals [][]byte
		if err := m.Lookup(k, &vals); err != nil {
			return 0, err
		}
		var sum float64
		for _, v := range vals {
			sum += float64(nativeint.Uint(v))
		}
		return sum, nil
	}
	v := make([]byte, m.ValueSize())
	if err := m.Lookup(k, &v); err != nil {
		return 0, err
	}
	return float64(nativeint.Uint(v)), nil
}

// ensureMonitorKeys creates the monitored keys a hash map lacks, with
// value 0, as l3afd does when it loads a program: programs that only
// count into existing entries count from then on. It never overwrites.
func (s *Service) ensureMonitorKeys(cfg Config) []string {
	var notes []string
	for _, e := range cfg.entries() {
		if skip(e.prog) {
			continue
		}
		att := AttachmentName(e.iface, e.hook, e.prog.Name)
		for _, mm := range e.prog.MonitorMaps {
			if err := s.ensureKey(att, mm.Name, uint64(mm.Key)); err != nil {
				notes = append(notes, fmt.Sprintf("%s: monitor_maps %s key %d: %v", e.label(), mm.Name, mm.Key, err))
			}
		}
	}
	return notes
}

func (s *Service) ensureKey(att, name string, key uint64) error {
	m, err := ebpf.LoadPinnedMap(s.opts.MapPin(att, name), nil)
	if err != nil {
		return fmt.Errorf("no such map in the program's object: %w", err)
	}
	defer m.Close()
	switch m.Type() {
	case ebpf.Hash, ebpf.LRUHash:
	default:
		return nil // arrays hold every key; other maps are not created into
	}
	k, err := encodeKey(key, m.KeySize())
	if err != nil {
		return err
	}
	err = m.Update(k, make([]byte, m.ValueSize()), ebpf.UpdateNoExist)
	if errors.Is(err, ebpf.ErrKeyExist) {
		return nil
	}
	return err
}

func encodeKey(key uint64, size uint32) ([]byte, error) {
	switch size {
	case 1, 2, 4, 8:
		return nativeint.Bytes(key, int(size)), nil
	}
	return nil, fmt.Errorf("key size %d: monitor_maps reads integer keys of 1, 2, 4 or 8 bytes", size)
}

// counted records the lifecycle of L3AF programs from an apply's actions,
// as l3afd's BPFStartCount, BPFStopCount and BPFUpdateCount count them.
func (s *Service) counted(before, after Config, res *v1.ApplyResult) {
	where := map[string]entry{}
	for _, e := range append(before.entries(), after.entries()...) {
		where[AttachmentName(e.iface, e.hook, e.prog.Name)] = e
	}
	s.mon.mu.Lock()
	defer s.mon.mu.Unlock()
	if s.mon.counts == nil {
		s.mon.counts = map[[3]string]float64{}
		s.mon.started = map[string]time.Time{}
	}
	for _, a := range res.Actions {
		e, ok := where[a.Attachment]
		if !ok {
			continue
		}
		id := [3]string{"", e.prog.Name, direction[e.hook] + "\x00" + e.iface}
		switch a.Kind {
		case "create":
			id[0] = "start"
			s.mon.started[a.Attachment] = time.Now()
		case "delete":
			id[0] = "stop"
			delete(s.mon.started, a.Attachment)
		case "replace", "update-params":
			id[0] = "update"
		default:
			continue
		}
		s.mon.counts[id]++
	}
}

// Collector exports l3afd's metrics under l3afd's names and labels, so
// dashboards built on l3afd keep working, and the monitored values as
// leaf metrics.
func (s *Service) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Service }

var (
	hostLabels   = []string{"host", "ebpf_program", "direction", "interface_name", "ipv4_address"}
	descStart    = prometheus.NewDesc("l3afd_BPFStartCount", "The count of BPF program started", hostLabels, nil)
	descStop     = prometheus.NewDesc("l3afd_BPFStopCount", "The count of BPF program stopped", hostLabels, nil)
	descUpdate   = prometheus.NewDesc("l3afd_BPFUpdateCount", "The count of BPF programs updated", hostLabels, nil)
	descRunning  = prometheus.NewDesc("l3afd_BPFRunning", "This value indicates BPF program is running or not", []string{"host", "ebpf_program", "version", "direction", "interface_name", "ipv4_address"}, nil)
	descStarted  = prometheus.NewDesc("l3afd_BPFStartTime", "This value indicates start time of the BPF program since unix epoch in seconds", hostLabels, nil)
	descMonitor  = prometheus.NewDesc("l3afd_BPFMonitorMap", "This value indicates BPF program monitor counters", []string{"host", "ebpf_program", "map_name", "interface_name", "ipv4_address"}, nil)
	descLeafMMap = prometheus.NewDesc("leaf_l3af_monitor_map_value", "An L3AF program's monitor_maps value, aggregated as l3afd does (scalar, max-rate, avg).", []string{"attachment", "map", "key", "aggregator"}, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStart, descStop, descUpdate, descRunning, descStarted, descMonitor, descLeafMMap} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	cfg, err := configOf(s.engine.Desired())
	if err != nil {
		return
	}
	host := s.opts.HostName
	ipv4 := map[string]string{}
	for _, h := range cfg {
		ipv4[h.Iface] = h.IPv4Address
	}
	s.mon.mu.Lock()
	defer s.mon.mu.Unlock()
	for id, n := range s.mon.counts {
		dir, iface, _ := strings.Cut(id[2], "\x00")
		desc := map[string]*prometheus.Desc{"start": descStart, "stop": descStop, "update": descUpdate}[id[0]]
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, n, host, id[1], dir, iface, ipv4[iface])
	}
	for _, e := range cfg.entries() {
		if skip(e.prog) {
			continue
		}
		att := AttachmentName(e.iface, e.hook, e.prog.Name)
		ch <- prometheus.MustNewConstMetric(descRunning, prometheus.GaugeValue, 1, host, e.prog.Name, e.prog.Version, direction[e.hook], e.iface, ipv4[e.iface])
		if t, ok := s.mon.started[att]; ok {
			ch <- prometheus.MustNewConstMetric(descStarted, prometheus.GaugeValue, float64(t.Unix()), host, e.prog.Name, direction[e.hook], e.iface, ipv4[e.iface])
		}
		for _, mm := range e.prog.MonitorMaps {
			sp := s.mon.samples[sampleID(att, mm)]
			if sp == nil {
				continue
			}
			key := strconv.Itoa(mm.Key)
			ch <- prometheus.MustNewConstMetric(descMonitor, prometheus.GaugeValue, sp.value, host, e.prog.Name, mm.Name+"_"+key+"_"+mm.Aggregator, e.iface, ipv4[e.iface])
			ch <- prometheus.MustNewConstMetric(descLeafMMap, prometheus.GaugeValue, sp.value, att, mm.Name, key, mm.Aggregator)
		}
	}
}
