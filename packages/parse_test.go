package packages_test

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/internal/firewall"
	"github.com/leaf-ebpf/leaf/internal/frames"
	"github.com/leaf-ebpf/leaf/internal/testenv"
	"github.com/leaf-ebpf/leaf/packages"
)

// The packet packages parse frames with include/leaf_parse.h. These tests
// run the compiled programs (BPF_PROG_TEST_RUN) over frames that take each
// of its branches: IPv4 options, fragments, IPv6 extension headers, VLAN
// tags, headers cut short at each boundary.

const (
	xdpDrop = 1
	xdpPass = 2
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	src4, dst4 = netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	src6, dst6 = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
)

func pkt(src, dst netip.Addr, proto uint8, dport uint16) []byte {
	return frames.Packet{Src: src, Dst: dst, Proto: proto, Sport: 40000, Dport: dport}.Build()
}

// Offsets in frames.Packet's frames.
const (
	ethLen   = 14
	ip4Len   = 20
	ip6Len   = 40
	l4Offset = ethLen + ip4Len
)

// splice inserts b at offset off.
func splice(f []byte, off int, b ...byte) []byte {
	return slices.Insert(slices.Clone(f), off, b...)
}

// ip4Options gives an IPv4 frame 4 bytes of options (NOPs): ihl 6.
func ip4Options(f []byte) []byte {
	f = splice(f, l4Offset, 1, 1, 1, 1)
	f[ethLen] = 0x46
	binary.BigEndian.PutUint16(f[ethLen+2:], binary.BigEndian.Uint16(f[ethLen+2:])+4)
	return f
}

// ip4Frag sets an IPv4 frame's flags and fragment offset field.
func ip4Frag(f []byte, fragOff uint16) []byte {
	f = slices.Clone(f)
	binary.BigEndian.PutUint16(f[ethLen+6:], fragOff)
	return f
}

// ip6Ext puts IPv6 extension headers of the given types (8 bytes each)
// between the fixed header and the transport header. A fragment header
// (44) carries fragOff, in 8-byte units.
func ip6Ext(f []byte, fragOff uint16, types ...uint8) []byte {
	next := f[ethLen+6]
	var exts []byte
	for i := len(types) - 1; i >= 0; i-- {
		h := make([]byte, 8)
		h[0] = next
		if types[i] == 44 {
			binary.BigEndian.PutUint16(h[2:], fragOff<<3)
		}
		exts = append(h, exts...)
		next = types[i]
	}
	f = splice(f, ethLen+ip6Len, exts...)
	f[ethLen+6] = next
	binary.BigEndian.PutUint16(f[ethLen+4:], binary.BigEndian.Uint16(f[ethLen+4:])+uint16(len(exts)))
	return f
}

// vlan tags a frame with 802.1Q VLAN 5.
func vlan(f []byte) []byte { return splice(f, 12, 0x81, 0x00, 0x00, 0x05) }

