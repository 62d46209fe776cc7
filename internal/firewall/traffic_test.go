package firewall

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/internal/netnsutil"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// attach attaches prog to B's end of the pair, XDP or TCX ingress, and
// returns a function that detaches it.
func attach(t *testing.T, p *testenv.Pair, prog *ebpf.Program, tc bool) func() {
	t.Helper()
	var l link.Link
	err := netnsutil.Do(testenv.NetnsPath(p.NsB), func() error {
		ifc, err := net.InterfaceByName(p.IfB)
		if err != nil {
			return err
		}
		if tc {
			l, err = link.AttachTCX(link.TCXOptions{Program: prog, Interface: ifc.Index, Attach: ebpf.AttachTCXIngress})
		} else {
			l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index})
		}
		return err
	})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return func() { l.Close() }
}

// TestTrafficBothFamilies sends real IPv4 and IPv6 datagrams through the
// veth pair with the XDP program and then the TC program on B, and counts
// what arrives.
func TestTrafficBothFamilies(t *testing.T) {
	coll, maps := load(t)
	p := testenv.NewPair(t)
	_, b6 := p.AddIPv6(t)
	rs, err := ParseString(fmt.Sprintf(`default deny
allow icmpv6             # neighbour discovery
allow udp dport 7001     # both families
allow udp to %s dport 7003
`, b6))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := maps.Install(rs); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		dst  net.IP
		port int
		want int
	}{{p.AddrB, 7001, 20}, {p.AddrB, 7002, 0}, {p.AddrB, 7003, 0}, {b6, 7001, 20}, {b6, 7002, 0}, {b6, 7003, 20}}
	for _, hook := range []struct {
		name string
		prog string
		tc   bool
	}{{"xdp", "firewall_xdp", false}, {"tc", "firewall_tc", true}} {
		detach := attach(t, p, coll.Programs[hook.prog], hook.tc)
		for _, c := range cases {
			f := p.NewUDPFlow(t, c.dst, c.port)
			if got := f.Send(t, 20, 300*time.Millisecond); got != c.want {
				t.Errorf("%s: %s port %d: %d of 20 arrived, want %d", hook.name, c.dst, c.port, got, c.want)
			}
			f.Close()
		}
		detach()
	}
}

// totals reads fw_totals summed over CPUs.
func totals(t *testing.T, m *ebpf.Map) [5]uint64 {
	t.Helper()
	var out [5]uint64
	for k := range out {
		var per []uint64
		if err := m.Lookup(uint32(k), &per); err != nil {
			t.Fatal(err)
		}
		for _, v := range per {
			out[k] += v
		}
	}
	return out
}

// TestSwapUnderTrafficNoMixedVerdict replaces the rule set back and forth
// while datagrams flow. Both rule sets allow the flows, by different rules
// at different positions; a packet that saw parts of both (one set's class
// lists with the other's rules) would match nothing and be dropped by the
// default policy. So every datagram must be allowed, and no packet may be
// denied, while the sets swap many times.
func TestSwapUnderTrafficNoMixedVerdict(t *testing.T) {
	coll, maps := load(t)
	p := testenv.NewPair(t)
	a6, b6 := p.AddIPv6(t)
	a4, _ := netip.AddrFromSlice(p.AddrA.To4())
	n4 := netip.PrefixFrom(a4, 24).Masked()
	x, err := ParseString(fmt.Sprintf(`default deny
allow udp from %s to %s dport 7000
allow udp from %s to %s dport 7000
allow icmpv6
`, p.AddrA, p.AddrB, a6, b6))
	if err != nil {
		t.Fatal(err)
	}
	y, err := ParseString(fmt.Sprintf(`default deny
deny tcp from 10.250.0.0/16
deny tcp from fd99::/16
allow icmpv6
allow udp from %s to %s dport 6000-8000
allow udp from fd00::/8 to fd00::/8 dport 6000-8000
`, n4, n4))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := maps.Install(x); err != nil {
		t.Fatal(err)
	}
	attach(t, p, coll.Programs["firewall_xdp"], false)
	flows := []*testenv.UDPFlow{p.NewUDPFlow(t, p.AddrB, 7000), p.NewUDPFlow(t, b6, 7000)}
	// Warm up neighbour discovery before counting.
	for _, f := range flows {
		if got := f.Send(t, 5, time.Second); got != 5 {
			t.Fatalf("before any swap only %d of 5 datagrams arrived", got)
		}
	}

	var sent, received atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, f := range flows {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := f.Tx.Write([]byte("x")); err == nil {
					sent.Add(1)
				}
			}
		}()
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for {
				f.Rx.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				if _, err := f.Rx.Read(buf); err != nil {
					return
				}
				received.Add(1)
			}
		}()
	}
	swaps := 0
	var worst time.Duration
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); swaps++ {
		set := y
		if swaps%2 == 1 {
			set = x
		}
		took, err := maps.Install(set)
		if err != nil {
			close(stop)
			t.Fatal(err)
		}
		worst = max(worst, took)
	}
	close(stop)
	wg.Wait()

	tot := totals(t, coll.Maps["fw_totals"])
	t.Logf("%d swaps (slowest %v), %d datagrams sent, %d received; allowed by a rule %d, denied %d, default-denied %d",
		swaps, worst, sent.Load(), received.Load(), tot[0], tot[1], tot[3])
	if swaps < 20 || sent.Load() < 1000 {
		t.Fatalf("too little happened to show anything: %d swaps, %d datagrams", swaps, sent.Load())
	}
	if tot[1] != 0 || tot[3] != 0 {
		t.Fatalf("%d packets denied by a rule and %d by the default policy: some packet saw a mix of the two rule sets", tot[1], tot[3])
	}
	if tot[0] < uint64(received.Load()) {
		t.Fatalf("the program allowed %d packets but %d arrived", tot[0], received.Load())
	}
}
