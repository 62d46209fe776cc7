package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/bench"
)

// chainMain is `leafbench chain`: the cost per packet of chains of N
// members against one program doing the same work and an l3afd-style
// tail-call chain, with BPF_PROG_TEST_RUN.
func chainMain(args []string) {
	fs := flag.NewFlagSet("leafbench chain", flag.ExitOnError)
	rounds := fs.Int("rounds", 21, "timed runs of each configuration, interleaved; the median is reported")
	repeat := fs.Int("repeat", 1000000, "packets per run (BPF_PROG_TEST_RUN repeat)")
	useLeafd := fs.Bool("leafd", true, "also apply the chains through a real leafd (built from ./cmd/leafd) and measure the programs its hook links run")
	verbose := fs.Bool("v", false, "print every run to standard error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: leafbench chain [flags]\n\nCost per packet of chains of %v trivial XDP members (BPF_PROG_TEST_RUN, 64-byte frame).\n\n", bench.ChainSizes)
		fs.PrintDefaults()
	}
	fs.Parse(args)
	if fs.NArg() > 0 {
		fs.Usage()
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fatal(errors.New("needs root (BPF programs, network namespaces, bpffs)"))
	}
	if *rounds < 1 || *repeat < 1 {
		fatal(errors.New("-rounds and -repeat must be at least 1"))
	}
	cb := &chainBenchmark{rounds: *rounds, repeat: *repeat, leafd: *useLeafd, verbose: *verbose, r: &bench.Runner{}, loadStart: loadavg()}
	runReported(cb.run, &cb.loadEnd, cb.cleanup, cb.report)
}

type chainBenchmark struct {
	rounds, repeat int
	leafd, verbose bool

	loadStart, loadEnd string
	r                  *bench.Runner

	tmp     string
	sb      *bench.Sandbox
	d       *bench.Daemon
	cb      *bench.ChainBench
	entries map[int]*ebpf.Program
	res     *bench.ChainResult
	loads   []bench.FusedLoad
}

func (c *chainBenchmark) run(ctx context.Context) error {
	var err error
	c.r.Note("load the programs of bench/bpf/chainbench.bpf.o (embedded): for each N, a leaf tail-call chain (N copies of xdp_step, each rewritten by chain.Rewrite, with its own leaf_chain_next, wired in order), a leaf fused chain (N copies of xdp_step fused by chain.Fuse into one program), xdp_single_N, and xdp_root + N copies of xdp_coop_step (each its own coop_next, wired in order); xdp_empty")
	if c.cb, err = bench.LoadChainBench(bench.ChainSizes); err != nil {
		return err
	}
	if c.leafd {
		if err := c.startLeafd(ctx); err != nil {
			return err
		}
	}
	c.r.Note(fmt.Sprintf("time every configuration %d times, interleaved in shuffled order: BPF_PROG_TEST_RUN of a 64-byte frame, repeat %d", c.rounds, c.repeat))
	var progress func(string, bench.ChainSample)
	if c.verbose {
		progress = func(what string, s bench.ChainSample) {
			fmt.Fprintf(os.Stderr, "%-32s %7.2f ns/pkt (thread CPU)  %3d ns/pkt (kernel)\n", what, s.CPU, s.Kernel.Nanoseconds())
		}
	}
	if c.res, err = c.cb.Measure(c.rounds, c.repeat, progress); err != nil {
		return err
	}
	c.r.Note(fmt.Sprintf("build and load fused chains of %v members (chain.Fuse + map creation + verifier), %d times each", fusedLoadSizes, fusedLoadRounds))
	c.loads, err = bench.MeasureFusedLoads(fusedLoadSizes, fusedLoadRounds)
	return err
}

// The fused chains whose build and load time the benchmark reports.
var fusedLoadSizes = []int{2, 5, 10, 32}

const fusedLoadRounds = 11

