package e2e

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/internal/crashpoint"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// crashDoc is one of the two documents the crash test moves between, and
// what the kernel must run for it.
type crashDoc struct {
	name string
	yaml []byte
	// order is the XDP chain on B's interface, first member first.
	order []string
	// s1Port is seqcount's port constant in s1; pfTCP portfilter's
	// filter_tcp constant; pfPorts its blocked_ports map.
	s1Port  uint16
	pfTCP   bool
	pfPorts []uint16
	// t1TC: t1 runs on TC ingress of B; else on XDP of A (the hook move).
	t1TC bool
	// cgVersion is the pktcount version on the cgroup hook, which a
	// bpf_link_update swaps (no chain).
	cgVersion string
	// exUID is execcount's only_uid constant on a tracepoint, whose
	// links cannot swap programs: a new link is made beside the old.
	exUID uint32
}

func crashDocs(p *testenv.Pair, cg, chainMode string) (a, b crashDoc) {
	cgHook := "{type: cgroup_skb, direction: egress, cgroup: " + cg + "}"
	xdpB := fmt.Sprintf("{type: xdp, interface: %s, netns: %s, chainMode: %s}", p.IfB, p.NsB, chainMode)
	tcB := fmt.Sprintf("{type: tc, direction: ingress, interface: %s, netns: %s}", p.IfB, p.NsB)
	xdpA := fmt.Sprintf("{type: xdp, interface: %s, netns: %s}", p.IfA, p.NsA)
	a = crashDoc{name: "A", order: []string{"s1", "s2", "pf"}, s1Port: 9000, pfTCP: true, pfPorts: []uint16{7001}, t1TC: true, cgVersion: "1.0.0", exUID: 1000,
		yaml: doc(
			"name: ex\npackage: execcount@1.0.0\nhook: {type: tracepoint, tracepoint: sched/sched_process_exec}\nparams: {only_uid: 1000}",
			"name: cg\npackage: pktcount@1.0.0\nprogram: count_cgroup_skb\nhook: "+cgHook,
			"name: s1\npackage: seqcount@1.0.0\nprogram: seq_xdp\npriority: 1\nhook: "+xdpB+"\nparams: {port: 9000}",
			"name: s2\npackage: seqcount@1.0.0\nprogram: seq_xdp\npriority: 2\nhook: "+xdpB,
			"name: pf\npackage: portfilter@1.0.0\npriority: 3\nhook: "+xdpB+"\nparams: {ports: [7001], filter_tcp: true}",
			"name: t1\npackage: seqcount@1.0.0\nprogram: seq_tc\npriority: 1\nhook: "+tcB,
		)}
	// B reorders the chain, changes a constant in s1 and in pf, a map
	// parameter in pf, and moves t1 to another hook.
	b = crashDoc{name: "B", order: []string{"s2", "s1", "pf"}, s1Port: 9001, pfTCP: false, pfPorts: []uint16{7001, 7002}, cgVersion: "1.0.1", exUID: 1001,
		yaml: doc(
			"name: ex\npackage: execcount@1.0.0\nhook: {type: tracepoint, tracepoint: sched/sched_process_exec}\nparams: {only_uid: 1001}",
			"name: cg\npackage: pktcount@1.0.1\nprogram: count_cgroup_skb\nhook: "+cgHook,
			"name: s2\npackage: seqcount@1.0.0\nprogram: seq_xdp\npriority: 1\nhook: "+xdpB,
			"name: s1\npackage: seqcount@1.0.0\nprogram: seq_xdp\npriority: 2\nhook: "+xdpB+"\nparams: {port: 9001}",
			"name: pf\npackage: portfilter@1.0.0\npriority: 3\nhook: "+xdpB+"\nparams: {ports: [7001, 7002], filter_tcp: false}",
			"name: t1\npackage: seqcount@1.0.0\nprogram: seq_xdp\npriority: 1\nhook: "+xdpA,
		)}
	return a, b
}

