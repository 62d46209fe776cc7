package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/leaf-ebpf/leaf/bench"
	"github.com/leaf-ebpf/leaf/internal/frames"
	"github.com/leaf-ebpf/leaf/internal/netnsutil"
)

// packagesMain: `leafbench packages`, the cost per packet of each package
// (BPF_PROG_TEST_RUN, 64-byte frames) against the empty program.
func packagesMain(args []string) {
	fs := flag.NewFlagSet("leafbench packages", flag.ExitOnError)
	rounds := fs.Int("rounds", 15, "timed runs of each program, interleaved; the median is reported")
	repeat := fs.Int("repeat", 200000, "packets per run (BPF_PROG_TEST_RUN repeat)")
	fs.Parse(args)
	requireRoot()
	r := &bench.Runner{}
	sb, err := bench.NewSandbox(r, 0)
	if err != nil {
		fatal(err)
	}
	defer sb.Close()
	load := loadavg()
	var costs []float64
	var cases []bench.CostCase
	// Inside the sandbox: mirror copies go to its loopback.
	err = netnsutil.Do("/var/run/netns/"+sb.NsB, func() error {
		pc, err := bench.LoadPackageCosts()
		if err != nil {
			return err
		}
		defer pc.Close()
		cases = pc.Cases
		costs, err = bench.MeasureCosts(pc.Cases, *rounds, *repeat)
		return err
	})
	if err != nil {
		sb.Close()
		fatal(err)
	}
	fmt.Printf("\nCost per packet, BPF_PROG_TEST_RUN, 64-byte frames, median of %d runs of %d packets (thread CPU time). Load average %s → %s.\n\n", *rounds, *repeat, load, loadavg())
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "| program, case\t| ns/packet\t| over its floor\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|")
	for i, c := range cases {
		floor := costs[0]
		if c.Prog.Type() == ebpf.SchedCLS {
			floor = costs[1]
		}
		over := fmt.Sprintf("%+.1f ns", costs[i]-floor)
		if i < 2 {
			over = "—"
		}
		fmt.Fprintf(tw, "| %s\t| %.1f\t| %s\t|\n", c.Name, costs[i], over)
	}
	tw.Flush()
}

// firewallMain: `leafbench firewall`, leaf's firewall against iptables
// and nftables with the same rules, side by side.
func firewallMain(args []string) {
	fs := flag.NewFlagSet("leafbench firewall", flag.ExitOnError)
	window := fs.Duration("window", 500*time.Millisecond, "how long each throughput measurement sends")
	vethRounds := fs.Int("veth-rounds", 3, "throughput measurements per filter and rule set; the median is reported")
	sizes := fs.String("sizes", "10,1000,10000,100000", "rule counts, comma-separated")
	rounds := fs.Int("rounds", 9, "BPF_PROG_TEST_RUN runs per rule set")
	repeat := fs.Int("repeat", 200000, "packets per BPF_PROG_TEST_RUN run")
	fs.Parse(args)
	requireRoot()
	r := &bench.Runner{}
	sb, err := bench.NewSandbox(r, 1)
	if err != nil {
		fatal(err)
	}
	defer sb.Close()
	a, b := net.IPv4(10, 77, 0, 1), net.IPv4(10, 77, 0, 2)
	if err := errors.Join(r.Run("", "ip", "-n", sb.NsA, "addr", "add", "10.77.0.1/24", "dev", "bv0"),
		r.Run("", "ip", "-n", sb.NsB, "addr", "add", "10.77.0.2/24", "dev", "bv0")); err != nil {
		fatal(err)
	}
	fw, err := bench.LoadFirewall()
	if err != nil {
		fatal(err)
	}
	defer fw.Close()
	load := loadavg()
	var ns []int
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 131072 {
			fatal(fmt.Errorf("-sizes: %q is not a rule count from 1 to 131072", f))
		}
		ns = append(ns, n)
	}
	res, err := compareFirewalls(sb, fw, a, b, fwOptions{sizes: ns, window: *window, vethRounds: *vethRounds, rounds: *rounds, repeat: *repeat})
	if err != nil {
		sb.Close()
		fw.Close()
		fatal(err)
	}
	res.print(load, loadavg(), *window, *vethRounds, *rounds, *repeat)
}

