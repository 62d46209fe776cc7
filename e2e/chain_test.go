package e2e

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/client"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/netnsutil"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// fixtureRepo is testdata/packages plus copies of seqcount at other
// versions.
func fixtureRepos(t *testing.T, seqVersions ...string) []string {
	t.Helper()
	testdata, _ := filepath.Abs(filepath.Join("..", "testdata", "packages"))
	args := []string{"--repository-allow-unsigned", testdata}
	if len(seqVersions) == 0 {
		return args
	}
	repo := t.TempDir()
	src := filepath.Join(testdata, "seqcount")
	for _, v := range seqVersions {
		dir := filepath.Join(repo, "seqcount-"+v)
		os.MkdirAll(dir, 0o755)
		for _, f := range []string{"leaf.yaml", "README.md", "seqcount.bpf.c", "seqcount.bpf.o"} {
			data, err := os.ReadFile(filepath.Join(src, f))
			if err != nil {
				t.Fatal(err)
			}
			if f == "leaf.yaml" {
				data = []byte(strings.Replace(string(data), "version: 1.0.0", "version: "+v, 1))
			}
			os.WriteFile(filepath.Join(dir, f), data, 0o644)
		}
	}
	return append(args, "--repository-allow-unsigned", repo)
}

// member is a seqcount (or l3afcoop) attachment on an XDP or TC hook of B.
type member struct {
	name, pkg, program string
	priority           int
	hookType           string
	// chainMode is the hook's chainMode ("": not set, auto).
	chainMode string
}

func (m member) yaml(p *testenv.Pair) string {
	mode := ""
	if m.chainMode != "" {
		mode = ", chainMode: " + m.chainMode
	}
	hook := fmt.Sprintf("{type: xdp, interface: %s, netns: %s%s}", p.IfB, p.NsB, mode)
	if m.hookType == "tc" {
		hook = fmt.Sprintf("{type: tc, direction: ingress, interface: %s, netns: %s%s}", p.IfB, p.NsB, mode)
	}
	pkg := m.pkg
	if pkg == "" {
		pkg = "seqcount@1.0.0"
	}
	prog := m.program
	if prog == "" {
		prog = "seq_xdp"
		if m.hookType == "tc" {
			prog = "seq_tc"
		}
	}
	return fmt.Sprintf("name: %s\npackage: %s\nprogram: %s\npriority: %d\nhook: %s", m.name, pkg, prog, m.priority, hook)
}

func chainDoc(p *testenv.Pair, ms ...member) []byte {
	var parts []string
	for _, m := range ms {
		parts = append(parts, m.yaml(p))
	}
	return doc(parts...)
}

// seen returns how many times a member saw each sequence number.
func seen(t *testing.T, d *testenv.Daemon, name string) map[uint64]uint64 {
	t.Helper()
	dump, err := d.Client.DumpMap(ctx(t), name, "seen")
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]uint64{}
	for _, e := range dump.Entries {
		out[*e.KeyUint] = *e.ValueUint
	}
	return out
}

// checkExactlyOnce asserts that a member saw every sequence number in
// [from, to) exactly once and nothing else; from < 0 means "from whatever
// it saw first" (a member inserted while traffic flowed).
func checkExactlyOnce(t *testing.T, name string, got map[uint64]uint64, from int64, to uint64) {
	t.Helper()
	if len(got) == 0 {
		t.Errorf("%s saw no packet", name)
		return
	}
	keys := make([]uint64, 0, len(got))
	for k, n := range got {
		keys = append(keys, k)
		if n != 1 {
			t.Errorf("%s saw sequence %d %d times", name, k, n)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	lo := keys[0]
	if from >= 0 && lo != uint64(from) {
		t.Errorf("%s first saw sequence %d, want %d", name, lo, from)
	}
	hi := keys[len(keys)-1]
	if want := int(hi - lo + 1); len(keys) != want {
		t.Errorf("%s saw %d distinct sequences in [%d, %d]: %d skipped", name, len(keys), lo, hi, want-len(keys))
	}
	if to > 0 && hi != to-1 {
		t.Errorf("%s last saw sequence %d, want %d", name, hi, to-1)
	}
}

func chainOrder(t *testing.T, d *testenv.Daemon) []string {
	t.Helper()
	st := status(t, d)
	type pos struct {
		name string
		at   int
	}
	var ps []pos
	for n, a := range st {
		if a.Chain == nil {
			continue
		}
		if a.State != "attached" {
			t.Fatalf("%s is %s: %s", n, a.State, a.Problem)
		}
		ps = append(ps, pos{n, a.Chain.Position})
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].at < ps[j].at })
	var out []string
	for _, p := range ps {
		out = append(out, p.name)
	}
	return out
}

