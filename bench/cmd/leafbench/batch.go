package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/leaf-ebpf/leaf/bench"
	"github.com/leaf-ebpf/leaf/packages"
)

// batchWorkload is one apply of 50 compared with its sequential
// reference: the same 50 programs loaded and attached one after another
// by cilium/ebpf in leafbench's own process.
type batchWorkload struct {
	name        string // the rows' description
	file        string // the document, written to the temporary directory
	doc         func(netns string, ifaces []string) []byte
	object      []byte // what the reference loads: this ELF's program fn
	fn          string
	attach      bench.Attacher
	leaf, ref   []time.Duration
	ratios      []float64 // leaf/ref, run by run
	xdpMin, xdp int       // XDP link programs elsewhere on the machine (min, max)
}

// batchPairs times the applies of 50 against the sequential reference
// in pairs, run by run (leafd's apply, then the reference, each from
// the empty state with the kernel done freeing the previous run's
// programs), so that both see the same machine load: for the
// portfilter and the TCX pktcount (attaching dominates: each attach of
// a new XDP program while the XDP dispatcher holds fewer than 48, and
// every TCX attach, waits for an RCU grace period), verifyheavy (the
// verifier dominates) and the firewall (loading dominates, but most of
// it is allocating a per-CPU map slot by slot under one kernel-wide
// mutex). leafd must serve bench.WriteVerifyHeavyRepository's repository
// (verifyHeavyRepo).
func (b *benchmark) batchPairs(ctx context.Context) error {
	portfilter, err := packages.FS.ReadFile("portfilter/portfilter.bpf.o")
	if err != nil {
		return err
	}
	pktcount, err := packages.FS.ReadFile("pktcount/pktcount.bpf.o")
	if err != nil {
		return err
	}
	firewall, err := packages.FS.ReadFile("firewall/firewall.bpf.o")
	if err != nil {
		return err
	}
	b.batch = []*batchWorkload{
		{name: "50 XDP portfilter on 50 veths", file: "fifty.yaml", doc: bench.Document, object: portfilter, fn: "xdp_port_filter", attach: bench.XDPNative},
		{name: "50 TCX pktcount on 50 veths", file: "tcx50.yaml", doc: bench.TCXDocument, object: pktcount, fn: "count_tc", attach: bench.TCXIngress},
		{name: "50 XDP verifyheavy on 50 veths", file: "verifyheavy.yaml", doc: bench.VerifyHeavyDocument, object: bench.VerifyHeavyObject, fn: "xdp_verify_heavy", attach: bench.XDPNative},
		{name: "50 XDP firewall on 50 veths", file: "firewall.yaml", doc: bench.FirewallDocument, object: firewall, fn: "firewall_xdp", attach: bench.XDPNative},
	}
	for _, w := range b.batch {
		doc := w.doc(b.sb.NsB, b.sb.Ifaces)
		if err := os.WriteFile(filepath.Join(b.tmp, w.file), doc, 0o644); err != nil {
			return err
		}
		b.cmds = append(b.cmds, fmt.Sprintf("  paired %s: leafd %s, then bench.DirectProgram(program %s)", w.name, filepath.Join(b.tmp, w.file), w.fn))
		w.xdpMin = -1
		for i := 0; i < b.pairedRuns; i++ {
			if err := w.pair(ctx, b, doc); err != nil {
				return err
			}
		}
		b.rows = append(b.rows,
			row{fmt.Sprintf("paired: leafd applies %s", w.name), bench.Summarize(w.leaf)},
			row{fmt.Sprintf("paired: reference loads+attaches %s (cilium/ebpf, one after another)", w.name), bench.Summarize(w.ref)})
	}
	return nil
}

// pair takes one paired measurement.
func (w *batchWorkload) pair(ctx context.Context, b *benchmark, doc []byte) error {
	n, err := bench.XDPLinkPrograms()
	if err != nil {
		return err
	}
	if w.xdpMin < 0 || n < w.xdpMin {
		w.xdpMin = n
	}
	w.xdp = max(w.xdp, n)
	bench.SettleRCU() // counting the dispatcher's programs opened and closed a descriptor per link
	took, err := b.apply(ctx, doc, len(b.sb.Ifaces), false)
	if err != nil {
		return err
	}
	if _, err := b.clear(ctx, true); err != nil {
		return err
	}
	ref, closeAll, err := bench.DirectProgram(w.object, w.fn, w.attach, b.sb.NsB, b.sb.Ifaces)
	if err != nil {
		return err
	}
	if err := closeAll(true); err != nil {
		return err
	}
	b.logf("paired %s: leafd %s, reference %s", w.name, took, ref)
	w.leaf, w.ref = append(w.leaf, took), append(w.ref, ref)
	w.ratios = append(w.ratios, float64(took)/float64(ref))
	return nil
}

