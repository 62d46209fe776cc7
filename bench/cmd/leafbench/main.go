// Command leafbench measures leafd on this machine and prints a table:
// apply latency for one program and for 50 programs on 50 veth
// interfaces, a no-op re-apply of the 50, leafd's idle RSS with 0 and 50
// programs, and the sizes of the leafd and leaf binaries. It builds the
// binaries, creates the network namespaces, veth pairs, private bpffs and
// temporary directories it needs, removes them all at the end, and prints
// every command it ran. It needs root. `make bench` runs it from the
// module root.
//
// `leafbench chain` measures instead the cost per packet of a chain of N
// XDP members (N = 1, 2, 5, 10) with BPF_PROG_TEST_RUN, against one
// program doing the same work and an l3afd-style tail-call chain, and
// prints a table of ns per packet and the per-hop overhead (chain.go).
//
// `leafbench parallel` repeats only the paired applies of 50 programs
// against the sequential reference (XDP portfilter, TCX pktcount, XDP
// verifyheavy, XDP firewall; batch.go), which the default run also prints.
//
// `leafbench packages` measures the cost per packet of each package in
// packages/ against the empty program; `leafbench firewall` compares the
// firewall package with iptables and nftables holding the same rules, at
// 10 to 100 000 rules, in a throwaway network namespace (firewall.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/leaf-ebpf/leaf/bench"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "chain":
			chainMain(os.Args[2:])
			return
		case "packages":
			packagesMain(os.Args[2:])
			return
		case "firewall":
			firewallMain(os.Args[2:])
			return
		case "l3af":
			l3afMain(os.Args[2:])
			return
		case "parallel":
			parallelMain(os.Args[2:])
			return
		}
	}
	runs := flag.Int("runs", 20, "timed runs of each apply measurement")
	paired := flag.Int("paired-runs", 5, "paired runs of each apply of 50 against its sequential reference (the verifier-heavy and firewall ones take seconds each)")
	verbose := flag.Bool("v", false, "print every timing to standard error as it is taken")
	settle := flag.Duration("settle", 2*time.Second, "how long leafd idles before its RSS is read")
	flag.Parse()
	if os.Geteuid() != 0 {
		fatal(errors.New("needs root (network namespaces, bpffs, BPF programs)"))
	}
	if *runs < 1 || *paired < 1 {
		fatal(errors.New("-runs and -paired-runs must be at least 1"))
	}
	b := &benchmark{runs: *runs, pairedRuns: *paired, settle: *settle, verbose: *verbose, r: &bench.Runner{}, loadStart: loadavg()}
	b.runAndReport(b.run)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "leafbench:", err)
	os.Exit(1)
}

type row struct {
	what string
	s    bench.Summary
}

type benchmark struct {
	runs int
	// pairedRuns is how many paired runs each apply of 50 against its
	// reference gets (batch.go).
	pairedRuns int
	settle     time.Duration
	verbose    bool

	loadStart, loadEnd string
	r                  *bench.Runner

	tmp    string
	sb     *bench.Sandbox
	d      *bench.Daemon
	cmds   []string // what was timed
	rows   []row
	batch  []*batchWorkload
	rss    [][2]string
	sizes  [][3]string
	leafd  string
	leaf   string
	docOne string
}