// TestChainChangesUnderTraffic changes an XDP chain while a numbered
// stream flows through it: insert at the front, the end and the middle,
// upgrade a member, reorder, remove one, and kill and restart leafd. Every
// member sees every packet it should exactly once: members present from
// the start see all of them, and members inserted or removed midway see
// one unbroken run. It runs for a tail-call chain (with an L3AF
// cooperative member) and for a fused chain.
func TestChainChangesUnderTraffic(t *testing.T) {
	testenv.RequireKernel(t)
	for _, mode := range []string{desired.ChainModeTailCall, desired.ChainModeFused} {
		t.Run(mode, func(t *testing.T) { chainChangesUnderTraffic(t, mode) })
	}
}

func chainChangesUnderTraffic(t *testing.T, mode string) {
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: fixtureRepos(t, "1.1.0")})

	m20 := member{name: "m20", priority: 20, chainMode: mode}
	m10 := member{name: "m10", priority: 10, chainMode: mode}
	m30 := member{name: "m30", priority: 30, chainMode: mode, pkg: "l3afcoop@1.0.0", program: "coop_xdp"}
	if mode == desired.ChainModeFused {
		m30.pkg, m30.program = "", ""
	}
	m25 := member{name: "m25", priority: 25, chainMode: mode}

	step := func(want []string, ms ...member) {
		t.Helper()
		apply(t, d, chainDoc(p, ms...))
		if got := chainOrder(t, d); !slices.Equal(got, want) {
			t.Fatalf("chain order %v, want %v", got, want)
		}
		st := status(t, d)
		if kernel := xdpProgID(t, p.NsB, p.IfB); kernel != st[want[0]].ProgramID {
			t.Fatalf("kernel runs XDP program %d, leaf says the first member is %s (%d)", kernel, want[0], st[want[0]].ProgramID)
		}
		checkMode(t, st, want, mode)
		time.Sleep(120 * time.Millisecond)
	}

	step([]string{"m20"}, m20)
	stream := p.StartStream(t, 9000, time.Millisecond)
	time.Sleep(120 * time.Millisecond)
	step([]string{"m10", "m20"}, m10, m20)                         // insert at the front
	step([]string{"m10", "m20", "m30"}, m10, m20, m30)             // at the end
	step([]string{"m10", "m20", "m25", "m30"}, m10, m20, m25, m30) // in the middle
	before := status(t, d)["m20"].ProgramID
	m20.pkg = "seqcount@1.1.0"
	step([]string{"m10", "m20", "m25", "m30"}, m10, m20, m25, m30) // upgrade m20
	if status(t, d)["m20"].ProgramID == before {
		t.Fatal("upgrade did not replace m20's program")
	}
	m30.priority = 5
	step([]string{"m30", "m10", "m20", "m25"}, m10, m20, m25, m30) // reorder
	// m25's pins go with it: hold its map open across the removal and
	// read it once nothing writes it any more. (A snapshot taken while
	// traffic flows is not one: a hash map iterated under concurrent
	// inserts may list a newer sequence number and miss an older one.)
	m25map, err := ebpf.LoadPinnedMap(filepath.Join(d.BPFFS, "attachments", "m25", "maps", "seen"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m25map.Close()
	step([]string{"m30", "m10", "m20"}, m10, m20, m30) // remove m25
	ids := status(t, d)
	d.Kill()
	time.Sleep(120 * time.Millisecond)
	d.Restart()
	time.Sleep(120 * time.Millisecond)
	if got := chainOrder(t, d); !slices.Equal(got, []string{"m30", "m10", "m20"}) {
		t.Fatalf("after restart the chain is %v", got)
	}
	for n, a := range status(t, d) {
		if a.ProgramID != ids[n].ProgramID {
			t.Errorf("restart reloaded %s (%d→%d)", n, ids[n].ProgramID, a.ProgramID)
		}
	}
	sent, lost, dup := stream.Stop()
	t.Logf("%d datagrams through 7 chain changes and a restart", sent)
	if len(lost) > 0 || len(dup) > 0 {
		t.Fatalf("receiver: %d lost (first %v), %d duplicated", len(lost), first(lost), len(dup))
	}
	checkExactlyOnce(t, "m20", seen(t, d, "m20"), 0, sent)
	checkExactlyOnce(t, "m10", seen(t, d, "m10"), -1, sent)
	checkExactlyOnce(t, "m30", seen(t, d, "m30"), -1, sent)
	m25seen := map[uint64]uint64{}
	var seq uint64
	var n uint32
	for it := m25map.Iterate(); it.Next(&seq, &n); {
		m25seen[seq] = uint64(n)
	}
	checkExactlyOnce(t, "m25", m25seen, -1, 0)
}

// checkMode asserts that the chain runs in the mode asked for: fused, one
// program the kernel runs for every member; or tail calls, each member a
// program of its own linked to the next.
func checkMode(t *testing.T, st map[string]v1.AttachmentStatus, order []string, mode string) {
	t.Helper()
	for i, n := range order {
		c := st[n].Chain
		switch {
		case mode == desired.ChainModeFused && (c.Mode != "fused" || st[n].ProgramID != st[order[0]].ProgramID):
			t.Fatalf("%s: mode %s (%s), program %d; want fused into program %d", n, c.Mode, c.ModeReason, st[n].ProgramID, st[order[0]].ProgramID)
		case mode == desired.ChainModeTailCall && (c.Mode == "fused" || i+1 < len(order) && c.NextProgramID != st[order[i+1]].ProgramID):
			t.Fatalf("%s: mode %s, next program %d; want tail calls to %s", n, c.Mode, c.NextProgramID, order[min(i+1, len(order)-1)])
		}
		if c.Length != len(order) || c.Position != i+1 {
			t.Fatalf("%s: position %d of %d, want %d of %d", n, c.Position, c.Length, i+1, len(order))
		}
	}
}

// TestChainModeSwitchUnderTraffic switches a chain between fused and tail
// calls, and upgrades a fused member, while a numbered stream flows: every
// member sees every packet exactly once, and its map (the "seen" set)
// carries over every switch, since both modes use the member's same maps.
func TestChainModeSwitchUnderTraffic(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: fixtureRepos(t, "1.1.0")})
	ms := []member{{name: "s1", priority: 1}, {name: "s2", priority: 2}, {name: "s3", priority: 3}}
	order := []string{"s1", "s2", "s3"}
	step := func(mode, want string) {
		t.Helper()
		for i := range ms {
			ms[i].chainMode = mode
		}
		apply(t, d, chainDoc(p, ms...))
		st := status(t, d)
		checkMode(t, st, order, want)
		if kernel := xdpProgID(t, p.NsB, p.IfB); kernel != st["s1"].ProgramID {
			t.Fatalf("kernel runs XDP program %d, leaf says %d", kernel, st["s1"].ProgramID)
		}
		time.Sleep(150 * time.Millisecond)
	}
	step("", desired.ChainModeFused) // auto: every member can be fused
	stream := p.StartStream(t, 9000, time.Millisecond)
	time.Sleep(150 * time.Millisecond)
	step(desired.ChainModeTailCall, desired.ChainModeTailCall)
	step(desired.ChainModeFused, desired.ChainModeFused)
	fusedID := status(t, d)["s2"].ProgramID
	ms[1].pkg = "seqcount@1.1.0" // a new fused version
	step(desired.ChainModeFused, desired.ChainModeFused)
	if status(t, d)["s2"].ProgramID == fusedID {
		t.Fatal("upgrading a member did not build a new fused program")
	}
	step(desired.ChainModeTailCall, desired.ChainModeTailCall)
	st := status(t, d)
	if st["s1"].Chain.ModeReason == "" {
		t.Error("a tail-call chain does not say why it is not fused")
	}
	step("", desired.ChainModeFused)
	sent, lost, dup := stream.Stop()
	t.Logf("%d datagrams through 5 mode switches", sent)
	if len(lost) > 0 || len(dup) > 0 {
		t.Fatalf("receiver: %d lost (first %v), %d duplicated", len(lost), first(lost), len(dup))
	}
	for _, n := range order {
		checkExactlyOnce(t, n, seen(t, d, n), 0, sent)
	}
}