// startLeafd builds leafd, gives it a repository with the chainbench
// package, and applies one chain per size on its own veth.
func (c *chainBenchmark) startLeafd(ctx context.Context) error {
	var err error
	if c.tmp, err = os.MkdirTemp("", "leafbench-chain-"); err != nil {
		return err
	}
	bin := filepath.Join(c.tmp, "bin") + "/"
	if err := c.r.Run("", "go", "build", "-o", bin, "./cmd/leafd"); err != nil {
		return fmt.Errorf("build (run leafbench from the module root, or use -leafd=false): %w", err)
	}
	repo := filepath.Join(c.tmp, "repo")
	c.r.Note("write the package " + bench.ChainPackage + " (leaf.yaml and chainbench.bpf.o) to " + repo)
	if err := bench.WriteChainRepository(repo); err != nil {
		return err
	}
	if c.sb, err = bench.NewSandbox(c.r, len(bench.ChainSizes)); err != nil {
		return err
	}
	if c.d, err = bench.StartDaemon(c.r, filepath.Join(bin, "leafd"), "--repository-allow-unsigned", repo, "--log-level", "info"); err != nil {
		return err
	}
	doc := filepath.Join(c.tmp, "chains.yaml")
	if err := os.WriteFile(doc, bench.ChainDocument(c.sb.NsB, c.sb.Ifaces, bench.ChainSizes), 0o644); err != nil {
		return err
	}
	c.r.Note(fmt.Sprintf("leaf --socket %s apply -f %s   # client.Apply, what leaf apply sends: one chain of N on bv<i> for N in %v", c.d.Socket, doc, bench.ChainSizes))
	if c.entries, err = bench.LeafdChains(ctx, c.d.Client, c.sb.NsB, c.sb.Ifaces, bench.ChainSizes); err != nil {
		return err
	}
	c.r.Note("for each hook: the status's link ID -> the link's program (checked: all N members fused into it, or for a tail-call chain, following leaf_chain_next from it visits N programs)")
	c.cb.AddLeafd(c.entries)
	return nil
}

func (c *chainBenchmark) cleanup() error {
	var errs []error
	for _, p := range c.entries {
		errs = append(errs, p.Close())
	}
	if c.cb != nil {
		errs = append(errs, c.cb.Close())
	}
	if c.d != nil {
		c.r.Note(fmt.Sprintf("leaf --socket %s apply -f <empty document>", c.d.Socket))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if _, err := bench.Clear(ctx, c.d.Client, false); err != nil {
			errs = append(errs, err)
		}
		cancel()
		errs = append(errs, c.d.Close())
	}
	if c.sb != nil {
		errs = append(errs, c.sb.Close())
	}
	if c.tmp != "" {
		c.r.Note("rm -r " + c.tmp)
		errs = append(errs, os.RemoveAll(c.tmp))
	}
	return errors.Join(errs...)
}

