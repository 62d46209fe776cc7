package flowexport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// flowKey mirrors struct flow_key in flowexport.bpf.c; flowValue struct
// flow (TestLayoutMatchesObject checks both against the object's BTF).
type flowKey struct {
	Saddr, Daddr [4]uint32
	Sport, Dport uint16
	Proto        uint8
	Family       uint8
	Pad          uint16
}

type flowValue struct {
	Packets, Bytes  uint64
	FirstNs, LastNs uint64
}

// exported is what the previous records of a flow carried.
type exported struct {
	packets, bytes uint64
	lastExport     uint64 // monotonic ns
}

// Exporter polls a flow map and sends IPFIX records to a collector.
type Exporter struct {
	Flows  *ebpf.Map
	Conn   net.Conn // a connected UDP socket to the collector
	Active time.Duration
	Idle   time.Duration
	Enc    Encoder

	state map[flowKey]exported
}

// Poll reads every flow once: a flow idle for Idle gets its last record
// and leaves the map; a flow exported (or started) Active ago gets a
// record of what it did since. It returns how many records it sent.
func (e *Exporter) Poll() (int, error) {
	if e.state == nil {
		e.state = map[flowKey]exported{}
	}
	mono, wall := clocks()
	var recs []Record
	var idle []flowKey
	seen := map[flowKey]bool{}
	var k flowKey
	var v flowValue
	it := e.Flows.Iterate()
	for it.Next(&k, &v) {
		seen[k] = true
		st, ok := e.state[k]
		if !ok {
			st.lastExport = v.FirstNs
		}
		var reason uint8
		switch {
		case mono-v.LastNs >= uint64(e.Idle):
			reason = ReasonIdle
			idle = append(idle, k)
		case mono-st.lastExport >= uint64(e.Active):
			reason = ReasonActive
		default:
			e.state[k] = st
			continue
		}
		if v.Packets > st.packets {
			recs = append(recs, record(k, v, st, mono, wall, reason))
		}
		e.state[k] = exported{packets: v.Packets, bytes: v.Bytes, lastExport: mono}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("read flows: %w", err)
	}
	for _, k := range idle {
		// Packets counted between the read and the delete are lost; at
		// most a poll interval's worth of an idle flow.
		if err := e.Flows.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return 0, fmt.Errorf("delete idle flow: %w", err)
		}
		delete(e.state, k)
	}
	// Flows the LRU evicted are gone; forget them.
	for k := range e.state {
		if !seen[k] {
			delete(e.state, k)
		}
	}
	return len(recs), e.send(recs, wall)
}

// Flush exports what every flow did since its last record, as forced
// ends, without touching the map (on shutdown).
func (e *Exporter) Flush() error {
	mono, wall := clocks()
	var recs []Record
	var k flowKey
	var v flowValue
	it := e.Flows.Iterate()
	for it.Next(&k, &v) {
		st := e.state[k]
		if v.Packets > st.packets {
			recs = append(recs, record(k, v, st, mono, wall, ReasonForced))
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	return e.send(recs, wall)
}

func (e *Exporter) send(recs []Record, now time.Time) error {
	if len(recs) == 0 {
		return nil
	}
	for _, msg := range e.Enc.Encode(recs, now) {
		if _, err := e.Conn.Write(msg); err != nil {
			return fmt.Errorf("send to collector: %w", err)
		}
	}
	return nil
}

func record(k flowKey, v flowValue, st exported, mono uint64, wall time.Time, reason uint8) Record {
	at := func(ns uint64) time.Time { return wall.Add(-time.Duration(mono - ns)) }
	return Record{
		Src: addr(k.Saddr, k.Family), Dst: addr(k.Daddr, k.Family),
		Sport: k.Sport, Dport: k.Dport, Proto: k.Proto,
		Packets: v.Packets - st.packets, Bytes: v.Bytes - st.bytes,
		Start: at(v.FirstNs), End: at(v.LastNs), Reason: reason,
	}
}

// addr turns words holding network-order bytes into an address.
func addr(w [4]uint32, family uint8) netip.Addr {
	var b [16]byte
	for i := range w {
		binary.NativeEndian.PutUint32(b[i*4:], w[i])
	}
	if family == 4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

// clocks returns CLOCK_MONOTONIC (what bpf_ktime_get_ns reads) and the
// wall clock, read together.
func clocks() (uint64, time.Time) {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano()), time.Now()
}