// TestChainEqualPrioritiesOrderByName: the order never depends on the
// document's order.
func TestChainEqualPrioritiesOrderByName(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: fixtureRepos(t)})
	a, b, c := member{name: "alpha", priority: 7}, member{name: "bravo", priority: 7}, member{name: "charlie", priority: 7}
	for _, ms := range [][]member{{c, a, b}, {b, c, a}, {a, b, c}} {
		apply(t, d, chainDoc(p, ms...))
		if got := chainOrder(t, d); !slices.Equal(got, []string{"alpha", "bravo", "charlie"}) {
			t.Fatalf("document order %v gave chain %v", []string{ms[0].name, ms[1].name, ms[2].name}, got)
		}
	}
}

// TestTCChainBesideForeignProgram chains on TCX next to a program another
// tool attached first: leaf's link goes after it, and the foreign program
// stays attached and first through every change.
func TestTCChainBesideForeignProgram(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	foreign, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}, // TCX_NEXT
	})
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	var fl link.Link
	err = netnsutil.Do(testenv.NetnsPath(p.NsB), func() error {
		idx, err := netnsutil.Ifindex("", p.IfB)
		if err != nil {
			return err
		}
		fl, err = link.AttachTCX(link.TCXOptions{Program: foreign, Interface: idx, Attach: ebpf.AttachTCXIngress})
		return err
	})
	if err != nil {
		t.Fatalf("attach foreign TCX program: %v", err)
	}
	defer fl.Close()
	finfo, _ := foreign.Info()
	foreignID, _ := finfo.ID()

	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: fixtureRepos(t)})
	t1 := member{name: "t1", priority: 1, hookType: "tc"}
	t2 := member{name: "t2", priority: 2, hookType: "tc"}
	t3 := member{name: "t3", priority: 3, hookType: "tc"}
	var stream *testenv.Stream
	for i, ms := range [][]member{{t1}, {t1, t2}, {t1, t2, t3}, {t3, t1}, {t1, t3}} {
		apply(t, d, chainDoc(p, ms...))
		if i == 0 {
			stream = p.StartStream(t, 9000, time.Millisecond)
		}
		progs := tcxPrograms(t, p.NsB, p.IfB, ebpf.AttachTCXIngress)
		if len(progs) != 2 || progs[0].ID != foreignID {
			t.Fatalf("TCX programs %+v: want the foreign program %d first and leaf's chain after it", progs, foreignID)
		}
		if uint32(progs[1].ID) != status(t, d)[chainOrder(t, d)[0]].ProgramID {
			t.Fatalf("TCX runs %d second, not leaf's first member", progs[1].ID)
		}
		time.Sleep(100 * time.Millisecond)
	}
	sent, lost, dup := stream.Stop()
	if len(lost) > 0 || len(dup) > 0 {
		t.Fatalf("receiver: %d of %d lost, %d duplicated", len(lost), sent, len(dup))
	}
	checkExactlyOnce(t, "t1", seen(t, d, "t1"), 0, sent)
	checkExactlyOnce(t, "t3", seen(t, d, "t3"), -1, sent)
	apply(t, d, chainDoc(p))
	if progs := tcxPrograms(t, p.NsB, p.IfB, ebpf.AttachTCXIngress); len(progs) != 1 || progs[0].ID != foreignID {
		t.Fatalf("after removing leaf's chain TCX runs %+v, want only the foreign program", progs)
	}
}