func requireRoot() {
	if os.Geteuid() != 0 {
		fatal(errors.New("needs root (BPF programs, network namespaces, netfilter in them)"))
	}
}

// fwRow is one rule count and position of the matching rule.
type fwRow struct {
	n                                    int
	first                                bool
	leafNS                               float64 // BPF_PROG_TEST_RUN
	leaf, iptables, nftList, nftSet      float64 // datagrams per second through the veth
	leafCPU, iptCPU, listCPU, setCPU     float64 // sending thread CPU ns per arrived datagram
	leafRepl, iptRepl, listRepl, setRepl time.Duration
}

type fwResult struct {
	floorNS               float64
	baseline, baselineCPU float64 // no filter at all
	rows                  []fwRow
}

type fwOptions struct {
	sizes                      []int
	window                     time.Duration
	vethRounds, rounds, repeat int
}

func compareFirewalls(sb *bench.Sandbox, fw *bench.Firewall, a, b net.IP, o fwOptions) (*fwResult, error) {
	rounds, repeat := o.rounds, o.repeat
	goodput := func() (float64, float64, error) {
		return bench.MedianGoodput(sb.NsA, sb.NsB, b, o.window, o.vethRounds)
	}
	res := &fwResult{}
	empty, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL", Instructions: emptyXDP()})
	if err != nil {
		return nil, err
	}
	defer empty.Close()
	src, _ := netip.AddrFromSlice(a.To4())
	dst, _ := netip.AddrFromSlice(b.To4())
	frame := frames.Packet{Src: src, Dst: dst, Proto: frames.UDP, Sport: 40000, Dport: 7777}.Build()
	floor, err := bench.MeasureCosts([]bench.CostCase{{Name: "empty", Prog: empty, Frame: frame, Want: 2}}, rounds, repeat)
	if err != nil {
		return nil, err
	}
	res.floorNS = floor[0]
	if res.baseline, res.baselineCPU, err = goodput(); err != nil {
		return nil, fmt.Errorf("no filter: %w", err)
	}
	for _, n := range o.sizes {
		for _, first := range []bool{false, true} {
			row := fwRow{n: n, first: first}
			rs, err := bench.MakeRuleSets(n, first, src)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(os.Stderr, "leafbench: %d rules, matching rule %s\n", n, map[bool]string{true: "first", false: "last"}[first])
			// leaf: install (a full rule set replaced by another of the
			// same size is the second install), cost, throughput.
			for range 2 {
				if row.leafRepl, err = fw.Maps.Install(rs.Leaf); err != nil {
					return nil, err
				}
			}
			c, err := bench.MeasureCosts([]bench.CostCase{{Name: "firewall", Prog: fw.Coll.Programs["firewall_xdp"], Frame: frame, Want: 2}}, rounds, repeat)
			if err != nil {
				return nil, err
			}
			row.leafNS = c[0]
			if err := fw.Attach(sb.NsB, "bv0"); err != nil {
				return nil, err
			}
			row.leaf, row.leafCPU, err = goodput()
			fw.Detach()
			if err != nil {
				return nil, fmt.Errorf("leaf: %w", err)
			}
			for _, nf := range []struct {
				input string
				cmd   []string
				repl  *time.Duration
				rate  *float64
				cpu   *float64
			}{
				{rs.Iptables, []string{"iptables-legacy-restore"}, &row.iptRepl, &row.iptables, &row.iptCPU},
				{rs.NftList, []string{"nft", "-f", "-"}, &row.listRepl, &row.nftList, &row.listCPU},
				{rs.NftSet, []string{"nft", "-f", "-"}, &row.setRepl, &row.nftSet, &row.setCPU},
			} {
				for range 2 {
					if *nf.repl, err = bench.RunIn(sb.NsB, nf.input, nf.cmd[0], nf.cmd[1:]...); err != nil {
						return nil, err
					}
				}
				*nf.rate, *nf.cpu, err = goodput()
				if cerr := bench.ClearNetfilter(sb.NsB); err == nil {
					err = cerr
				}
				if err != nil {
					return nil, fmt.Errorf("%s: %w", nf.cmd[0], err)
				}
			}
			res.rows = append(res.rows, row)
		}
	}
	return res, nil
}

