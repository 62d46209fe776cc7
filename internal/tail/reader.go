package tail

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/perf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/prometheus/client_golang/prometheus"
)

// Reader reads raw records from one ring buffer or perf event array.
type Reader struct {
	rb        *ringbuf.Reader
	perf      *perf.Reader
	closeOnce sync.Once
	closeErr  error
}

// perfBuffer is the per-CPU buffer of a perf event array reader.
const perfBuffer = 64 << 10

// Open makes a reader over m (which it does not close). A ring buffer has
// one consumer position: records read here are not seen by another
// reader of the same map (a companion, say).
func Open(m *ebpf.Map) (*Reader, error) {
	switch m.Type() {
	case ebpf.RingBuf:
		rb, err := ringbuf.NewReader(m)
		if err != nil {
			return nil, err
		}
		return &Reader{rb: rb}, nil
	case ebpf.PerfEventArray:
		pr, err := perf.NewReader(m, perfBuffer)
		if err != nil {
			return nil, err
		}
		return &Reader{perf: pr}, nil
	}
	return nil, fmt.Errorf("map is a %s; leaf tail reads ring buffers and perf event arrays", m.Type())
}

// ErrDeadline is returned by Read when the deadline passes first.
var ErrDeadline = os.ErrDeadlineExceeded

// Read waits for the next record until deadline. It returns either a
// record (raw not nil) or, from a perf buffer, a count of records the
// kernel dropped because the buffer was full (raw nil, lost > 0). Ring
// buffers drop in the program, which sees bpf_ringbuf_output fail.
func (r *Reader) Read(deadline time.Time) (raw []byte, lost uint64, err error) {
	if r.rb != nil {
		r.rb.SetDeadline(deadline)
		rec, err := r.rb.Read()
		if err == nil && rec.RawSample == nil {
			rec.RawSample = []byte{} // an empty record is still a record
		}
		return rec.RawSample, 0, err
	}
	r.perf.SetDeadline(deadline)
	rec, err := r.perf.Read()
	if err != nil {
		return nil, 0, err
	}
	if rec.LostSamples > 0 {
		// A PERF_RECORD_LOST notice, not a record.
		return nil, rec.LostSamples, nil
	}
	return rec.RawSample, 0, nil
}

// Close releases the reader; a Read in progress returns.
func (r *Reader) Close() error {
	r.closeOnce.Do(func() {
		if r.rb != nil {
			r.closeErr = r.rb.Close()
		} else {
			r.closeErr = r.perf.Close()
		}
	})
	return r.closeErr
}

// Stats counts the records tails read and lost, per attachment and map,
// and allows one tail per map at a time (a second would steal records
// from the first).
type Stats struct {
	records, lost *prometheus.CounterVec
	mu            sync.Mutex
	busy          map[string]bool
}

// NewStats makes the counters; register Stats with a prometheus registry.
func NewStats() *Stats {
	return &Stats{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaf_tail_records_total",
			Help: "Records leaf tail read from ring and perf buffers, per attachment and map.",
		}, []string{"attachment", "map"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaf_tail_lost_records_total",
			Help: "Records lost while leaf tail read: dropped by the kernel (perf buffer full) or by leafd (the client read too slowly), per attachment and map.",
		}, []string{"attachment", "map"}),
		busy: map[string]bool{},
	}
}

// Describe implements prometheus.Collector.
func (s *Stats) Describe(ch chan<- *prometheus.Desc) {
	s.records.Describe(ch)
	s.lost.Describe(ch)
}

// Collect implements prometheus.Collector.
func (s *Stats) Collect(ch chan<- prometheus.Metric) {
	s.records.Collect(ch)
	s.lost.Collect(ch)
}

// ErrBusy: the map is being tailed already.
var ErrBusy = errors.New("the map is being tailed already")

// Acquire reserves attachment/map for one tail; release frees it.
func (s *Stats) Acquire(attachment, m string) (release func(), err error) {
	key := attachment + "/" + m
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy[key] {
		return nil, fmt.Errorf("%w: %s map %s", ErrBusy, attachment, m)
	}
	s.busy[key] = true
	// Both series exist from the first tail on, so that no losses reads
	// as 0 rather than as an absent metric.
	s.records.WithLabelValues(attachment, m)
	s.lost.WithLabelValues(attachment, m)
	return func() {
		s.mu.Lock()
		delete(s.busy, key)
		s.mu.Unlock()
	}, nil
}

// Count adds read and lost records.
func (s *Stats) Count(attachment, m string, read, lost uint64) {
	if read > 0 {
		s.records.WithLabelValues(attachment, m).Add(float64(read))
	}
	if lost > 0 {
		s.lost.WithLabelValues(attachment, m).Add(float64(lost))
	}
}

// Options bound one tail.
type Options struct {
	// Max records, then the tail ends.
	Max int
	// For is how long the tail runs at most.
	For time.Duration
}

// Limits on Options.
const (
	DefaultMax = 100
	MaxRecords = 100000
	DefaultFor = 10 * time.Second
	MaxFor     = time.Hour
	// queue is how many decoded records wait for a slow client before
	// newer ones are dropped (and counted lost).
	queue = 1024
)