// TestXDPForeignProgramRefusedUnlessReplaced: leaf does not take an XDP
// hook another tool holds unless told to.
func TestXDPForeignProgramRefusedUnlessReplaced(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	attachForeignXDP(t, p.NsB, p.IfB)
	foreignID := xdpProgID(t, p.NsB, p.IfB)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: fixtureRepos(t)})
	m := member{name: "m", priority: 1}
	_, err := d.Client.Apply(ctx(t), chainDoc(p, m), false)
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 409 || apiErr.Kind() != "conflict" || !strings.Contains(err.Error(), "does not manage") || !strings.Contains(err.Error(), "replaceForeign") {
		t.Fatalf("want a 409 of kind conflict naming replaceForeign, got %v", err)
	}
	if xdpProgID(t, p.NsB, p.IfB) != foreignID {
		t.Fatal("the foreign program was touched")
	}
	yaml := strings.Replace(m.yaml(p), "netns: "+p.NsB+"}", "netns: "+p.NsB+", replaceForeign: true}", 1)
	apply(t, d, doc(yaml))
	if got := xdpProgID(t, p.NsB, p.IfB); got == foreignID || got != status(t, d)["m"].ProgramID {
		t.Fatalf("with replaceForeign the hook runs %d (foreign %d)", got, foreignID)
	}
}