// TestCrashAtEveryStep kills leafd (SIGKILL, from inside, through the
// leafcrash build) at every step boundary of an apply, in both
// directions between two documents, and at random moments; and once
// more while start-up settles what the first kill left. After each kill
// and restart the kernel runs exactly one whole document, the one
// `leaf status` reports; no pin, program or link of leaf's is left that
// no attachment explains; and the next apply succeeds.
//
// It runs with B's XDP chain linked by tail calls and fused.
func TestCrashAtEveryStep(t *testing.T) {
	testenv.RequireKernel(t)
	for _, mode := range []string{desired.ChainModeTailCall, desired.ChainModeFused} {
		t.Run(mode, func(t *testing.T) { crashAtEveryStep(t, mode) })
	}
}

func crashAtEveryStep(t *testing.T, chainMode string) {
	p := testenv.NewPair(t)
	cg := filepath.Join(cgroup2Root(t), fmt.Sprintf("leaf-crash-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Skipf("cannot create a cgroup: %v", err)
	}
	t.Cleanup(func() { os.Remove(cg) })
	docA, docB := crashDocs(p, cg, chainMode)
	trace := filepath.Join(t.TempDir(), "points")
	pkgRepo := pktcountRepo(t, "1.0.0", "1.0.1")
	args := append(fixtureRepos(t), "--repository-allow-unsigned", pkgRepo, "--no-builtin-repository")
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: args, Binary: testenv.CrashBinary(t)})
	apply(t, d, docA.yaml)
	checkCrashState(t, d, p, cg, docA, docB)

	// One uninterrupted apply each way lists the points an apply passes.
	passes := map[string][]string{}
	for _, to := range []crashDoc{docB, docA} {
		os.Remove(trace)
		runWithEnv(t, d, "LEAF_CRASH_LOG="+trace)
		apply(t, d, to.yaml)
		passes[to.name] = readPoints(t, trace)
	}
	d.Env = nil
	d.Stop()
	d.Restart()

	type trial struct {
		to    crashDoc
		point string
	}
	var trials []trial
	points := map[string]bool{}
	for _, to := range []crashDoc{docB, docA} {
		counts := map[string]int{}
		for _, pt := range passes[to.name] {
			counts[pt]++
		}
		for _, pt := range crashpoint.Points {
			n := counts[pt]
			if n == 0 || pt == crashpoint.RecoveredPins {
				continue
			}
			points[pt] = true
			// The first and last pass of each point.
			for _, k := range slices.Compact([]int{1, n}) {
				trials = append(trials, trial{to, fmt.Sprintf("%s:%d", pt, k)})
			}
		}
	}
	if len(points) < 10 {
		t.Fatalf("an apply passes only %d kill points (%v): the crash hooks are not wired", len(points), passes)
	}
	cur := docA
	other := func(c crashDoc) crashDoc {
		if c.name == "A" {
			return docB
		}
		return docA
	}
	undone := 0
	hideDir := t.TempDir()
	for i, tr := range trials {
		if tr.to.name == cur.name {
			// Get to the trial's starting document first.
			apply(t, d, other(cur).yaml)
			cur = other(cur)
		}
		runWithEnv(t, d, "LEAF_CRASH_AT="+tr.point)
		_, err := d.Client.Apply(ctx(t), tr.to.yaml, false)
		if _, exited := d.Exited(20 * time.Second); !exited {
			t.Fatalf("trial %d: leafd did not die at %s (apply: %v)", i, tr.point, err)
		}
		if i%5 == 2 {
			// Die again while start-up settles what this kill left.
			crashAtStart(t, d)
		}
		// Every third trial, the target's package is gone when leafd
		// comes back, so the interrupted apply cannot be finished and
		// start-up must undo it instead.
		hide := i%3 == 1
		pkgDir := filepath.Join(pkgRepo, "pktcount-"+tr.to.cgVersion)
		hidden := filepath.Join(hideDir, "pktcount-"+tr.to.cgVersion)
		if hide {
			if err := os.Rename(pkgDir, hidden); err != nil {
				t.Fatal(err)
			}
		}
		from := other(tr.to)
		d.Env = nil
		d.Restart()
		cur = checkCrashState(t, d, p, cg, docA, docB)
		t.Logf("trial %d: killed at %s applying %s (package there: %v); leafd came back running %s", i, tr.point, tr.to.name, !hide, cur.name)
		if hide {
			if !strings.HasPrefix(tr.point, crashpoint.AfterCommit) && cur.name != from.name {
				t.Fatalf("trial %d: the apply of %s could not be finished, yet leafd runs it", i, tr.to.name)
			}
			if cur.name == from.name {
				undone++
			}
			if err := os.Rename(hidden, pkgDir); err != nil {
				t.Fatal(err)
			}
			d.Stop()
			d.Restart()
		}
		apply(t, d, other(cur).yaml)
		cur = checkCrashState(t, d, p, cg, docA, docB)
	}
	// Random moments: the apply is killed from outside after a delay.
	const randomTrials = 6
	for i := 0; i < randomTrials; i++ {
		to := other(cur)
		delay := time.Duration(rand.IntN(400)) * time.Millisecond
		done := make(chan error, 1)
		go func() {
			_, err := d.Client.Apply(context.Background(), to.yaml, false)
			done <- err
		}()
		time.Sleep(delay)
		d.Kill()
		<-done
		d.Restart()
		cur = checkCrashState(t, d, p, cg, docA, docB)
		t.Logf("random trial %d: killed %v into an apply of %s; leafd came back running %s", i, delay, to.name, cur.name)
		apply(t, d, other(cur).yaml)
		cur = checkCrashState(t, d, p, cg, docA, docB)
	}
	if undone == 0 {
		t.Error("no trial undid an interrupted apply")
	}
	t.Logf("%d kill points, %d trials at them (%d undone at start-up), %d at random moments", len(points), len(trials), undone, randomTrials)
}