func (b *benchmark) run(ctx context.Context) error {
	var err error
	if b.tmp, err = os.MkdirTemp("", "leafbench-"); err != nil {
		return err
	}

	// Binaries: default flags, then stripped. The default ones are the
	// ones measured.
	for _, v := range []struct{ name, dir, flags string }{
		{"default flags", "default", ""},
		{"-ldflags='-s -w'", "stripped", "-s -w"},
	} {
		out := filepath.Join(b.tmp, v.dir) + "/"
		args := []string{"build", "-o", out}
		if v.flags != "" {
			args = append(args, "-ldflags="+v.flags)
		}
		args = append(args, "./cmd/leafd", "./cmd/leaf")
		if err := b.r.Run("", "go", args...); err != nil {
			return fmt.Errorf("build (run leafbench from the module root): %w", err)
		}
		sz := [3]string{v.name}
		for i, bin := range []string{"leafd", "leaf"} {
			fi, err := os.Stat(filepath.Join(out, bin))
			if err != nil {
				return err
			}
			sz[i+1] = mb(fi.Size())
		}
		b.sizes = append(b.sizes, sz)
	}
	b.leafd, b.leaf = filepath.Join(b.tmp, "default", "leafd"), filepath.Join(b.tmp, "default", "leaf")

	if b.sb, err = bench.NewSandbox(b.r, 50); err != nil {
		return err
	}
	one, fifty, empty := bench.Document(b.sb.NsB, b.sb.Ifaces[:1]), bench.Document(b.sb.NsB, b.sb.Ifaces), bench.Document(b.sb.NsB, nil)
	b.docOne = filepath.Join(b.tmp, "one.yaml")
	for name, doc := range map[string][]byte{"one.yaml": one, "fifty.yaml": fifty, "empty.yaml": empty} {
		if err := os.WriteFile(filepath.Join(b.tmp, name), doc, 0o644); err != nil {
			return err
		}
	}

	// leafd as a host runs it (info logs, metrics on), on a private
	// bpffs, state directory and socket.
	repo, err := b.verifyHeavyRepo()
	if err != nil {
		return err
	}
	if b.d, err = bench.StartDaemon(b.r, b.leafd, "--metrics-address", "127.0.0.1:0", "--log-level", "info", "--repository-allow-unsigned", repo); err != nil {
		return err
	}

	// Idle RSS: fresh with nothing applied, then with 50 programs applied
	// once.
	if err := b.idleRSS(ctx, "leafd idle, 0 programs (fresh start)"); err != nil {
		return err
	}
	if _, err := b.apply(ctx, fifty, 50, false); err != nil {
		return err
	}
	if err := b.idleRSS(ctx, "leafd idle, 50 programs (applied once)"); err != nil {
		return err
	}
	if _, err := b.clear(ctx, true); err != nil {
		return err
	}

	sock := b.d.Socket
	leaf := func(doc string) string {
		return fmt.Sprintf("leaf --socket %s apply -f %s", sock, filepath.Join(b.tmp, doc))
	}
	b.cmds = append(b.cmds,
		"each apply is one PUT /v1/state over the API socket (client.Apply, what `leaf apply` sends), timed from request to answer:",
		"  apply 1:   "+leaf("one.yaml")+"    (from the empty state)",
		"  TCX 1:     "+leaf("tcx.yaml")+"    (from the empty state)",
		"  apply 50:  "+leaf("fifty.yaml")+"  (from the empty state)",
		"  no-op 50:  "+leaf("fifty.yaml")+"  (again, with the 50 attached)",
		"  delete 50: "+leaf("empty.yaml")+"  (with the 50 attached)",
		"between runs, untimed: "+leaf("empty.yaml")+", then wait until the kernel has freed the",
		"  programs and maps that ran (polled by ID), except in the 'right after' row",
		fmt.Sprintf("CLI row: the whole process `%s --socket %s apply -f %s`, timed from start to exit", b.leaf, sock, b.docOne),
	)
	b.cmds = append(b.cmds, pairedHow...)
	if err := b.timeApplies(ctx, "apply 1 program (XDP portfilter on 1 veth)", one, 1, true, nil); err != nil {
		return err
	}
	tcx := bench.TCXDocument(b.sb.NsB, b.sb.Ifaces[:1])
	if err := os.WriteFile(filepath.Join(b.tmp, "tcx.yaml"), tcx, 0o644); err != nil {
		return err
	}
	if err := b.timeApplies(ctx, "apply 1 program (TCX ingress pktcount on 1 veth)", tcx, 1, true, nil); err != nil {
		return err
	}
	if err := b.timeCLI(ctx); err != nil {
		return err
	}
	var cleared []bench.Cleared
	if err := b.timeApplies(ctx, "apply 50 programs (XDP portfilter on 50 veths)", fifty, 50, true, &cleared); err != nil {
		return err
	}
	var del, freed []time.Duration
	for _, c := range cleared {
		del, freed = append(del, c.Apply), append(freed, c.Freed)
	}
	b.rows = append(b.rows,
		row{"delete 50 (apply the empty document)", bench.Summarize(del)},
		row{"kernel frees those 50 programs and maps (after the delete answered)", bench.Summarize(freed)})
	if err := b.timeApplies(ctx, "apply 50 right after deleting 50 (kernel still freeing)", fifty, 50, false, nil); err != nil {
		return err
	}
	// The kernel's share: the same 50 programs loaded and attached
	// without leafd, while leafd holds nothing, paired run by run with
	// leafd's applies (batch.go).
	if err := b.batchPairs(ctx); err != nil {
		return err
	}
	// No-op: apply the 50 once, then time applying them again.
	if _, err := b.apply(ctx, fifty, 50, false); err != nil {
		return err
	}
	var took []time.Duration
	for i := 0; i < b.runs; i++ {
		d, err := b.apply(ctx, fifty, 50, true)
		if err != nil {
			return err
		}
		took = append(took, d)
	}
	b.rows = append(b.rows, row{"re-apply the same 50 (no-op)", bench.Summarize(took)})
	if err := b.idleRSS(ctx, "leafd idle, 50 programs (after all the timed runs above)"); err != nil {
		return err
	}
	_, err = b.clear(ctx, true)
	return err
}