// bpftoolChain walks an XDP chain with bpftool alone: the program the
// interface runs, then through each program's PROG_ARRAY to the next.
func bpftoolChain(t *testing.T, netns, ifname string) []uint32 {
	t.Helper()
	if _, err := exec.LookPath("bpftool"); err != nil {
		t.Skip("bpftool not installed")
	}
	run := func(v any, args ...string) {
		t.Helper()
		out, err := exec.Command("bpftool", append([]string{"-j"}, args...)...).Output()
		if err != nil {
			t.Fatalf("bpftool %v: %v", args, err)
		}
		if err := json.Unmarshal(out, v); err != nil {
			t.Fatalf("bpftool %v: %v: %s", args, err, out)
		}
	}
	var net []struct {
		XDP []struct {
			Devname string `json:"devname"`
			ID      uint32 `json:"id"`
		} `json:"xdp"`
	}
	out, err := exec.Command("ip", "netns", "exec", netns, "bpftool", "-j", "net", "show", "dev", ifname).Output()
	if err != nil || json.Unmarshal(out, &net) != nil || len(net) == 0 || len(net[0].XDP) == 0 {
		t.Fatalf("bpftool net show dev %s: %v: %s", ifname, err, out)
	}
	var ids []uint32
	for id := net[0].XDP[0].ID; id != 0 && len(ids) < 40; {
		ids = append(ids, id)
		var prog struct {
			MapIDs []uint32 `json:"map_ids"`
		}
		run(&prog, "prog", "show", "id", fmt.Sprint(id))
		next := uint32(0)
		for _, m := range prog.MapIDs {
			var info struct {
				Type string `json:"type"`
			}
			run(&info, "map", "show", "id", fmt.Sprint(m))
			if info.Type != "prog_array" {
				continue
			}
			var entries []struct {
				Value []string `json:"value"`
			}
			run(&entries, "map", "dump", "id", fmt.Sprint(m))
			for _, e := range entries {
				var b []byte
				for _, h := range e.Value {
					var x uint8
					fmt.Sscanf(h, "0x%x", &x)
					b = append(b, x)
				}
				if len(b) == 4 {
					next = binary.LittleEndian.Uint32(b)
				}
			}
		}
		id = next
	}
	return ids
}

// TestChainStatusAgreesWithBpftool: the order and program IDs leaf shows
// are what bpftool finds walking the kernel's objects.
func TestChainStatusAgreesWithBpftool(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: fixtureRepos(t)})
	apply(t, d, chainDoc(p, member{name: "x1", priority: 3}, member{name: "x2", priority: 1},
		member{name: "x3", priority: 2, pkg: "l3afcoop@1.0.0", program: "coop_xdp"}))
	st := status(t, d)
	var want []uint32
	for _, n := range chainOrder(t, d) {
		want = append(want, st[n].ProgramID)
	}
	if got := bpftoolChain(t, p.NsB, p.IfB); !slices.Equal(got, want) {
		t.Fatalf("bpftool walks %v, leaf status says %v (%v)", got, want, chainOrder(t, d))
	}
	if st["x2"].Chain.Position != 1 || st["x2"].Chain.Length != 3 || st["x2"].Chain.NextProgramID != st["x3"].ProgramID {
		t.Fatalf("status chain of x2: %+v", st["x2"].Chain)
	}
	if !slices.Equal(st["x1"].Chain.ProceedOn, []string{"XDP_PASS"}) || st["x3"].Chain.Mode != "cooperative" {
		t.Fatalf("status chain of x1 %+v, x3 %+v", st["x1"].Chain, st["x3"].Chain)
	}
}