// reportBatch prints the target against each paired workload.
func (b *benchmark) reportBatch() {
	for _, w := range b.batch {
		if len(w.ratios) == 0 {
			continue
		}
		l, r := bench.Summarize(w.leaf).Median, bench.Summarize(w.ref).Median
		ratio := bench.Median(w.ratios)
		fmt.Printf("target: apply %s at most 0.7x of the sequential reference, paired in the same run: median leafd %s, median reference %s, median of the %d per-run ratios %.2fx: %s (programs of XDP links elsewhere on the machine: %d to %d)\n",
			w.name, ms(l), ms(r), len(w.ratios), ratio, verdict(ratio <= 0.7, "not met"), w.xdpMin, w.xdp)
	}
	fmt.Println()
}

// parallelMain is `leafbench parallel`: only the paired applies of 50
// against the sequential reference (what `make bench` prints among the
// rest), to repeat them quickly.
func parallelMain(args []string) {
	fs := flag.NewFlagSet("leafbench parallel", flag.ExitOnError)
	runs := fs.Int("runs", 10, "paired runs of each workload")
	verbose := fs.Bool("v", false, "print every timing to standard error as it is taken")
	fs.Parse(args)
	if os.Geteuid() != 0 {
		fatal(errors.New("needs root (network namespaces, bpffs, BPF programs)"))
	}
	if *runs < 1 {
		fatal(errors.New("-runs must be at least 1"))
	}
	b := &benchmark{pairedRuns: *runs, verbose: *verbose, r: &bench.Runner{}, loadStart: loadavg()}
	b.runAndReport(b.runParallel)
}

// runAndReport runs a subcommand's measurements, cleans up after them and
// prints the report, or exits with the error.
func (b *benchmark) runAndReport(run func(context.Context) error) {
	runReported(run, &b.loadEnd, b.cleanup, b.report)
}

// runReported runs measurements until they end or a signal comes, notes
// the load average in loadEnd, cleans up, then reports or exits with the
// measurements' error.
func runReported(run func(context.Context) error, loadEnd *string, cleanup func() error, report func()) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := run(ctx)
	*loadEnd = loadavg()
	if cerr := cleanup(); cerr != nil {
		fmt.Fprintln(os.Stderr, "leafbench: cleanup:", cerr)
	}
	if err != nil {
		fatal(err)
	}
	report()
}

// buildLeafd builds leafd into a new temporary directory (b.tmp) and
// returns the binary's path.
func (b *benchmark) buildLeafd() (string, error) {
	var err error
	if b.tmp, err = os.MkdirTemp("", "leafbench-"); err != nil {
		return "", err
	}
	out := filepath.Join(b.tmp, "bin") + "/"
	if err := b.r.Run("", "go", "build", "-o", out, "./cmd/leafd"); err != nil {
		return "", fmt.Errorf("build (run leafbench from the module root): %w", err)
	}
	return filepath.Join(out, "leafd"), nil
}

// runParallel builds leafd, makes the 50 veths, starts leafd on them and
// takes the paired measurements.
func (b *benchmark) runParallel(ctx context.Context) error {
	leafd, err := b.buildLeafd()
	if err != nil {
		return err
	}
	if b.sb, err = bench.NewSandbox(b.r, 50); err != nil {
		return err
	}
	repo, err := b.verifyHeavyRepo()
	if err != nil {
		return err
	}
	if b.d, err = bench.StartDaemon(b.r, leafd, "--metrics-address", "127.0.0.1:0", "--log-level", "info", "--repository-allow-unsigned", repo); err != nil {
		return err
	}
	b.cmds = append(b.cmds, "each apply is one PUT /v1/state over the API socket (client.Apply, what `leaf apply` sends), timed from request to answer;")
	b.cmds = append(b.cmds, pairedHow...)
	return b.batchPairs(ctx)
}

// pairedHow says what the paired rows time.
var pairedHow = []string{
	"paired rows: run by run, leafd's apply of the 50 from the empty state, then the reference in leafbench's own",
	"  process: for each veth, ebpf.NewCollection (the one program and its maps) and the attach (XDP native or TCX),",
	"  one after another; nothing validated, pinned or recorded; the kernel frees each run's programs before the next:",
}

// verifyHeavyRepo writes the verifyheavy package's repository into b.tmp
// and returns its directory.
func (b *benchmark) verifyHeavyRepo() (string, error) {
	repo := filepath.Join(b.tmp, "repo")
	b.r.Note("write the verifyheavy package (bench/bpf/verifyheavy.bpf.o) to " + repo)
	return repo, bench.WriteVerifyHeavyRepository(repo)
}
