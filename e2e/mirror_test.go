package e2e

import (
	"fmt"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/internal/netnsutil"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// rxPackets reads an interface's received-packets counter.
func rxPackets(t *testing.T, netns, ifname string) uint64 {
	t.Helper()
	h, err := netnsutil.Handle(testenv.NetnsPath(netns))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Statistics.RxPackets
}

// TestMirrorCopiesExactlyTheMatchingPackets mirrors UDP port 7301 from B's
// TC ingress to a second veth pair in B's namespace, for IPv4 and IPv6.
// The far end of that pair receives exactly the matching datagrams; the
// receiver on B gets every datagram, mirrored or not.
func TestMirrorCopiesExactlyTheMatchingPackets(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	_, b6 := p.AddIPv6(t)
	m0, m1 := "m0"+p.IfB[2:], "m1"+p.IfB[2:]
	if len(m0) > 15 {
		m0, m1 = m0[:15], m1[:15]
	}
	for _, args := range [][]string{
		{"ip", "-n", p.NsB, "link", "add", m0, "type", "veth", "peer", "name", m1},
		// No addresses and no IPv6: nothing but the copies crosses the pair.
		{"ip", "netns", "exec", p.NsB, "sysctl", "-qw", "net.ipv6.conf." + m0 + ".disable_ipv6=1", "net.ipv6.conf." + m1 + ".disable_ipv6=1"},
		{"ip", "-n", p.NsB, "link", "set", m0, "up"},
		{"ip", "-n", p.NsB, "link", "set", m1, "up"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	idx, err := netnsutil.Ifindex(testenv.NetnsPath(p.NsB), m0)
	if err != nil {
		t.Fatal(err)
	}
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	apply(t, d, doc(fmt.Sprintf(`name: tap
package: mirror@1.0.0
hook: {type: tc, direction: ingress, interface: %s, netns: %s}
params: {target_ifindex: %d, protocol: 17, ports: [7301]}`, p.IfB, p.NsB, idx)))

	before := rxPackets(t, p.NsB, m1)
	want := uint64(0)
	for _, c := range []struct {
		dst  net.IP
		port int
		n    int
	}{{p.AddrB, 7301, 40}, {p.AddrB, 7302, 30}, {b6, 7301, 20}, {b6, 7302, 10}} {
		f := p.NewUDPFlow(t, c.dst, c.port)
		if got := f.Send(t, c.n, 300*time.Millisecond); got != c.n {
			t.Errorf("%s port %d: %d of %d arrived at B; mirroring must not change the original's fate", c.dst, c.port, got, c.n)
		}
		f.Close()
		if c.port == 7301 {
			want += uint64(c.n)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if got := rxPackets(t, p.NsB, m1) - before; got != want {
		t.Fatalf("the mirror interface received %d packets, want exactly the %d matching datagrams", got, want)
	}
}

// TestMirrorIntoTunnel mirrors into a VXLAN device whose far end is in A,
// the way copies reach a remote analyser: the kernel encapsulates them,
// they cross the veth, and A's end decapsulates exactly the matching
// datagrams. (A gretap or GUE device works the same way; this kernel is
// built without GRE, so the test uses VXLAN.)
func TestMirrorIntoTunnel(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	gre := "x" + p.IfB[2:]
	for _, args := range [][]string{
		{"ip", "-n", p.NsB, "link", "add", gre, "type", "vxlan", "id", "42", "dstport", "4789", "local", p.AddrB.String(), "remote", p.AddrA.String()},
		{"ip", "-n", p.NsA, "link", "add", gre, "type", "vxlan", "id", "42", "dstport", "4789", "local", p.AddrA.String(), "remote", p.AddrB.String()},
		{"ip", "netns", "exec", p.NsB, "sysctl", "-qw", "net.ipv6.conf." + gre + ".disable_ipv6=1"},
		{"ip", "netns", "exec", p.NsA, "sysctl", "-qw", "net.ipv6.conf." + gre + ".disable_ipv6=1"},
		{"ip", "-n", p.NsB, "link", "set", gre, "up"},
		{"ip", "-n", p.NsA, "link", "set", gre, "up"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Skipf("vxlan unavailable: %v: %v: %s", args, err, out)
		}
	}
	idx, err := netnsutil.Ifindex(testenv.NetnsPath(p.NsB), gre)
	if err != nil {
		t.Fatal(err)
	}
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	apply(t, d, doc(fmt.Sprintf(`name: tap
package: mirror@1.0.0
hook: {type: tc, direction: ingress, interface: %s, netns: %s}
params: {target_ifindex: %d, protocol: 17, ports: [7311]}`, p.IfB, p.NsB, idx)))
	before := rxPackets(t, p.NsA, gre)
	for _, c := range []struct{ port, n int }{{7311, 25}, {7312, 15}} {
		if got := p.Delivered(t, c.port, c.n, 300*time.Millisecond); got != c.n {
			t.Errorf("port %d: %d of %d arrived at B", c.port, got, c.n)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if got := rxPackets(t, p.NsA, gre) - before; got != 25 {
		t.Fatalf("A's end of the tunnel decapsulated %d packets, want the 25 matching datagrams", got)
	}
}