// chainFixture writes a package around functions of the chain test
// object: programs p (the first), p1, p2, ...
func chainFixture(t *testing.T, functions ...string) string {
	t.Helper()
	repo := t.TempDir()
	dir := filepath.Join(repo, "fixture")
	os.MkdirAll(dir, 0o755)
	obj, err := os.ReadFile(filepath.Join("..", "testdata", "chain", "members.bpf.o"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "members.bpf.o"), obj, 0o644)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("fixture\n"), 0o644)
	manifest := fmt.Sprint(`apiVersion: leaf.dev/v1alpha1
kind: Package
name: fixture
version: 1.0.0
description: test fixture
license: GPL-2.0-only
programs:
`)
	for i, fn := range functions {
		name := "p"
		if i > 0 {
			name = fmt.Sprint("p", i)
		}
		manifest += fmt.Sprintf("  - {name: %s, object: members.bpf.o, function: %s, type: xdp, hooks: [xdp]}\n", name, fn)
	}
	os.WriteFile(filepath.Join(dir, "leaf.yaml"), []byte(manifest), 0o644)
	return repo
}

// TestChainRefusesUnchainableProgram: a program that already tail-calls
// (and does not declare the cooperative contract) is refused at apply
// time, saying why.
func TestChainRefusesUnchainableProgram(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--repository-allow-unsigned", chainFixture(t, "xdp_tailcaller")}})
	_, err := d.Client.Apply(ctx(t), chainDoc(p, member{name: "tc", pkg: "fixture@1.0.0", program: "p", priority: 1}), false)
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 422 || !strings.Contains(err.Error(), "cannot be chained") || !strings.Contains(err.Error(), "cooperative") {
		t.Fatalf("want 422 explaining the program cannot be chained, got %v", err)
	}
	if len(apiErr.Body.Details) != 1 || apiErr.Body.Details[0].Field != "program" {
		t.Fatalf("details %+v", apiErr.Body.Details)
	}
	if xdpProgID(t, p.NsB, p.IfB) != 0 {
		t.Fatal("something was attached")
	}
}

// TestChainFallsBackToTailCalls: a chain that cannot be fused (here its
// members' stacks do not fit one frame together) runs as a tail-call
// chain, says why, and stays so on the next apply; a hook that insists on
// fused fails like any program the kernel refuses (a 4xx naming
// hook.chainMode) and changes nothing.
func TestChainFallsBackToTailCalls(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--repository-allow-unsigned", chainFixture(t, "xdp_bigstack", "xdp_deepcall")}})
	big := member{name: "big", pkg: "fixture@1.0.0", program: "p", priority: 1}
	deep := member{name: "deep", pkg: "fixture@1.0.0", program: "p1", priority: 2}
	apply(t, d, chainDoc(p, big, deep))
	st := status(t, d)
	checkMode(t, st, []string{"big", "deep"}, desired.ChainModeTailCall)
	if r := st["big"].Chain.ModeReason; !strings.Contains(r, "stack") {
		t.Fatalf("mode reason %q does not say the stack is too small", r)
	}
	if got := p.Delivered(t, 9000, 5, 300*time.Millisecond); got != 5 {
		t.Fatalf("%d of 5 delivered through the tail-call chain", got)
	}
	apply(t, d, chainDoc(p, big, deep))
	again := status(t, d)
	for _, n := range []string{"big", "deep"} {
		if again[n].ProgramID != st[n].ProgramID {
			t.Errorf("a second apply rebuilt %s (%d→%d): the refusal must stick while the chain stays the same", n, st[n].ProgramID, again[n].ProgramID)
		}
	}

	big.chainMode, deep.chainMode = desired.ChainModeFused, desired.ChainModeFused
	_, err := d.Client.Apply(ctx(t), chainDoc(p, big, deep), false)
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode/100 != 4 || !strings.Contains(err.Error(), "hook.chainMode") || !strings.Contains(err.Error(), "stack") {
		t.Fatalf("forced fused: want a 4xx about hook.chainMode and the stack, got %v", err)
	}
	if kernel := xdpProgID(t, p.NsB, p.IfB); kernel != st["big"].ProgramID {
		t.Fatalf("a refused apply changed the hook: program %d, was %d", kernel, st["big"].ProgramID)
	}
}