func (c *chainBenchmark) report() {
	res := c.res
	fmt.Printf("leafbench chain on %s\n", machine())
	fmt.Printf("load average (1, 5, 15 min) at start: %s; at end: %s\n", c.loadStart, c.loadEnd)
	fmt.Printf("BPF_PROG_TEST_RUN, 64-byte frame, %d packets per run, median of %d interleaved runs; ns per packet by thread CPU time", res.Repeat, res.Rounds)
	if res.Retried > 0 {
		fmt.Printf(" (%d runs redone after a signal)", res.Retried)
	}
	fmt.Printf("\nharness floor (empty XDP program): %.2f ns/pkt\n\n", res.Floor)

	leafd := res.Has(bench.Leafd)
	kinds := []bench.ChainKind{bench.Fused, bench.Leaf}
	if leafd {
		kinds = append(kinds, bench.Leafd)
	}
	kinds = append(kinds, bench.Single, bench.L3afd)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 1, ' ', tabwriter.Debug)
	row := func(cells ...string) { fmt.Fprintln(w, "| "+strings.Join(cells, "\t ")+"\t") }
	rule := func(n int) { fmt.Fprintln(w, "|"+strings.Repeat("---\t", n)) }
	ns := func(v float64) string { return fmt.Sprintf("%.2f", v) }

	head := []string{"N"}
	for _, k := range kinds {
		head = append(head, k.String())
	}
	for _, k := range kinds {
		head = append(head, map[bench.ChainKind]string{
			bench.Fused: "fused per hop", bench.Leaf: "tail-call per hop", bench.Leafd: "leafd per hop", bench.Single: "single per step", bench.L3afd: "l3afd per hop",
		}[k])
	}
	head = append(head, "fused/single", "tail-call/single", "tail-call/single net of floor")
	row(head...)
	rule(len(head))
	for _, n := range res.Sizes {
		cells := []string{fmt.Sprint(n)}
		for _, k := range kinds {
			cells = append(cells, ns(res.NS[k][n]))
		}
		for _, k := range kinds {
			h, ok := res.PerHop(k, n)
			cells = append(cells, map[bool]string{true: ns(h), false: "–"}[ok])
		}
		f, _ := res.Ratio(bench.Fused, bench.Single, n, false)
		r, _ := res.Ratio(bench.Leaf, bench.Single, n, false)
		rn, _ := res.Ratio(bench.Leaf, bench.Single, n, true)
		cells = append(cells, fmt.Sprintf("%.2fx", f), fmt.Sprintf("%.2fx", r), fmt.Sprintf("%.2fx", rn))
		row(cells...)
	}
	w.Flush()
	fmt.Println()
	fmt.Println("ns per packet. Per hop = (t(N) - t(1)) / (N - 1), the member's own step included; single per step is the")
	fmt.Println("same for the single program, the step alone. Net of floor: the empty program's time taken off both.")
	fmt.Println()

	// The kernel's own figures, rounded down to whole ns: a cross-check.
	fmt.Printf("Cross-check, the kernel's figures (its timer, whole ns per packet, median; empty program %.1f):\n\n", res.KernelFloor)
	head = []string{"N"}
	for _, k := range kinds {
		head = append(head, k.String())
	}
	row(head...)
	rule(len(head))
	for _, n := range res.Sizes {
		cells := []string{fmt.Sprint(n)}
		for _, k := range kinds {
			cells = append(cells, fmt.Sprintf("%.1f", res.KernelNS[k][n]))
		}
		row(cells...)
	}
	w.Flush()
	fmt.Println()

	big := res.Sizes[len(res.Sizes)-1]
	fh, _ := res.PerHop(bench.Fused, big)
	fr, _ := res.Ratio(bench.Fused, bench.Single, big, false)
	fmt.Printf("target: a %d-member fused chain within 1.1x of one program doing the %d steps: %.2fx: %s\n", big, big, fr, verdict(fr <= 1.1, "not met"))
	fmt.Printf("target: fused per hop under 1 ns: %.2f ns (N=%d): %s\n", fh, big, verdict(fh < 1, "not met"))
	lh, _ := res.PerHop(bench.Leaf, big)
	th, _ := res.PerHop(bench.L3afd, big)
	fmt.Printf("target: tail-call per-hop overhead no worse than a plain tail call: leaf %.2f ns, l3afd-style %.2f ns per hop (N=%d): %s\n",
		lh, th, big, verdict(lh <= th, fmt.Sprintf("leaf is %.2f ns (%.0f%%) more", lh-th, 100*(lh-th)/th)))
	if dh, ok := res.PerHop(bench.Leafd, big); ok {
		fmt.Printf("        (the chain leafd applied: %.2f ns per hop)\n", dh)
	}
	r, _ := res.Ratio(bench.Leaf, bench.Single, big, false)
	fmt.Printf("target: a %d-member tail-call chain within 1.5x of one program doing the %d steps: %.2fx: %s\n", big, big, r, verdict(r <= 1.5, "not met"))
	fmt.Println()
	fmt.Printf("Building and loading a fused chain (chain.Fuse, map creation, verifier; median of %d):\n\n", fusedLoadRounds)
	row("members", "instructions", "verified instructions", "build + load")
	rule(4)
	for _, l := range c.loads {
		row(fmt.Sprint(l.N), fmt.Sprint(l.Insns), fmt.Sprint(l.Verified), fmt.Sprintf("%.2f ms", float64(l.Median.Microseconds())/1000))
	}
	w.Flush()
	fmt.Println()
	fmt.Println("Steps (set-up and tear-down included):")
	for _, l := range c.r.Log {
		fmt.Println("  " + strings.ReplaceAll(l, "\n", "\n    "))
	}
}

func verdict(ok bool, otherwise string) string {
	if ok {
		return "met"
	}
	return otherwise
}