// runWithEnv restarts leafd with env.
func runWithEnv(t *testing.T, d *testenv.Daemon, env ...string) {
	t.Helper()
	d.Stop()
	d.Env = env
	d.Restart()
}

// crashAtStart runs leafd until it kills itself in start-up, after it
// settled the interrupted apply's pins and before it reconciled.
func crashAtStart(t *testing.T, d *testenv.Daemon) {
	t.Helper()
	cmd := exec.Command(d.Binary, d.Args...)
	cmd.Env = append(os.Environ(), "LEAF_CRASH_AT="+crashpoint.RecoveredPins)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("leafd did not kill itself in start-up: %v\n%s", err, out)
	}
}

func readPoints(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// checkCrashState checks that the kernel runs exactly one of the two
// documents, the one status reports, and that bpffs holds nothing else
// of leaf's. It returns the document that runs.
func checkCrashState(t *testing.T, d *testenv.Daemon, p *testenv.Pair, cg string, a, b crashDoc) crashDoc {
	t.Helper()
	st := status(t, d)
	names := make([]string, 0, len(st))
	for n := range st {
		names = append(names, n)
	}
	sort.Strings(names)
	if !slices.Equal(names, []string{"cg", "ex", "pf", "s1", "s2", "t1"}) {
		t.Fatalf("status lists %v", names)
	}
	want := a
	if st["t1"].HookType == "xdp" {
		want = b
	}
	ids := map[uint32]string{}
	for n, s := range st {
		if s.State != "attached" {
			t.Fatalf("%s is %s: %s", n, s.State, s.Problem)
		}
		if got := pinnedProgID(t, d, n); got != s.ProgramID {
			t.Fatalf("%s: status says program %d, bpffs pins %d", n, s.ProgramID, got)
		}
		ids[s.ProgramID] = n
	}
	// The XDP chain on B, walked in the kernel: through its PROG_ARRAYs,
	// or, fused, one program whose maps come member by member in the
	// order the kernel first meets them (so member k's .rodata is the
	// program's k-th).
	head := xdpProgID(t, p.NsB, p.IfB)
	rodata := map[string]int{}
	if st["s1"].Chain.Mode == desired.ChainModeFused {
		for k, n := range want.order {
			if st[n].ProgramID != head || st[n].Chain.Position != k+1 {
				t.Fatalf("document %s: %s is member %d in program %d; the hook runs the fused program %d, with %v", want.name, n, st[n].Chain.Position, st[n].ProgramID, head, want.order)
			}
			rodata[n] = k
		}
	} else if chain := kernelChain(t, head, ids); !slices.Equal(chain, want.order) {
		t.Fatalf("status says document %s (chain %v); the kernel runs the chain %v", want.name, want.order, chain)
	}
	if got := rodataUint(t, st["s1"].ProgramID, rodata["s1"], "testdata/packages/seqcount/seqcount.bpf.o", "port"); got != uint64(want.s1Port) {
		t.Fatalf("document %s: s1 runs with port %d, want %d", want.name, got, want.s1Port)
	}
	if got := rodataUint(t, st["pf"].ProgramID, rodata["pf"], "packages/portfilter/portfilter.bpf.o", "filter_tcp"); (got != 0) != want.pfTCP {
		t.Fatalf("document %s: pf runs with filter_tcp %d, want %v", want.name, got, want.pfTCP)
	}
	if got := progMapKeys(t, st["pf"].ProgramID, "blocked_ports"); !slices.Equal(got, want.pfPorts) {
		t.Fatalf("document %s: pf's blocked_ports holds %v, want %v", want.name, got, want.pfPorts)
	}
	tcx := tcxPrograms(t, p.NsB, p.IfB, ebpf.AttachTCXIngress)
	onA := xdpProgID(t, p.NsA, p.IfA)
	if want.t1TC {
		if len(tcx) != 1 || uint32(tcx[0].ID) != st["t1"].ProgramID || onA != 0 {
			t.Fatalf("document A: TC ingress of B runs %v, XDP of A runs %d; want t1 (%d) on TC only", tcx, onA, st["t1"].ProgramID)
		}
	} else if len(tcx) != 0 || onA != st["t1"].ProgramID {
		t.Fatalf("document B: TC ingress of B runs %v, XDP of A runs %d; want t1 (%d) on XDP of A only", tcx, onA, st["t1"].ProgramID)
	}
	if got := cgroupPrograms(t, cg); !slices.Equal(got, []uint32{st["cg"].ProgramID}) || st["cg"].Package != "pktcount@"+want.cgVersion {
		t.Fatalf("document %s: the cgroup runs %v; status says %s program %d", want.name, got, st["cg"].Package, st["cg"].ProgramID)
	}
	if got := rodataUint(t, st["ex"].ProgramID, 0, "packages/execcount/execcount.bpf.o", "only_uid"); got != uint64(want.exUID) {
		t.Fatalf("document %s: ex runs with only_uid %d, want %d", want.name, got, want.exUID)
	}
	if got := pinnedLinkProgID(t, d, "ex"); got != st["ex"].ProgramID {
		t.Fatalf("ex: the pinned link runs program %d, status says %d", got, st["ex"].ProgramID)
	}
	checkPinsExplained(t, d.BPFFS, names, 2)
	return want
}

func pinnedLinkProgID(t *testing.T, d *testenv.Daemon, name string) uint32 {
	t.Helper()
	lk, err := link.LoadPinnedLink(filepath.Join(d.BPFFS, "attachments", name, "link"), nil)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer lk.Close()
	info, err := lk.Info()
	if err != nil {
		t.Fatal(err)
	}
	return uint32(info.Program)
}

func cgroupPrograms(t *testing.T, cg string) []uint32 {
	t.Helper()
	f, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: ebpf.AttachCGroupInetEgress})
	if err != nil {
		t.Fatalf("query cgroup: %v", err)
	}
	var out []uint32
	for _, p := range res.Programs {
		out = append(out, uint32(p.ID))
	}
	return out
}

