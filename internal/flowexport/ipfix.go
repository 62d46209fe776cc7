// Package flowexport reads the flow table of the flowexport package
// (packages/flowexport) and exports its flows as IPFIX (RFC 7011) over
// UDP, with active and idle timeouts (RFC 5470 section 5.1.1).
package flowexport

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// Record is one flow's counts since its previous record.
type Record struct {
	Src, Dst     netip.Addr
	Sport, Dport uint16
	Proto        uint8
	Packets      uint64
	Bytes        uint64
	Start, End   time.Time
	Reason       uint8 // flowEndReason
}

// flowEndReason values (IANA IPFIX information element 136).
const (
	ReasonIdle   = 1
	ReasonActive = 2
	ReasonForced = 4
)

// Template IDs (data set IDs are at least 256).
const (
	template4 = 256
	template6 = 257
)

// Information elements of the records, in order: (ID, length); the
// address elements depend on the family.
var commonFields = [][2]uint16{
	{7, 2},   // sourceTransportPort
	{11, 2},  // destinationTransportPort
	{4, 1},   // protocolIdentifier
	{2, 8},   // packetDeltaCount
	{1, 8},   // octetDeltaCount
	{152, 8}, // flowStartMilliseconds
	{153, 8}, // flowEndMilliseconds
	{136, 1}, // flowEndReason
}

func fields(v6 bool) [][2]uint16 {
	addr := [][2]uint16{{8, 4}, {12, 4}} // sourceIPv4Address, destinationIPv4Address
	if v6 {
		addr = [][2]uint16{{27, 16}, {28, 16}} // sourceIPv6Address, destinationIPv6Address
	}
	return append(addr, commonFields...)
}

func recordLen(v6 bool) int {
	n := 0
	for _, f := range fields(v6) {
		n += int(f[1])
	}
	return n
}

// templateSet encodes the template set describing both record layouts.
func templateSet() []byte {
	var b []byte
	b = binary.BigEndian.AppendUint16(b, 2) // template set
	b = binary.BigEndian.AppendUint16(b, 0) // length, below
	for _, t := range []struct {
		id uint16
		v6 bool
	}{{template4, false}, {template6, true}} {
		fs := fields(t.v6)
		b = binary.BigEndian.AppendUint16(b, t.id)
		b = binary.BigEndian.AppendUint16(b, uint16(len(fs)))
		for _, f := range fs {
			b = binary.BigEndian.AppendUint16(b, f[0])
			b = binary.BigEndian.AppendUint16(b, f[1])
		}
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

func appendRecord(b []byte, r Record) []byte {
	b = append(b, r.Src.AsSlice()...)
	b = append(b, r.Dst.AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, r.Sport)
	b = binary.BigEndian.AppendUint16(b, r.Dport)
	b = append(b, r.Proto)
	b = binary.BigEndian.AppendUint64(b, r.Packets)
	b = binary.BigEndian.AppendUint64(b, r.Bytes)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Start.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.End.UnixMilli()))
	return append(b, r.Reason)
}

// Encoder turns records into IPFIX messages that fit one datagram.
type Encoder struct {
	Domain uint32 // observation domain ID
	// MaxMessage bounds a message's size (default 1400 bytes, under a
	// 1500-byte MTU).
	MaxMessage int
	seq        uint32 // data records sent so far, mod 2^32 (RFC 7011 3.1)
}

// Encode returns the messages carrying recs. Every message starts with
// the template set: over UDP a collector may have missed or dropped
// earlier ones (RFC 7011 8.4 asks for periodic resending).
func (e *Encoder) Encode(recs []Record, now time.Time) [][]byte {
	limit := e.MaxMessage
	if limit == 0 {
		limit = 1400
	}
	var byFamily [2][]Record
	for _, r := range recs {
		if r.Src.Is6() {
			byFamily[1] = append(byFamily[1], r)
		} else {
			byFamily[0] = append(byFamily[0], r)
		}
	}
	var out [][]byte
	for {
		msg := append(e.header(now), templateSet()...)
		count := 0
		for fam, ids := range [2]uint16{template4, template6} {
			v6 := fam == 1
			set := -1
			for len(byFamily[fam]) > 0 && len(msg)+recordLen(v6)+4 <= limit {
				if set < 0 {
					set = len(msg)
					msg = binary.BigEndian.AppendUint16(msg, ids)
					msg = binary.BigEndian.AppendUint16(msg, 0)
				}
				msg = appendRecord(msg, byFamily[fam][0])
				byFamily[fam] = byFamily[fam][1:]
				count++
			}
			if set >= 0 {
				binary.BigEndian.PutUint16(msg[set+2:], uint16(len(msg)-set))
			}
		}
		binary.BigEndian.PutUint16(msg[2:], uint16(len(msg)))
		e.seq += uint32(count)
		out = append(out, msg)
		if len(byFamily[0])+len(byFamily[1]) == 0 || count == 0 {
			return out
		}
	}
}

func (e *Encoder) header(now time.Time) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint16(b[0:], 10) // version
	binary.BigEndian.PutUint32(b[4:], uint32(now.Unix()))
	binary.BigEndian.PutUint32(b[8:], e.seq)
	binary.BigEndian.PutUint32(b[12:], e.Domain)
	return b
}
