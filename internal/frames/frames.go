// Package frames builds Ethernet frames (IPv4 or IPv6, TCP, UDP or ICMP)
// for BPF_PROG_TEST_RUN, the way a NIC would hand them to XDP or TC. They
// are padded to at least 64 bytes; checksums are left zero, which programs
// that classify packets never read.
package frames

import (
	"encoding/binary"
	"net/netip"
)

// Protocol numbers.
const (
	ICMP   = 1
	TCP    = 6
	UDP    = 17
	ICMPv6 = 58
)

// TCP flags.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	ACK = 0x10
)

// Packet describes one frame.
type Packet struct {
	Src, Dst     netip.Addr // both IPv4 or both IPv6
	Proto        uint8
	Sport, Dport uint16
	TCPFlags     uint8 // for TCP; 0 means SYN|ACK-less ACK
	Payload      int   // bytes after the L4 header
}

// Build returns the frame.
func (p Packet) Build() []byte {
	l4 := p.l4()
	var b []byte
	b = append(b, 0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1)
	if p.Src.Is4() {
		b = binary.BigEndian.AppendUint16(b, 0x0800)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		ip[8] = 64
		ip[9] = p.Proto
		s, d := p.Src.As4(), p.Dst.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		b = append(append(b, ip...), l4...)
	} else {
		b = binary.BigEndian.AppendUint16(b, 0x86dd)
		ip := make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
		ip[6] = p.Proto
		ip[7] = 64
		s, d := p.Src.As16(), p.Dst.As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
		b = append(append(b, ip...), l4...)
	}
	for len(b) < 64 {
		b = append(b, 0)
	}
	return b
}

func (p Packet) l4() []byte {
	var h []byte
	switch p.Proto {
	case TCP:
		h = make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:], p.Sport)
		binary.BigEndian.PutUint16(h[2:], p.Dport)
		h[12] = 5 << 4
		h[13] = p.TCPFlags
		if p.TCPFlags == 0 {
			h[13] = ACK
		}
	case UDP:
		h = make([]byte, 8)
		binary.BigEndian.PutUint16(h[0:], p.Sport)
		binary.BigEndian.PutUint16(h[2:], p.Dport)
		binary.BigEndian.PutUint16(h[4:], uint16(8+p.Payload))
	default:
		h = make([]byte, 8) // ICMP echo request header
		h[0] = 8
		if p.Proto == ICMPv6 {
			h[0] = 128
		}
	}
	return append(h, make([]byte, p.Payload)...)
}