func load(t *testing.T, name string) *ebpf.Collection {
	t.Helper()
	testenv.RequireKernel(t)
	spec, err := packages.Spec(name)
	if err != nil {
		t.Fatal(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	t.Cleanup(coll.Close)
	return coll
}

type verdictCase struct {
	name  string
	frame []byte
	want  uint32
}

func runCases(t *testing.T, prog *ebpf.Program, cases []verdictCase) {
	t.Helper()
	for _, c := range cases {
		got, err := prog.Run(&ebpf.RunOptions{Data: c.frame})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got != c.want {
			t.Errorf("%s (%d bytes): verdict %d, want %d", c.name, len(c.frame), got, c.want)
		}
	}
}

// TestParseThroughPortfilter: portfilter drops what leaf_parse_ip and
// leaf_has_l4 accept as TCP or UDP to a blocked port, and passes the rest.
func TestParseThroughPortfilter(t *testing.T) {
	coll := load(t, "portfilter")
	if err := coll.Maps["blocked_ports"].Put(uint16(9000), uint8(1)); err != nil {
		t.Fatal(err)
	}
	udp4, tcp4 := pkt(src4, dst4, frames.UDP, 9000), pkt(src4, dst4, frames.TCP, 9000)
	udp6, tcp6 := pkt(src6, dst6, frames.UDP, 9000), pkt(src6, dst6, frames.TCP, 9000)
	ihl4 := slices.Clone(udp4)
	ihl4[ethLen] = 0x44
	arp := make([]byte, 64)
	arp[12], arp[13] = 0x08, 0x06
	runCases(t, coll.Programs["xdp_port_filter"], []verdictCase{
		{"IPv4 UDP", udp4, xdpDrop},
		{"IPv4 TCP", tcp4, xdpDrop},
		{"IPv4 UDP to another port", pkt(src4, dst4, frames.UDP, 9001), xdpPass},
		{"IPv4 ICMP", pkt(src4, dst4, frames.ICMP, 0), xdpPass},
		{"IPv4 with options", ip4Options(udp4), xdpDrop},
		{"IPv4 ihl 4", ihl4, xdpPass},
		{"IPv4 first fragment", ip4Frag(udp4, 0x2000), xdpDrop},
		{"IPv4 don't fragment", ip4Frag(udp4, 0x4000), xdpDrop},
		{"IPv4 later fragment", ip4Frag(udp4, 0x2003), xdpPass},
		{"IPv6 UDP", udp6, xdpDrop},
		{"IPv6 TCP", tcp6, xdpDrop},
		{"IPv6 behind hop-by-hop (not walked)", ip6Ext(udp6, 0, 0), xdpPass},
		{"VLAN-tagged IPv4", vlan(udp4), xdpPass},
		{"ARP", arp, xdpPass},
		{"Ethernet header only", udp4[:ethLen], xdpPass},
		{"IPv4 header cut short", udp4[:l4Offset-1], xdpPass},
		{"IPv4 options cut short", ip4Options(udp4)[:l4Offset+3], xdpPass},
		{"UDP header whole", udp4[:l4Offset+8], xdpDrop},
		{"UDP header cut short", udp4[:l4Offset+7], xdpPass},
		{"TCP header whole", tcp4[:l4Offset+20], xdpDrop},
		{"TCP header cut short", tcp4[:l4Offset+19], xdpPass},
		{"IPv6 header cut short", udp6[:ethLen+ip6Len-1], xdpPass},
		{"IPv6 UDP header whole", udp6[:ethLen+ip6Len+8], xdpDrop},
		{"IPv6 UDP header cut short", udp6[:ethLen+ip6Len+7], xdpPass},
	})
}

// TestParseIPv6ExtensionsThroughFirewall: the firewall walks up to
// LEAF_IPV6_MAX_EXT extension headers to the ports; a later fragment, an
// extension header cut short or one too many leaves no ports to match.
func TestParseIPv6ExtensionsThroughFirewall(t *testing.T) {
	coll := load(t, "firewall")
	rs, err := firewall.ParseString("default allow\ndeny udp dport 9000\ndeny tcp from 2001:db8::1/128 dport 9000\ndeny tcp from 10.0.0.1/32 dport 9000\n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := firewall.Maps(coll.Maps).Install(rs); err != nil {
		t.Fatal(err)
	}
	udp4, udp6 := pkt(src4, dst4, frames.UDP, 9000), pkt(src6, dst6, frames.UDP, 9000)
	cases := []verdictCase{
		{"IPv4 UDP", udp4, xdpDrop},
		{"IPv4 TCP from the denied source", pkt(src4, dst4, frames.TCP, 9000), xdpDrop},
		{"IPv4 TCP from another source", pkt(dst4, src4, frames.TCP, 9000), xdpPass},
		{"IPv4 with options", ip4Options(udp4), xdpDrop},
		{"IPv4 later fragment", ip4Frag(udp4, 0x0003), xdpPass},
		{"IPv6 UDP", udp6, xdpDrop},
		{"IPv6 TCP from the denied source", pkt(src6, dst6, frames.TCP, 9000), xdpDrop},
		{"IPv6 TCP from another source", pkt(dst6, src6, frames.TCP, 9000), xdpPass},
		{"IPv6 hop-by-hop", ip6Ext(udp6, 0, 0), xdpDrop},
		{"IPv6 routing, destination options", ip6Ext(udp6, 0, 43, 60), xdpDrop},
		{"IPv6 first fragment", ip6Ext(udp6, 0, 44), xdpDrop},
		{"IPv6 later fragment", ip6Ext(udp6, 2, 44), xdpPass},
		{"IPv6 four extension headers", ip6Ext(udp6, 0, 0, 43, 60, 44), xdpDrop},
		{"IPv6 five extension headers", ip6Ext(udp6, 0, 0, 43, 60, 60, 44), xdpPass},
		{"IPv6 extension header cut short", ip6Ext(udp6, 0, 0)[:ethLen+ip6Len+7], xdpPass},
		{"IPv6 UDP header cut short behind one", ip6Ext(udp6, 0, 0)[:ethLen+ip6Len+8+7], xdpPass},
	}
	runCases(t, coll.Programs["firewall_xdp"], cases)
	// The same through TC: TC_ACT_SHOT (2) for a drop, TC_ACT_OK (0) else.
	for i := range cases {
		cases[i].want = map[uint32]uint32{xdpDrop: 2, xdpPass: 0}[cases[i].want]
	}
	runCases(t, coll.Programs["firewall_tc"], cases)
}