// pktcountRepo is a repository holding the built-in pktcount, execcount
// and portfilter packages, pktcount at each version.
func pktcountRepo(t *testing.T, versions ...string) string {
	t.Helper()
	repo := versionedRepo(t, "1.0.0")
	if out, err := exec.Command("cp", "-r", filepath.Join("..", "packages", "execcount"), filepath.Join(repo, "execcount")).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, v := range versions {
		dir := filepath.Join(repo, "pktcount-"+v)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"leaf.yaml", "README.md", "pktcount.bpf.c", "pktcount.bpf.o"} {
			data, err := os.ReadFile(filepath.Join("..", "packages", "pktcount", f))
			if err != nil {
				t.Fatal(err)
			}
			if f == "leaf.yaml" {
				data = []byte(strings.Replace(string(data), "version: 1.0.0", "version: "+v, 1))
			}
			if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return repo
}

// checkPinsExplained walks leaf's bpffs root: one directory per
// attachment and per chained hook, and no staging leftovers.
func checkPinsExplained(t *testing.T, root string, names []string, hooks int) {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(root, "attachments"))
	var dirs []string
	for _, e := range entries {
		dirs = append(dirs, e.Name())
	}
	if !slices.Equal(dirs, names) {
		t.Fatalf("attachments/ holds %v, want %v", dirs, names)
	}
	hs, _ := os.ReadDir(filepath.Join(root, "hooks"))
	if len(hs) != hooks {
		t.Fatalf("hooks/ holds %d hooks, want %d", len(hs), hooks)
	}
	filepath.WalkDir(root, func(path string, e os.DirEntry, err error) error {
		if strings.HasSuffix(path, "_next") || strings.HasSuffix(path, "_prev") {
			t.Fatalf("staging pin left: %s", path)
		}
		return nil
	})
}

