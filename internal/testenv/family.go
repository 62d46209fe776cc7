package testenv

import (
	"fmt"
	"net"
	"time"

	"testing"

	"github.com/leaf-ebpf/leaf/internal/netnsutil"
)

// AddIPv6 gives the pair fd00:X::1/64 on A and fd00:X::2/64 on B (no
// duplicate address detection, so they work at once) and returns them.
func (p *Pair) AddIPv6(t testing.TB) (a, b net.IP) {
	t.Helper()
	x := int(p.AddrA.To4()[1])
	a, b = net.ParseIP(fmt.Sprintf("fd00:%x::1", x)), net.ParseIP(fmt.Sprintf("fd00:%x::2", x))
	mustRun(t, "ip", "-n", p.NsA, "addr", "add", a.String()+"/64", "dev", p.IfA, "nodad")
	mustRun(t, "ip", "-n", p.NsB, "addr", "add", b.String()+"/64", "dev", p.IfB, "nodad")
	return a, b
}

// UDPFlow is a UDP socket in A connected to a listening socket in B.
type UDPFlow struct {
	Tx, Rx *net.UDPConn
}

// NewUDPFlow opens a listener on B's address dst:port and a socket in A
// sending to it (dst decides the family: AddrB or an address AddIPv6
// returned). The receive buffer is large, so bursts are not lost there.
func (p *Pair) NewUDPFlow(t testing.TB, dst net.IP, port int) *UDPFlow {
	t.Helper()
	f := &UDPFlow{}
	err := netnsutil.Do(NetnsPath(p.NsB), func() error {
		var err error
		f.Rx, err = net.ListenUDP("udp", &net.UDPAddr{IP: dst, Port: port})
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", p.NsB, err)
	}
	t.Cleanup(func() { f.Rx.Close() })
	f.Rx.SetReadBuffer(8 << 20)
	err = netnsutil.Do(NetnsPath(p.NsA), func() error {
		var err error
		f.Tx, err = net.DialUDP("udp", nil, &net.UDPAddr{IP: dst, Port: port})
		return err
	})
	if err != nil {
		t.Fatalf("dial in %s: %v", p.NsA, err)
	}
	t.Cleanup(func() { f.Tx.Close() })
	return f
}

// Send sends n datagrams and returns how many arrived, waiting up to wait
// after the last one.
func (f *UDPFlow) Send(t testing.TB, n int, wait time.Duration) int {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := fmt.Fprintf(f.Tx, "%d", i); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	return count(f.Rx, n, wait)
}

// Close closes both sockets.
func (f *UDPFlow) Close() {
	f.Tx.Close()
	f.Rx.Close()
}
