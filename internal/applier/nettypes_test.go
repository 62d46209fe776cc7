package applier

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// TestNetworkTypesOnTheKernel sets every network-typed parameter of
// testdata/packages/netparams from its text form, the way apply does
// (constants through GoValue before load, maps through writeMapParams),
// then checks the program's verdicts on packets (BPF_PROG_TEST_RUN), so
// byte order and LPM key layout are what the kernel and packets use, and
// reads each map back through manifest.Format to the same text.
func TestNetworkTypesOnTheKernel(t *testing.T) {
	requireBPF(t)
	repo, err := repository.OpenDir(filepath.Join("..", "..", "testdata", "packages"))
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := repo.Resolve("netparams", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	spec, _, err := pkg.LoadSpec("netparams")
	if err != nil {
		t.Fatal(err)
	}
	m := pkg.Manifest
	consts := map[string]any{"action": "tx", "port": float64(5353)}
	for name, v := range consts {
		typ, err := m.Param(name).TypeOf()
		if err != nil {
			t.Fatal(err)
		}
		gv, err := typ.GoValue(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := spec.Variables[m.Param(name).Const].Set(gv); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	var objs struct {
		Prog *ebpf.Program
		Maps map[string]*ebpf.Map
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer coll.Close()
	objs.Prog, objs.Maps = coll.Programs["netparams"], coll.Maps
	params := map[string]any{
		"addrs":  []any{"10.1.2.3", "10.9.9.9"},
		"addrs6": []any{"2001:db8::1"},
		"nets":   []any{"192.168.0.0/16", "100.64.0.0/10"},
		"nets6":  []any{"2001:db8:ff::/48"},
		"macs":   []any{"02:00:00:00:00:aa"},
		"mark":   float64(0x01020304),
		"label":  "edge-1",
	}
	if err := writeMapParams(m, objs.Maps, params); err != nil {
		t.Fatal(err)
	}

	const xdpPass, xdpTX = 2, 3
	other := "02:00:00:00:00:01"
	for _, tc := range []struct {
		name string
		pkt  []byte
		want uint32
	}{
		{"listed IPv4 source", packet4(other, "10.1.2.3", 80), xdpTX},
		{"source inside a listed prefix", packet4(other, "192.168.7.9", 80), xdpTX},
		{"source inside the /10", packet4(other, "100.127.255.254", 80), xdpTX},
		{"source just outside the /10", packet4(other, "100.128.0.1", 80), xdpPass},
		{"unlisted IPv4 source", packet4(other, "172.16.0.1", 80), xdpPass},
		{"big-endian port", packet4(other, "172.16.0.1", 5353), xdpTX},
		{"port byte-swapped", packet4(other, "172.16.0.1", 0xe914), xdpPass},
		{"listed IPv6 source", packet6(other, "2001:db8::1"), xdpTX},
		{"IPv6 source inside the prefix", packet6(other, "2001:db8:ff:1::5"), xdpTX},
		{"unlisted IPv6 source", packet6(other, "2001:db9::1"), xdpPass},
		{"listed MAC", packet4("02:00:00:00:00:aa", "172.16.0.1", 80), xdpTX},
	} {
		got, err := objs.Prog.Run(&ebpf.RunOptions{Data: tc.pkt})
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s: verdict %d, want %d", tc.name, got, tc.want)
		}
	}

	// Read back through the formats leaf maps and metric labels use.
	for _, rb := range []struct {
		mapName, format string
		want            []string
	}{
		{"addrs", "ipv4", []string{"10.1.2.3", "10.9.9.9"}},
		{"addrs6", "ipv6", []string{"2001:db8::1"}},
		{"nets", "cidr", []string{"100.64.0.0/10", "192.168.0.0/16"}},
		{"nets6", "cidr6", []string{"2001:db8:ff::/48"}},
		{"macs", "mac", []string{"02:00:00:00:00:aa"}},
	} {
		if got := formattedKeys(t, objs.Maps[rb.mapName], rb.format); strings.Join(got, " ") != strings.Join(rb.want, " ") {
			t.Errorf("map %s read back as %s: %q, want %q", rb.mapName, rb.format, got, rb.want)
		}
	}
	var mark, label []byte
	if err := objs.Maps["mark"].Lookup(uint32(0), &mark); err != nil || !bytes.Equal(mark, []byte{1, 2, 3, 4}) {
		t.Errorf("mark (be32 0x01020304) stored as %x, %v", mark, err)
	}
	if err := objs.Maps["label"].Lookup(uint32(0), &label); err != nil || string(bytes.TrimRight(label, "\x00")) != "edge-1" || len(label) != 16 {
		t.Errorf("label stored as %q, %v", label, err)
	}
}

func formattedKeys(t *testing.T, m *ebpf.Map, format string) []string {
	t.Helper()
	var out []string
	key := make([]byte, m.KeySize())
	var val []byte
	it := m.Iterate()
	for it.Next(&key, &val) {
		out = append(out, manifest.Format(format, key))
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// packet4 is an Ethernet, IPv4 and UDP frame from mac and src to port.
func packet4(mac, src string, port uint16) []byte {
	p := ethernet(mac, 0x0800)
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], 20+8+4)
	copy(ip[12:], netip.MustParseAddr(src).AsSlice())
	copy(ip[16:], netip.MustParseAddr("10.0.0.1").AsSlice())
	udp := make([]byte, 8+4)
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], port)
	binary.BigEndian.PutUint16(udp[4:], 12)
	return append(append(p, ip...), udp...)
}

// packet6 is an Ethernet and IPv6 frame (no payload) from mac and src.
func packet6(mac, src string) []byte {
	p := ethernet(mac, 0x86dd)
	ip := make([]byte, 40+8)
	ip[0], ip[6], ip[7] = 0x60, 17, 64
	binary.BigEndian.PutUint16(ip[4:], 8)
	copy(ip[8:], netip.MustParseAddr(src).AsSlice())
	copy(ip[24:], netip.MustParseAddr("2001:db8::ffff").AsSlice())
	return append(p, ip...)
}

func ethernet(src string, proto uint16) []byte {
	hw, _ := net.ParseMAC(src)
	p := make([]byte, 14)
	copy(p[0:], []byte{2, 0, 0, 0, 0, 2})
	copy(p[6:], hw)
	binary.BigEndian.PutUint16(p[12:], proto)
	return p
}
