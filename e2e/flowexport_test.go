package e2e

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// TestFlowexportIPFIXDecodedByTshark runs flowexport through leafd on B's
// TC ingress with leaf-flowexport as its companion, exporting to a UDP
// collector on loopback. After IPv4 and IPv6 flows from A go idle, tshark
// decodes the collected IPFIX and finds each flow with its exact packet
// and byte counts.
func TestFlowexportIPFIXDecodedByTshark(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	_, b6 := p.AddIPv6(t)
	collector, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer collector.Close()
	var mu sync.Mutex
	var datagrams [][]byte
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := collector.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			datagrams = append(datagrams, append([]byte(nil), buf[:n]...))
			mu.Unlock()
		}
	}()

	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--repository-allow-unsigned", builtinWithCompanion(t, "flowexport", "leaf-flowexport"), "--companion-dir", companionDir(t)}})
	apply(t, d, doc(fmt.Sprintf(`name: flows
package: flowexport@1.0.0
hook: {type: tc, direction: ingress, interface: %s, netns: %s}
companion: {args: [--collector, %s, --active-timeout, 30s, --idle-timeout, 1s, --interval, 200ms]}`, p.IfB, p.NsB, collector.LocalAddr())))
	waitUntil(t, "the companion runs", func() bool {
		c := status(t, d)["flows"].Companion
		return c != nil && c.State == "running"
	})

	type flow struct {
		dst      net.IP
		port, n  int
		overhead int // IP + UDP header bytes
	}
	flows := []flow{{p.AddrB, 7401, 30, 28}, {b6, 7402, 20, 48}}
	want := map[int][2]uint64{}
	for _, f := range flows {
		u := p.NewUDPFlow(t, f.dst, f.port)
		if got := u.Send(t, f.n, 300*time.Millisecond); got != f.n {
			t.Fatalf("%d of %d datagrams arrived", got, f.n)
		}
		bytes := 0
		for i := 0; i < f.n; i++ {
			bytes += len(fmt.Sprint(i)) + f.overhead
		}
		want[f.port] = [2]uint64{uint64(f.n), uint64(bytes)}
		u.Close()
	}
	// Idle timeout (1 s) plus a few polls.
	time.Sleep(2500 * time.Millisecond)
	mu.Lock()
	got := testenv.DecodeIPFIX(t, datagrams)
	mu.Unlock()
	for _, f := range flows {
		var match []map[string]string
		for _, r := range got {
			if r["cflow.dstport"] == fmt.Sprint(f.port) && r["cflow.protocol"] == "17" {
				match = append(match, r)
			}
		}
		if len(match) != 1 {
			t.Errorf("port %d: %d records, want one (idle end): %v", f.port, len(match), match)
			continue
		}
		r := match[0]
		dst := r["cflow.dstaddr"]
		if f.dst.To4() == nil {
			dst = r["cflow.dstaddrv6"]
		}
		w := want[f.port]
		if dst != f.dst.String() || r["cflow.packets"] != fmt.Sprint(w[0]) || r["cflow.octets"] != fmt.Sprint(w[1]) || r["cflow.flow_end_reason"] != "1" {
			t.Errorf("port %d: record %v, want dst %s, %d packets, %d bytes, end reason 1 (idle)", f.port, r, f.dst, w[0], w[1])
		}
	}
}
