package e2e

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/internal/netnsutil"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// tcpServer accepts connections on B's address and port and keeps them.
func tcpServer(t *testing.T, p *testenv.Pair, ip net.IP, port int) {
	t.Helper()
	var ln net.Listener
	err := netnsutil.Do(testenv.NetnsPath(p.NsB), func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(ip.String(), fmt.Sprint(port)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
}

// tcpDial connects from A, giving up after timeout (a dropped SYN).
func tcpDial(t *testing.T, p *testenv.Pair, ip net.IP, port int, timeout time.Duration) (*net.TCPConn, error) {
	var c net.Conn
	err := netnsutil.Do(testenv.NetnsPath(p.NsA), func() error {
		var err error
		c, err = net.DialTimeout("tcp", net.JoinHostPort(ip.String(), fmt.Sprint(port)), timeout)
		return err
	})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn), nil
}

// TestConnlimitRefusesAndReadmits caps port 7200 at 3 connections through
// leafd (TC ingress on B), for IPv4 and IPv6: the 4th is refused; after a
// client closes one (FIN), or resets one (RST), one more is admitted; after
// the idle timeout every slot is free again.
func TestConnlimitRefusesAndReadmits(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	_, b6 := p.AddIPv6(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	apply(t, d, doc(fmt.Sprintf(`name: cl
package: connlimit@1.0.0
hook: {type: tc, direction: ingress, interface: %s, netns: %s}
params: {ports: [7200], max_connections: 3, idle_timeout_ms: 4000}`, p.IfB, p.NsB)))
	refuse := 700 * time.Millisecond
	for _, dst := range []net.IP{p.AddrB, b6} {
		tcpServer(t, p, dst, 7200)
		tcpServer(t, p, dst, 7201)
		var conns []*net.TCPConn
		for i := 0; i < 3; i++ {
			c, err := tcpDial(t, p, dst, 7200, 2*time.Second)
			if err != nil {
				t.Fatalf("%s: connection %d: %v", dst, i+1, err)
			}
			conns = append(conns, c)
		}
		if _, err := tcpDial(t, p, dst, 7200, refuse); err == nil {
			t.Fatalf("%s: the 4th connection was admitted", dst)
		}
		if _, err := tcpDial(t, p, dst, 7201, 2*time.Second); err != nil {
			t.Fatalf("%s: another port is capped too: %v", dst, err)
		}
		conns[0].Close() // FIN
		time.Sleep(100 * time.Millisecond)
		c, err := tcpDial(t, p, dst, 7200, 2*time.Second)
		if err != nil {
			t.Fatalf("%s: not admitted after a FIN: %v", dst, err)
		}
		conns[0] = c
		if _, err := tcpDial(t, p, dst, 7200, refuse); err == nil {
			t.Fatalf("%s: a 4th connection admitted after the FIN", dst)
		}
		conns[1].SetLinger(0)
		conns[1].Close() // RST
		time.Sleep(100 * time.Millisecond)
		if _, err := tcpDial(t, p, dst, 7200, 2*time.Second); err != nil {
			t.Fatalf("%s: not admitted after an RST: %v", dst, err)
		}
		// Idle connections (no packet from the client) give their slots back.
		time.Sleep(4500 * time.Millisecond)
		for i := 0; i < 3; i++ {
			if _, err := tcpDial(t, p, dst, 7200, 2*time.Second); err != nil {
				t.Fatalf("%s: after the idle timeout, connection %d: %v", dst, i+1, err)
			}
		}
		if _, err := tcpDial(t, p, dst, 7200, refuse); err == nil {
			t.Fatalf("%s: a 4th connection admitted after the timeout", dst)
		}
		time.Sleep(4500 * time.Millisecond) // every slot free for the next family
	}
	stats, err := d.Client.DumpMap(ctx(t), "cl", "cl_stats")
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint64]uint64{}
	for _, e := range stats.Entries {
		got[*e.KeyUint] = *e.ValueUint
	}
	// Per family: 3 + 1 + 1 + 3 admitted; the refused SYNs are retried by
	// the kernel within the dial timeout, so at least 3 refusals; 2 closed
	// (FIN, RST); the rest expired.
	if got[0] != 16 || got[1] < 6 || got[2] != 4 || got[3] != 12 {
		t.Fatalf("counters admitted %d refused %d closed %d expired %d, want 16, ≥6, 4, 12", got[0], got[1], got[2], got[3])
	}
}
