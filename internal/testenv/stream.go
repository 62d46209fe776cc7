package testenv

import (
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"
)

// Stream sends numbered UDP datagrams from A to B at a steady rate until
// stopped, and records which sequence numbers arrived. It shows whether a
// change made while traffic flows lost or duplicated any packet.
type Stream struct {
	tx, rx *net.UDPConn
	period time.Duration

	mu       sync.Mutex
	sent     uint64
	received map[uint64]int
	stop     chan struct{}
	done     sync.WaitGroup
}

// StartStream starts sending to port every period.
func (p *Pair) StartStream(t testing.TB, port int, period time.Duration) *Stream {
	t.Helper()
	s := &Stream{tx: p.Dial(t, port), rx: p.Listen(t, port), period: period, received: map[uint64]int{}, stop: make(chan struct{})}
	s.rx.SetReadBuffer(4 << 20)
	s.done.Add(2)
	go s.send()
	go s.receive()
	t.Cleanup(func() { s.Stop() })
	return s
}

func (s *Stream) send() {
	defer s.done.Done()
	tick := time.NewTicker(s.period)
	defer tick.Stop()
	buf := make([]byte, 8)
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		s.mu.Lock()
		seq := s.sent
		s.sent++
		s.mu.Unlock()
		binary.BigEndian.PutUint64(buf, seq)
		s.tx.Write(buf)
	}
}

func (s *Stream) receive() {
	defer s.done.Done()
	buf := make([]byte, 64)
	for {
		s.rx.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := s.rx.Read(buf)
		if err != nil {
			select {
			case <-s.stop:
				return
			default:
				continue
			}
		}
		if n == 8 {
			s.mu.Lock()
			s.received[binary.BigEndian.Uint64(buf)]++
			s.mu.Unlock()
		}
	}
}

// Sent returns how many datagrams were sent so far.
func (s *Stream) Sent() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}

// Stop stops sending, waits for the last datagrams and returns the
// sequence numbers that were lost and those that arrived more than once.
func (s *Stream) Stop() (sent uint64, lost, dup []uint64) {
	select {
	case <-s.stop:
	default:
		// Stop sending first, then give the receiver time to drain.
		close(s.stop)
	}
	s.done.Wait()
	s.drain()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := uint64(0); i < s.sent; i++ {
		switch n := s.received[i]; {
		case n == 0:
			lost = append(lost, i)
		case n > 1:
			dup = append(dup, i)
		}
	}
	return s.sent, lost, dup
}

func (s *Stream) drain() {
	buf := make([]byte, 64)
	for {
		s.rx.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := s.rx.Read(buf)
		if err != nil {
			return
		}
		if n == 8 {
			s.mu.Lock()
			s.received[binary.BigEndian.Uint64(buf)]++
			s.mu.Unlock()
		}
	}
}