func (b *benchmark) logf(format string, args ...any) {
	if b.verbose {
		fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	}
}

// clear detaches everything; with wait it also waits until the kernel has
// freed what ran.
func (b *benchmark) clear(ctx context.Context, wait bool) (bench.Cleared, error) {
	c, err := bench.Clear(ctx, b.d.Client, wait)
	b.logf("clear (wait %v): apply %s, freed after %s", wait, c.Apply, c.Freed)
	return c, err
}

// apply applies doc once and checks the answer: want attachments created,
// or kept with noop.
func (b *benchmark) apply(ctx context.Context, doc []byte, want int, noop bool) (time.Duration, error) {
	start := time.Now()
	res, err := b.d.Client.Apply(ctx, doc, false)
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("apply: %w", err)
	}
	b.logf("apply: %d actions, changed=%v: %s", len(res.Actions), res.Changed, took)
	if want > 0 {
		if err := bench.CheckApply(res, want, noop); err != nil {
			return 0, err
		}
	}
	return took, nil
}

// timeApplies applies doc (n attachments) from the empty state b.runs
// times, clearing in between; with settle each clear waits for the kernel
// to free what ran, and cleared (if not nil) collects what each clear
// measured.
func (b *benchmark) timeApplies(ctx context.Context, what string, doc []byte, n int, settle bool, cleared *[]bench.Cleared) error {
	var took []time.Duration
	for i := 0; i < b.runs; i++ {
		d, err := b.apply(ctx, doc, n, false)
		if err != nil {
			return err
		}
		took = append(took, d)
		c, err := b.clear(ctx, settle || i == b.runs-1)
		if err != nil {
			return err
		}
		if cleared != nil {
			*cleared = append(*cleared, c)
		}
	}
	b.rows = append(b.rows, row{what, bench.Summarize(took)})
	return nil
}

// timeCLI times the leaf CLI process applying one program: what an
// operator waits for.
func (b *benchmark) timeCLI(ctx context.Context) error {
	var took []time.Duration
	for i := 0; i < b.runs; i++ {
		cmd := exec.CommandContext(ctx, b.leaf, "--socket", b.d.Socket, "apply", "-f", b.docOne)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		took = append(took, time.Since(start))
		b.logf("leaf apply -f: %s", took[len(took)-1])
		if err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, out)
		}
		if _, err := b.clear(ctx, true); err != nil {
			return err
		}
	}
	b.rows = append(b.rows, row{"`leaf apply -f` 1 program (whole CLI process)", bench.Summarize(took)})
	return nil
}

