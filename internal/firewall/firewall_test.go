package firewall

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/internal/btflayout"
	"github.com/leaf-ebpf/leaf/internal/frames"
	"github.com/leaf-ebpf/leaf/internal/testenv"
	"github.com/leaf-ebpf/leaf/packages"
)

func TestParseErrorsNameTheLine(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"allow tcp from 10.0.0.1/8", "line 1: prefix \"10.0.0.1/8\" has host bits set (did you mean 10.0.0.0/8?)"},
		{"\npermit tcp", "line 2: action \"permit\": want allow or deny"},
		{"allow dport 22", "line 1: ports need tcp or udp"},
		{"allow tcp dport 30-20", "line 1: port range \"30-20\""},
		{"allow from 10.0.0.0/8 to 2001:db8::/32", "of different families"},
		{"allow icmp from 2001:db8::/32", "icmp goes with IPv4 prefixes"},
		{"default deny\ndefault allow", "line 2: a second default policy"},
		{"allow tcp from", "line 1: from needs a value"},
		{"allow tcp colour red", "unknown word \"colour\""},
		{"allow " + strings.Repeat("x", MaxLineLength), "token too long"},
	} {
		_, err := ParseString(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%.40q) = %v, want an error containing %q", c.in, err, c.want)
		}
	}
}

func TestParseRoundTrip(t *testing.T) {
	in := "deny tcp from 10.0.0.0/8 to 192.0.2.1/32 sport 1000-2000 dport 22-22\nallow udp from 2001:db8::/32\nallow proto 47\ndeny icmpv6"
	rs, err := ParseString(in)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs.Rules {
		out = append(out, r.String())
	}
	if got := strings.Join(out, "\n"); got != in {
		t.Fatalf("round trip:\n%s\nwant\n%s", got, in)
	}
	if rs.Default != Allow {
		t.Fatalf("default %d, want allow", rs.Default)
	}
}

// load loads the firewall object, as leafd would, and returns its maps and
// programs.
func load(t testing.TB) (*ebpf.Collection, Maps) {
	t.Helper()
	testenv.RequireKernel(t)
	obj, err := packages.FS.ReadFile("firewall/firewall.bpf.o")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		t.Fatal(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		t.Fatalf("load: %+v", err)
	}
	t.Cleanup(coll.Close)
	return coll, Maps(coll.Maps)
}

func TestLayoutMatchesObject(t *testing.T) {
	obj, err := packages.FS.ReadFile("firewall/firewall.bpf.o")
	if err != nil {
		t.Fatal(err)
	}
	if err := btflayout.Check(obj, map[string]any{"rule": bpfRule{}, "class": bpfClass{}, "config": bpfConfig{}, "key4": key4{}, "key6": key6{}}); err != nil {
		t.Fatal(err)
	}
}

var decisionRules = `
default deny
deny  tcp from 10.1.0.0/16 dport 22           # 0
allow tcp from 10.0.0.0/8 dport 20-30         # 1
allow udp to 192.0.2.0/24 dport 53            # 2
deny  from 10.2.3.4                           # 3
allow from 10.2.0.0/16                        # 4
allow icmp                                    # 5
deny  tcp from 2001:db8:1::/48 dport 22       # 6
allow tcp from 2001:db8::/32 dport 20-30      # 7
allow udp to 2001:db8:53::/64 dport 53        # 8
allow icmpv6                                  # 9
allow tcp sport 443                           # 10
`

type decision struct {
	name  string
	pkt   frames.Packet
	allow bool
	rule  int // matching rule, -1 for the default
}

func p(src, dst string, proto uint8, sport, dport uint16) frames.Packet {
	return frames.Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: proto, Sport: sport, Dport: dport}
}

var decisions = []decision{
	{"v4 first rule wins over a later allow", p("10.1.2.3", "10.9.9.9", frames.TCP, 5000, 22), false, 0},
	{"v4 port range", p("10.7.0.1", "10.9.9.9", frames.TCP, 5000, 25), true, 1},
	{"v4 port just outside the range", p("10.7.0.1", "10.9.9.9", frames.TCP, 5000, 31), false, -1},
	{"v4 udp to a prefix", p("172.16.0.1", "192.0.2.77", frames.UDP, 5000, 53), true, 2},
	{"v4 udp to another port", p("172.16.0.1", "192.0.2.77", frames.UDP, 5000, 54), false, -1},
	{"v4 host deny before its prefix's allow", p("10.2.3.4", "10.9.9.9", frames.UDP, 1, 2), false, 3},
	{"v4 neighbour of the host", p("10.2.3.5", "10.9.9.9", frames.UDP, 1, 2), true, 4},
	{"v4 icmp", p("198.51.100.1", "10.9.9.9", frames.ICMP, 0, 0), true, 5},
	{"v4 sport", p("198.51.100.1", "10.9.9.9", frames.TCP, 443, 40000), true, 10},
	{"v4 nothing matches", p("198.51.100.1", "10.9.9.9", frames.UDP, 443, 40000), false, -1},
	{"v6 first rule wins", p("2001:db8:1::5", "2001:db8:ffff::1", frames.TCP, 5000, 22), false, 6},
	{"v6 port range", p("2001:db8:2::5", "2001:db8:ffff::1", frames.TCP, 5000, 20), true, 7},
	{"v6 outside the prefix", p("2001:db9::5", "2001:db8:ffff::1", frames.TCP, 5000, 20), false, -1},
	{"v6 udp to a prefix", p("fd00::1", "2001:db8:53::35", frames.UDP, 5000, 53), true, 8},
	{"v6 icmpv6", p("fd00::1", "fd00::2", frames.ICMPv6, 0, 0), true, 9},
	{"v6 icmp rule does not apply", p("fd00::1", "fd00::2", frames.ICMP, 0, 0), false, -1},
	{"v6 sport rule applies to both families", p("fd00::1", "fd00::2", frames.TCP, 443, 1), true, 10},
}