func (res *fwResult) print(loadStart, loadEnd string, window time.Duration, vethRounds, rounds, repeat int) {
	fmt.Printf("\nFirewall: the measured flow (UDP 10.77.0.1 → 10.77.0.2:7777, 64-byte frames) is accepted by one rule, placed last or first among n-1 rules that do not match it (deny from distinct /32 sources). Load average %s → %s.\n", loadStart, loadEnd)
	fmt.Printf("\nleaf's cost per packet, BPF_PROG_TEST_RUN (median of %d runs of %d packets; empty XDP program %.1f ns):\n\n", rounds, repeat, res.floorNS)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "| rules\t| matching rule\t| ns/packet\t| over the floor\t| vs 10 rules\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|")
	base := map[bool]float64{}
	for _, r := range res.rows {
		if r.n == bench.FirewallSizes[0] {
			base[r.first] = r.leafNS
		}
		fmt.Fprintf(tw, "| %d\t| %s\t| %.1f\t| %.1f\t| %.2fx\t|\n", r.n, pos(r.first), r.leafNS, r.leafNS-res.floorNS, r.leafNS/base[r.first])
	}
	tw.Flush()
	fmt.Printf("\nThrough the veth, the same path for all (median of %d windows of %v per cell): CPU time of the sending thread per arrived datagram, the receive path and the filter included, in µs; in brackets thousands of datagrams per second. No filter: %.2f µs [%.0f k/s].\n\n", vethRounds, window, res.baselineCPU/1000, res.baseline/1000)
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "| rules\t| matching rule\t| leaf XDP\t| iptables (legacy)\t| nftables rule list\t| nftables set\t| iptables / leaf\t| nft set / leaf\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|")
	cell := func(cpu, rate float64) string { return fmt.Sprintf("%.2f [%.0f]", cpu/1000, rate/1000) }
	for _, r := range res.rows {
		fmt.Fprintf(tw, "| %d\t| %s\t| %s\t| %s\t| %s\t| %s\t| %.1fx\t| %.2fx\t|\n", r.n, pos(r.first), cell(r.leafCPU, r.leaf), cell(r.iptCPU, r.iptables),
			cell(r.listCPU, r.nftList), cell(r.setCPU, r.nftSet), r.iptCPU/r.leafCPU, r.setCPU/r.leafCPU)
	}
	tw.Flush()
	fmt.Printf("\nTime to replace the whole rule set with another of the same size (leaf: leaf-firewall's Install, generation flip and RCU wait included; iptables-legacy-restore; nft -f in one transaction):\n\n")
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "| rules\t| leaf\t| iptables (legacy)\t| nftables rule list\t| nftables set\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|")
	for _, r := range res.rows {
		if r.first {
			continue
		}
		fmt.Fprintf(tw, "| %d\t| %s\t| %s\t| %s\t| %s\t|\n", r.n, ms(r.leafRepl), ms(r.iptRepl), ms(r.listRepl), ms(r.setRepl))
	}
	tw.Flush()
}

func pos(first bool) string {
	if first {
		return "first"
	}
	return "last"
}

func emptyXDP() asm.Instructions {
	return asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}
}