func (b *benchmark) idleRSS(ctx context.Context, what string) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(b.settle):
	}
	rss, err := b.d.RSS()
	if err != nil {
		return err
	}
	b.rss = append(b.rss, [2]string{what, mb(rss)})
	return nil
}

func (b *benchmark) cleanup() error {
	var errs []error
	if b.d != nil {
		// Detach before leafd stops: SIGTERM leaves programs attached.
		b.r.Note(fmt.Sprintf("leaf --socket %s apply -f %s", b.d.Socket, filepath.Join(b.tmp, "empty.yaml")))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if _, err := b.d.Client.Apply(ctx, bench.Document("", nil), false); err != nil {
			errs = append(errs, err)
		}
		cancel()
		errs = append(errs, b.d.Close())
	}
	if b.sb != nil {
		errs = append(errs, b.sb.Close())
	}
	if b.tmp != "" {
		b.r.Note("rm -r " + b.tmp)
		errs = append(errs, os.RemoveAll(b.tmp))
	}
	return errors.Join(errs...)
}

func (b *benchmark) report() {
	fmt.Printf("leafbench on %s\n", machine())
	fmt.Printf("load average (1, 5, 15 min) at start: %s; at end: %s\n\n", b.loadStart, b.loadEnd)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(w, "| measurement\t runs\t median\t p90\t min\t max\t")
	fmt.Fprintln(w, "|---\t---\t---\t---\t---\t---\t")
	for _, r := range b.rows {
		fmt.Fprintf(w, "| %s\t %d\t %s\t %s\t %s\t %s\t\n", r.what, r.s.N, ms(r.s.Median), ms(r.s.P90), ms(r.s.Min), ms(r.s.Max))
	}
	w.Flush()
	fmt.Println()
	b.reportBatch()
	if len(b.rss) > 0 { // not measured by every subcommand
		fmt.Fprintf(w, "| leafd RSS (VmRSS after %s idle)\t RSS\t\n", b.settle)
		fmt.Fprintln(w, "|---\t---\t")
		for _, r := range b.rss {
			fmt.Fprintf(w, "| %s\t %s\t\n", r[0], r[1])
		}
		w.Flush()
		fmt.Println()
	}
	if len(b.sizes) > 0 {
		fmt.Fprintf(w, "| binary size (%s, %s/%s)\t leafd\t leaf\t\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
		fmt.Fprintln(w, "|---\t---\t---\t")
		for _, s := range b.sizes {
			fmt.Fprintf(w, "| %s\t %s\t %s\t\n", s[0], s[1], s[2])
		}
		w.Flush()
		fmt.Println()
	}
	fmt.Println("What is timed:")
	for _, c := range b.cmds {
		fmt.Println("  " + c)
	}
	fmt.Println()
	fmt.Println("Commands run (set-up and tear-down included):")
	for _, c := range b.r.Log {
		fmt.Println("  " + strings.ReplaceAll(c, "\n", "\n    "))
	}
}

// median returns the median of the first row whose description starts
// with prefix.
func (b *benchmark) median(prefix string) (time.Duration, bool) {
	for _, r := range b.rows {
		if strings.HasPrefix(r.what, prefix) {
			return r.s.Median, true
		}
	}
	return 0, false
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// machine describes the host: CPU count, model and kernel.
func machine() string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	kernel := "unknown kernel"
	if unix.Uname(&u) == nil {
		kernel = unix.ByteSliceToString(u.Release[:])
	}
	return fmt.Sprintf("%d CPUs (%s), Linux %s", runtime.NumCPU(), model, kernel)
}

// loadavg returns the 1, 5 and 15 minute load averages: other work on the
// machine shows in the timings.
func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
