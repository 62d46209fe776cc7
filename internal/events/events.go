// Package events is leafd's event log: a bounded, in-memory ring of
// events (applies, drifts, restores, foreign programs, companions) with
// sequence numbers that only grow, readable at once or followed as they
// come.
package events

import (
	"context"
	"sync"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
)

// DefaultCapacity is how many events the log keeps.
const DefaultCapacity = 1024

// Log is a bounded event log, safe for concurrent use.
type Log struct {
	mu   sync.Mutex
	ring []v1.Event // oldest first once full; see start
	// start indexes the oldest event in ring when it is full.
	start   int
	cap     int
	lastSeq uint64
	// changed is closed and replaced on every Add: followers wait on it.
	changed chan struct{}
	// observe is told about every event (metrics).
	observe func(v1.Event)
	now     func() time.Time
}

// New returns a log keeping the last capacity events. observe, if not
// nil, is called with every event added (outside the log's lock).
func New(capacity int, observe func(v1.Event)) *Log {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	return &Log{cap: capacity, changed: make(chan struct{}), observe: observe, now: time.Now}
}

// Add appends an event, setting its sequence number and time, and returns
// it.
func (l *Log) Add(e v1.Event) v1.Event {
	l.mu.Lock()
	l.lastSeq++
	e.Seq = l.lastSeq
	if e.Time.IsZero() {
		e.Time = l.now().UTC()
	}
	if len(l.ring) < l.cap {
		l.ring = append(l.ring, e)
	} else {
		l.ring[l.start] = e
		l.start = (l.start + 1) % l.cap
	}
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
	if l.observe != nil {
		l.observe(e)
	}
	return e
}

// Since returns the retained events with a sequence number above seq,
// oldest first.
func (l *Log) Since(seq uint64) []v1.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sinceLocked(seq)
}

func (l *Log) sinceLocked(seq uint64) []v1.Event {
	out := []v1.Event{}
	for i := range l.ring {
		e := l.ring[(l.start+i)%len(l.ring)]
		if e.Seq > seq {
			out = append(out, e)
		}
	}
	return out
}

// Wait returns the events after seq, blocking until there is at least one
// or ctx is done.
func (l *Log) Wait(ctx context.Context, seq uint64) ([]v1.Event, error) {
	for {
		l.mu.Lock()
		evs := l.sinceLocked(seq)
		ch := l.changed
		l.mu.Unlock()
		if len(evs) > 0 {
			return evs, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
}

// LastSeq is the sequence number of the newest event (0: none yet).
func (l *Log) LastSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastSeq
}
