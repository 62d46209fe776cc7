package bench

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/internal/firewall"
	"github.com/leaf-ebpf/leaf/internal/netnsutil"
)

// FirewallSizes are the rule counts the comparison runs.
var FirewallSizes = []int{10, 1000, 10000, 100000}

// Rule sets of the comparison: n-1 rules that do not match the measured
// packets (deny from distinct /32 sources), and one that does (accept UDP
// from the sender to the port), last or first.
type RuleSets struct {
	Leaf     *firewall.RuleSet
	Iptables string // iptables-restore input (filter table)
	NftList  string // nft -f input: one rule per line
	NftSet   string // nft -f input: the n-1 addresses in a set, one rule for it
}

// Firewall table and port of the comparison.
const (
	nftTable = "leafbench"
	fwPort   = 7777
)

func denyAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{172, byte(16 + i>>16), byte(i >> 8), byte(i)})
}

// MakeRuleSets builds the same rules for leaf, iptables and nftables.
func MakeRuleSets(n int, matchFirst bool, src netip.Addr) (*RuleSets, error) {
	var leaf, ipt, nl, elems strings.Builder
	match := fmt.Sprintf("allow udp from %s dport %d\n", src, fwPort)
	iptMatch := fmt.Sprintf("-A INPUT -s %s/32 -p udp --dport %d -j ACCEPT\n", src, fwPort)
	nftMatch := fmt.Sprintf("    ip saddr %s udp dport %d accept\n", src, fwPort)
	ipt.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	nl.WriteString(nftHeader())
	if matchFirst {
		leaf.WriteString(match)
		ipt.WriteString(iptMatch)
		nl.WriteString(nftMatch)
	}
	for i := 0; i < n-1; i++ {
		a := denyAddr(i)
		fmt.Fprintf(&leaf, "deny from %s\n", a)
		fmt.Fprintf(&ipt, "-A INPUT -s %s/32 -j DROP\n", a)
		fmt.Fprintf(&nl, "    ip saddr %s drop\n", a)
		if i > 0 {
			elems.WriteString(",")
		}
		elems.WriteString(a.String())
	}
	if !matchFirst {
		leaf.WriteString(match)
		ipt.WriteString(iptMatch)
		nl.WriteString(nftMatch)
	}
	ipt.WriteString("COMMIT\n")
	nl.WriteString("  }\n}\n")
	set := nftHeader()
	if n > 1 {
		set = fmt.Sprintf("table inet %s\ndelete table inet %s\ntable inet %s {\n  set deny { type ipv4_addr; elements = { %s } }\n  chain input {\n    type filter hook input priority 0; policy accept;\n", nftTable, nftTable, nftTable, elems.String())
	}
	if matchFirst {
		set += nftMatch
	}
	if n > 1 {
		set += "    ip saddr @deny drop\n"
	}
	if !matchFirst {
		set += nftMatch
	}
	set += "  }\n}\n"
	rs, err := firewall.ParseString(leaf.String())
	if err != nil {
		return nil, err
	}
	return &RuleSets{Leaf: rs, Iptables: ipt.String(), NftList: nl.String(), NftSet: set}, nil
}

// nftHeader replaces the benchmark's table in one transaction.
func nftHeader() string {
	return fmt.Sprintf("table inet %s\ndelete table inet %s\ntable inet %s {\n  chain input {\n    type filter hook input priority 0; policy accept;\n", nftTable, nftTable, nftTable)
}

// RunIn runs a command inside the namespace, with input on stdin, and
// returns how long it took.
func RunIn(netns, input string, name string, args ...string) (time.Duration, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", netns, name}, args...)...)
	cmd.Stdin = strings.NewReader(input)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %v: %.300s", name, strings.Join(args, " "), err, out)
	}
	return took, nil
}