// TestChainHonoursXDPRunConfig: a priority the object declares in libxdp's
// XDP_RUN_CONFIG applies unless the desired state sets one.
func TestChainHonoursXDPRunConfig(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--repository-allow-unsigned", chainFixture(t, "xdp_runcfg")}})
	att := fmt.Sprintf("name: rc\npackage: fixture@1.0.0\nhook: {type: xdp, interface: %s, netns: %s}", p.IfB, p.NsB)
	apply(t, d, doc(att))
	c := status(t, d)["rc"].Chain
	if c == nil || c.Priority != 12 || !slices.Equal(c.ProceedOn, []string{"XDP_DROP", "XDP_PASS"}) {
		t.Fatalf("chain status %+v, want the object's XDP_RUN_CONFIG (priority 12, proceed on XDP_DROP and XDP_PASS)", c)
	}
	apply(t, d, doc(att+"\npriority: 3"))
	if c := status(t, d)["rc"].Chain; c.Priority != 3 {
		t.Fatalf("desired priority 3 not applied: %+v", c)
	}
}

// TestChainRunCounts: with BPF statistics on, every member reports its
// runs, the tail-called ones included (the kernel's statistics skip
// those) and those fused into one program, and members that all proceed
// count the same packets.
func TestChainRunCounts(t *testing.T) {
	testenv.RequireKernel(t)
	for _, mode := range []string{desired.ChainModeTailCall, desired.ChainModeFused} {
		t.Run(mode, func(t *testing.T) { chainRunCounts(t, mode) })
	}
}

func chainRunCounts(t *testing.T, mode string) {
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: fixtureRepos(t)})
	apply(t, d, chainDoc(p, member{name: "r1", priority: 1, chainMode: mode}, member{name: "r2", priority: 2, chainMode: mode}, member{name: "r3", priority: 3, chainMode: mode}))
	if _, err := d.Client.SetStats(ctx(t), true); err != nil {
		t.Fatal(err)
	}
	if got := p.Delivered(t, 9000, 30, 300*time.Millisecond); got != 30 {
		t.Fatalf("%d of 30 delivered", got)
	}
	st := status(t, d)
	n := st["r1"].RunCount
	if n == nil || *n < 30 {
		t.Fatalf("r1 run count %v, want at least 30", n)
	}
	for _, m := range []string{"r2", "r3"} {
		if c := st[m].RunCount; c == nil || *c != *n {
			t.Errorf("%s run count %v, want %d like r1", m, c, *n)
		}
	}
	// Switching to the other mode keeps the counters (the same maps).
	other := desired.ChainModeFused
	if mode == other {
		other = desired.ChainModeTailCall
	}
	apply(t, d, chainDoc(p, member{name: "r1", priority: 1, chainMode: other}, member{name: "r2", priority: 2, chainMode: other}, member{name: "r3", priority: 3, chainMode: other}))
	checkMode(t, status(t, d), []string{"r1", "r2", "r3"}, other)
	if c := status(t, d)["r2"].RunCount; c == nil || *c < *n {
		t.Errorf("after switching to %s, r2 run count %v, want at least %d", other, c, *n)
	}
	if _, err := d.Client.SetStats(ctx(t), false); err != nil {
		t.Fatal(err)
	}
	for name, a := range status(t, d) {
		if a.RunCount != nil {
			t.Errorf("%s reports runs with statistics off", name)
		}
	}
	if got := chainOrder(t, d); !slices.Equal(got, []string{"r1", "r2", "r3"}) {
		t.Fatalf("chain after statistics off: %v", got)
	}
}