// TestDecisionsTable runs every case through the XDP and the TC program
// and checks the verdict and which rule's counter moved.
func TestDecisionsTable(t *testing.T) {
	coll, maps := load(t)
	rs, err := ParseString(decisionRules)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := maps.Install(rs); err != nil {
		t.Fatal(err)
	}
	for _, prog := range []struct {
		name        string
		pass, block uint32
	}{{"firewall_xdp", 2, 1}, {"firewall_tc", 0, 2}} {
		for _, c := range decisions {
			before, err := maps.Hits()
			if err != nil {
				t.Fatal(err)
			}
			ret, err := coll.Programs[prog.name].Run(&ebpf.RunOptions{Data: c.pkt.Build()})
			if err != nil {
				t.Fatalf("%s: %v", prog.name, err)
			}
			want := prog.block
			if c.allow {
				want = prog.pass
			}
			if ret != want {
				t.Errorf("%s %s: verdict %d, want %d", prog.name, c.name, ret, want)
			}
			after, _ := maps.Hits()
			for i := range after {
				moved := after[i] - before[i]
				if (i == c.rule) != (moved == 1) {
					t.Errorf("%s %s: rule %d counted %d packets, want the match on rule %d", prog.name, c.name, i, moved, c.rule)
				}
			}
		}
	}
}

// TestNonIPPasses: ARP and other non-IP frames pass untouched.
func TestNonIPPasses(t *testing.T) {
	coll, maps := load(t)
	rs, _ := ParseString("default deny")
	if _, err := maps.Install(rs); err != nil {
		t.Fatal(err)
	}
	arp := make([]byte, 64)
	arp[12], arp[13] = 0x08, 0x06
	if ret, err := coll.Programs["firewall_xdp"].Run(&ebpf.RunOptions{Data: arp}); err != nil || ret != 2 {
		t.Fatalf("ARP frame: verdict %d (%v), want XDP_PASS", ret, err)
	}
}

// TestTooManyOverlappingRules: a rule set whose class lists do not fit is
// refused with a reason, and the running rule set stays.
func TestTooManyOverlappingRules(t *testing.T) {
	coll, maps := load(t)
	rs, _ := ParseString("default deny\nallow udp dport 7")
	if _, err := maps.Install(rs); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	// Each /32 class lists itself and every 'any' rule after it.
	for i := 0; i < 600; i++ {
		b.WriteString("allow tcp dport 1\n")
	}
	for i := 0; i < 2000; i++ {
		b.WriteString("deny from 10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256) + "\n")
	}
	for i := 0; i < 600; i++ {
		b.WriteString("allow tcp dport 2\n")
	}
	big, err := ParseString(b.String())
	if err != nil {
		t.Fatal(err)
	}
	if c, err := compile(big, limits{rules: 131072, cands: 4 << 20}); err != nil || len(c.cands) <= 1<<20 {
		t.Fatalf("the test's rule set should need more than 1M entries: %v", err)
	}
	if _, err := maps.Install(big); err == nil || !strings.Contains(err.Error(), "class-list entries") {
		t.Fatalf("install: %v, want a refusal naming class-list entries", err)
	}
	ret, _ := coll.Programs["firewall_xdp"].Run(&ebpf.RunOptions{Data: p("10.0.0.1", "10.0.0.2", frames.UDP, 1, 7).Build()})
	if ret != 2 {
		t.Fatalf("after the refused install the old rule set should still allow udp/7: verdict %d", ret)
	}
}

// TestReplacementLeavesNothingBehind: a prefix of an older rule set in the
// same generation is gone once a newer set is written there.
func TestReplacementLeavesNothingBehind(t *testing.T) {
	coll, maps := load(t)
	for _, set := range []string{"deny from 10.1.0.0/16\ndeny from 2001:db8:1::/48", "", "deny from 10.2.0.0/16\ndeny from 2001:db8:2::/48"} {
		rs, err := ParseString(set)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := maps.Install(rs); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		pkt   frames.Packet
		allow bool
	}{
		{p("10.1.2.3", "10.9.9.9", frames.UDP, 1, 2), true},
		{p("10.2.2.3", "10.9.9.9", frames.UDP, 1, 2), false},
		{p("2001:db8:1::1", "fd00::1", frames.UDP, 1, 2), true},
		{p("2001:db8:2::1", "fd00::1", frames.UDP, 1, 2), false},
	} {
		ret, err := coll.Programs["firewall_xdp"].Run(&ebpf.RunOptions{Data: c.pkt.Build()})
		if err != nil {
			t.Fatal(err)
		}
		if (ret == 2) != c.allow {
			t.Errorf("%s: verdict %d, want allow %v", c.pkt.Src, ret, c.allow)
		}
	}
	for _, name := range []string{"fw_src4", "fw_src6"} {
		var n int
		var k [24]byte
		var v bpfClass
		it := maps[name].Iterate()
		kb := k[:maps[name].KeySize()]
		for it.Next(&kb, &v) {
			n++
		}
		// Two generations: each has the root class, the newest also its prefix.
		if n != 3 {
			t.Errorf("%s holds %d entries, want 3 (stale classes left behind?)", name, n)
		}
	}
}