// ClearNetfilter removes the benchmark's iptables rules and nft table
// from the namespace.
func ClearNetfilter(netns string) error {
	_, err1 := RunIn(netns, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n", "iptables-legacy-restore")
	_, err2 := RunIn(netns, fmt.Sprintf("table inet %s\ndelete table inet %s\n", nftTable, nftTable), "nft", "-f", "-")
	if err1 != nil {
		return err1
	}
	return err2
}

// Firewall is the leaf firewall loaded once; its rule sets are installed
// and its XDP program attached to the sandbox's B end on demand.
type Firewall struct {
	Coll *ebpf.Collection
	Maps firewall.Maps
	link link.Link
}

// LoadFirewall loads the firewall package's object.
func LoadFirewall() (*Firewall, error) {
	coll, err := loadPackage("firewall", nil)
	if err != nil {
		return nil, err
	}
	return &Firewall{Coll: coll, Maps: firewall.Maps(coll.Maps)}, nil
}

// Attach attaches the XDP program to ifname in netns.
func (f *Firewall) Attach(netns, ifname string) error {
	return netnsutil.Do("/var/run/netns/"+netns, func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		f.link, err = link.AttachXDP(link.XDPOptions{Program: f.Coll.Programs["firewall_xdp"], Interface: ifc.Index})
		return err
	})
}

// Detach detaches it.
func (f *Firewall) Detach() error {
	if f.link == nil {
		return nil
	}
	err := f.link.Close()
	f.link = nil
	return err
}

// Close releases everything.
func (f *Firewall) Close() {
	f.Detach()
	f.Coll.Close()
}

// Goodput sends UDP datagrams from nsA to dst:fwPort in nsB as fast as one
// socket can for window (after a short warm-up) and returns how many
// arrived per second at a socket in nsB, the throughput of the path with
// whatever filter the namespace holds, and the sending thread's CPU time
// per arrived datagram. The veth delivers in softirq context, which the
// kernel runs when the sending syscall re-enables bottom halves, on the
// sending thread: its CPU time holds the receive path and the filter too
// (less whatever ksoftirqd takes over when softirqs pile up).
func Goodput(nsA, nsB string, dst net.IP, window time.Duration) (rate, cpuNS float64, err error) {
	var rx, tx *net.UDPConn
	err = netnsutil.Do("/var/run/netns/"+nsB, func() error {
		var err error
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: dst, Port: fwPort})
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	defer rx.Close()
	rx.SetReadBuffer(4 << 20)
	err = netnsutil.Do("/var/run/netns/"+nsA, func() error {
		var err error
		tx, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: dst, Port: fwPort})
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	defer tx.Close()
	var got atomic.Int64
	var counting atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64)
		for {
			rx.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, err := rx.Read(buf); err != nil {
				return
			}
			if counting.Load() {
				got.Add(1)
			}
		}
	}()
	payload := bytes.Repeat([]byte{'x'}, 18) // a 64-byte frame
	send := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); {
			for range 64 {
				tx.Write(payload)
			}
		}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	send(100 * time.Millisecond)
	counting.Store(true)
	start := time.Now()
	cpu0, err := threadCPU()
	if err != nil {
		return 0, 0, err
	}
	send(window)
	cpu1, err := threadCPU()
	if err != nil {
		return 0, 0, err
	}
	elapsed := time.Since(start)
	counting.Store(false)
	rx.SetReadDeadline(time.Now())
	<-done
	n := got.Load()
	if n == 0 {
		return 0, 0, fmt.Errorf("no datagram arrived: the filter drops the measured flow")
	}
	return float64(n) / elapsed.Seconds(), float64(cpu1-cpu0) / float64(n), nil
}

// MedianGoodput runs Goodput rounds times back to back and returns the
// medians.
func MedianGoodput(nsA, nsB string, dst net.IP, window time.Duration, rounds int) (rate, cpuNS float64, err error) {
	var rates, cpus []float64
	for range rounds {
		r, c, err := Goodput(nsA, nsB, dst, window)
		if err != nil {
			return 0, 0, err
		}
		rates, cpus = append(rates, r), append(cpus, c)
	}
	return Median(rates), Median(cpus), nil
}