func pinnedProgID(t *testing.T, d *testenv.Daemon, name string) uint32 {
	t.Helper()
	prog, err := ebpf.LoadPinnedProgram(filepath.Join(d.BPFFS, "attachments", name, "prog"), nil)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return uint32(id)
}

// kernelChain follows a chain from its first program through each
// program's PROG_ARRAY, naming each program by the status it has.
func kernelChain(t *testing.T, head uint32, names map[uint32]string) []string {
	t.Helper()
	var out []string
	for id := head; id != 0 && len(out) < 10; {
		name, ok := names[id]
		if !ok {
			name = fmt.Sprintf("<unknown program %d>", id)
		}
		out = append(out, name)
		next := uint32(0)
		for _, m := range progMaps(t, id) {
			if m.Type() == ebpf.ProgramArray {
				m.Lookup(uint32(0), &next)
			}
			m.Close()
		}
		id = next
	}
	return out
}

func progMaps(t *testing.T, id uint32) []*ebpf.Map {
	t.Helper()
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		t.Fatalf("program %d: %v", id, err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	mids, _ := info.MapIDs()
	var out []*ebpf.Map
	for _, mid := range mids {
		m, err := ebpf.NewMapFromID(mid)
		if err != nil {
			t.Fatalf("map %d of program %d: %v", mid, id, err)
		}
		out = append(out, m)
	}
	return out
}

func progMap(t *testing.T, id uint32, suffix string) *ebpf.Map {
	t.Helper()
	return progMapAt(t, id, suffix, 0)
}

// progMapAt returns the k-th map (from 0) of the program whose name ends
// in suffix.
func progMapAt(t *testing.T, id uint32, suffix string, k int) *ebpf.Map {
	t.Helper()
	var found *ebpf.Map
	for _, m := range progMaps(t, id) {
		info, err := m.Info()
		if found == nil && err == nil && strings.HasSuffix(info.Name, suffix) {
			if k == 0 {
				found = m
				continue
			}
			k--
		}
		m.Close()
	}
	if found == nil {
		t.Fatalf("program %d has no map named *%s", id, suffix)
	}
	return found
}

// rodataUint reads a constant from the k-th .rodata of the program the
// kernel runs (0 but in a fused program), at the offset the object file
// gives it.
func rodataUint(t *testing.T, id uint32, k int, object, variable string) uint64 {
	t.Helper()
	spec, err := ebpf.LoadCollectionSpec(filepath.Join("..", object))
	if err != nil {
		t.Fatal(err)
	}
	v := spec.Variables[variable]
	if v == nil {
		t.Fatalf("%s has no variable %s", object, variable)
	}
	m := progMapAt(t, id, ".rodata", k)
	defer m.Close()
	buf := make([]byte, m.ValueSize())
	if err := m.Lookup(uint32(0), &buf); err != nil {
		t.Fatal(err)
	}
	var n uint64
	for i := int(v.Size()) - 1; i >= 0; i-- { // little endian
		n = n<<8 | uint64(buf[int(v.Offset)+i])
	}
	return n
}

func progMapKeys(t *testing.T, id uint32, name string) []uint16 {
	t.Helper()
	m := progMap(t, id, name)
	defer m.Close()
	var out []uint16
	var k uint16
	var v []byte
	it := m.Iterate()
	for it.Next(&k, &v) {
		out = append(out, k)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}
