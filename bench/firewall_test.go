package bench

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/internal/netnsutil"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// TestPackageCosts loads every package the way leafbench packages does and
// runs each case a little: every case must return its expected verdict.
func TestPackageCosts(t *testing.T) {
	testenv.RequireKernel(t)
	s, err := NewSandbox(nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = netnsutil.Do("/var/run/netns/"+s.NsB, func() error {
		pc, err := LoadPackageCosts()
		if err != nil {
			return err
		}
		defer pc.Close()
		costs, err := MeasureCosts(pc.Cases, 1, 100)
		if err == nil && len(costs) != len(pc.Cases) {
			t.Errorf("%d costs for %d cases", len(costs), len(pc.Cases))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFirewallComparisonRuleSets gives each filter the rule sets the
// comparison uses and sends the measured flow through each: it arrives
// whether the matching rule is first or last, and a flow from another
// (denied) source does not.
func TestFirewallComparisonRuleSets(t *testing.T) {
	testenv.RequireKernel(t)
	s, err := NewSandbox(nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range [][]string{{s.NsA, "10.78.0.1/24"}, {s.NsB, "10.78.0.2/24"}, {s.NsA, "172.16.0.0/32"}} {
		if _, err := RunIn(c[0], "", "ip", "addr", "add", c[1], "dev", "bv0"); err != nil {
			t.Fatal(err)
		}
	}
	fw, err := LoadFirewall()
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	b := net.IPv4(10, 78, 0, 2)
	if !fromDenied(t, s, b) {
		t.Fatal("without any filter nothing from 172.16.0.0 arrives: the test could not see a deny")
	}
	for _, first := range []bool{false, true} {
		rs, err := MakeRuleSets(50, first, netip.MustParseAddr("10.78.0.1"))
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(rs.Iptables, "-A INPUT"); n != 50 {
			t.Fatalf("%d iptables rules, want 50", n)
		}
		if _, err := fw.Maps.Install(rs.Leaf); err != nil {
			t.Fatal(err)
		}
		if err := fw.Attach(s.NsB, "bv0"); err != nil {
			t.Fatal(err)
		}
		check(t, s, b, "leaf")
		fw.Detach()
		for name, load := range map[string][]string{
			"iptables": {rs.Iptables, "iptables-legacy-restore"},
			"nft list": {rs.NftList, "nft", "-f", "-"},
			"nft set":  {rs.NftSet, "nft", "-f", "-"},
		} {
			if _, err := RunIn(s.NsB, load[0], load[1], load[2:]...); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			check(t, s, b, name)
			if err := ClearNetfilter(s.NsB); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// check: the measured flow arrives; datagrams from 172.16.0.0 (the first
// denied source) do not.
func check(t *testing.T, s *Sandbox, b net.IP, name string) {
	t.Helper()
	if _, _, err := Goodput(s.NsA, s.NsB, b, 50*time.Millisecond); err != nil {
		t.Errorf("%s: %v", name, err)
	}
	if fromDenied(t, s, b) {
		t.Errorf("%s: a datagram from a denied source arrived", name)
	}
}

// fromDenied sends from 172.16.0.0 and reports whether anything arrived.
func fromDenied(t *testing.T, s *Sandbox, b net.IP) bool {
	t.Helper()
	var rx, tx *net.UDPConn
	err := netnsutil.Do("/var/run/netns/"+s.NsB, func() error {
		var err error
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: b, Port: 7777})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	err = netnsutil.Do("/var/run/netns/"+s.NsA, func() error {
		var err error
		tx, err = net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(172, 16, 0, 0)}, &net.UDPAddr{IP: b, Port: 7777})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	for range 5 {
		tx.Write([]byte("x"))
	}
	rx.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err = rx.Read(make([]byte, 8))
	return err == nil
}