// TestParallelLoadsAllOrNothing applies programs on four independent
// hooks at once (their loads run in parallel, and the commit attaches
// each hook as soon as its load is done), one of which the verifier
// refuses: the apply fails naming it, and nothing is attached or pinned.
// The refused one is on the hook committed last (hooks commit in the
// order of their IDs: xdp-lo-…, xdp-va…, xdp-vb…), so the three good ones
// are attached before its load fails and must be undone. The three good
// ones then apply together.
func TestParallelLoadsAllOrNothing(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	testdata, _ := filepath.Abs(filepath.Join("..", "testdata", "packages"))
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--repository-allow-unsigned", testdata}})
	att := func(name, pkg, netns, ifname string) string {
		mode := "native"
		if ifname == "lo" {
			mode = "generic"
		}
		return fmt.Sprintf("name: %s\npackage: %s\nhook: {type: xdp, interface: %s, netns: %s, mode: %s}", name, pkg, ifname, netns, mode)
	}
	good := []string{
		att("g1", "portfilter@1.0.0", p.NsA, "lo"),
		att("g2", "portfilter@1.0.0", p.NsB, "lo"),
		att("g3", "portfilter@1.0.0", p.NsA, p.IfA),
	}
	_, err := d.Client.Apply(ctx(t), doc(append(good, att("bad", "badverifier@1.0.0", p.NsB, p.IfB))...), false)
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 422 || !strings.Contains(err.Error(), "rejected by the verifier") {
		t.Fatalf("want 422 naming the verifier's refusal, got %v", err)
	}
	if len(apiErr.Body.Details) != 1 || apiErr.Body.Details[0].Attachment != "bad" {
		t.Fatalf("details %+v, want one, for bad", apiErr.Body.Details)
	}
	for _, h := range [][2]string{{p.NsA, "lo"}, {p.NsB, "lo"}, {p.NsB, p.IfB}, {p.NsA, p.IfA}} {
		if id := xdpProgID(t, h[0], h[1]); id != 0 {
			t.Errorf("%s in %s runs program %d after a refused apply", h[1], h[0], id)
		}
	}
	for _, pin := range pinTree(t, d.BPFFS) {
		if strings.HasPrefix(pin, "/attachments/") || strings.HasPrefix(pin, "/hooks/") {
			t.Errorf("pin %s left after a refused apply", pin)
		}
	}
	apply(t, d, doc(good...))
	for name, a := range status(t, d) {
		if a.State != "attached" {
			t.Errorf("%s is %s: %s", name, a.State, a.Problem)
		}
	}
}

// TestParallelCommitsUndoneOnConflict applies programs on four independent
// hooks, whose chains commit several at once, while another tool holds
// the last hook: the apply fails with a conflict naming that attachment,
// every hook committed beside it is undone (nothing of leaf's attached or
// pinned), and the other tool's program is untouched.
func TestParallelCommitsUndoneOnConflict(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	attachForeignXDP(t, p.NsB, p.IfB)
	foreignID := xdpProgID(t, p.NsB, p.IfB)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	att := func(name, netns, ifname, mode string) string {
		return fmt.Sprintf("name: %s\npackage: portfilter@1.0.0\nhook: {type: xdp, interface: %s, netns: %s, mode: %s}", name, ifname, netns, mode)
	}
	_, err := d.Client.Apply(ctx(t), doc(
		att("a-lo", p.NsA, "lo", "generic"), att("b-lo", p.NsB, "lo", "generic"),
		att("a-veth", p.NsA, p.IfA, "native"), att("b-veth", p.NsB, p.IfB, "native")), false)
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 409 || !strings.Contains(err.Error(), "does not manage") {
		t.Fatalf("want 409 naming the foreign program, got %v", err)
	}
	if len(apiErr.Body.Details) != 1 || apiErr.Body.Details[0].Attachment != "b-veth" {
		t.Fatalf("details %+v, want one, for b-veth", apiErr.Body.Details)
	}
	for _, h := range [][2]string{{p.NsA, "lo"}, {p.NsB, "lo"}, {p.NsA, p.IfA}} {
		if id := xdpProgID(t, h[0], h[1]); id != 0 {
			t.Errorf("%s in %s runs program %d after a refused apply", h[1], h[0], id)
		}
	}
	if got := xdpProgID(t, p.NsB, p.IfB); got != foreignID {
		t.Errorf("%s runs program %d, want the foreign %d", p.IfB, got, foreignID)
	}
	for _, pin := range pinTree(t, d.BPFFS) {
		if strings.HasPrefix(pin, "/attachments/") || strings.HasPrefix(pin, "/hooks/") {
			t.Errorf("pin %s left after a refused apply", pin)
		}
	}
}
