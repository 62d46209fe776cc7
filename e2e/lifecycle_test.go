package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// versionedRepo writes a repository holding portfilter at each version,
// copied from the built-in package with only the version changed.
func versionedRepo(t *testing.T, versions ...string) string {
	t.Helper()
	src := filepath.Join("..", "packages", "portfilter")
	repo := t.TempDir()
	for _, v := range versions {
		dir := filepath.Join(repo, "portfilter-"+v)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"leaf.yaml", "README.md", "portfilter.bpf.c", "portfilter.bpf.o"} {
			data, err := os.ReadFile(filepath.Join(src, f))
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

func dropsFor(t *testing.T, d *testenv.Daemon, attachment string, port uint64) uint64 {
	t.Helper()
	dump, err := d.Client.DumpMap(ctx(t), attachment, "drops")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range dump.Entries {
		if *e.KeyUint == port {
			return *e.ValueUint
		}
	}
	return 0
}

// TestRestartsLoseNothing kills leafd with SIGKILL and stops it with
// SIGTERM while traffic flows: the program stays attached throughout, the
// restarted leafd adopts it with the same IDs and map contents, and not one
// datagram is lost.
func TestRestartsLoseNothing(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	apply(t, d, doc(portFilter(p, "filter", "1.0.0", 7001)))
	before := status(t, d)["filter"]
	if got := p.Delivered(t, 7001, 10, 200*time.Millisecond); got != 0 {
		t.Fatalf("blocked port delivered %d", got)
	}

	stream := p.StartStream(t, 7002, time.Millisecond)
	time.Sleep(200 * time.Millisecond)

	d.Kill()
	// While leafd is gone the filter still filters.
	if got := p.Delivered(t, 7001, 10, 200*time.Millisecond); got != 0 {
		t.Fatalf("with leafd killed, blocked port delivered %d of 10", got)
	}
	d.Restart()
	time.Sleep(200 * time.Millisecond)
	d.Stop()
	time.Sleep(100 * time.Millisecond)
	d.Restart()
	time.Sleep(200 * time.Millisecond)

	sent, lost, dup := stream.Stop()
	if sent < 100 {
		t.Fatalf("only %d datagrams sent", sent)
	}
	if len(lost) > 0 || len(dup) > 0 {
		t.Fatalf("across kill -9 and SIGTERM restarts: %d sent, %d lost (first %v), %d duplicated", sent, len(lost), first(lost), len(dup))
	}
	t.Logf("%d datagrams sent through kill -9 and restart, SIGTERM and restart: none lost", sent)

	after := status(t, d)["filter"]
	if after.ProgramID != before.ProgramID || after.LinkID != before.LinkID {
		t.Fatalf("restart did not adopt: program %d→%d, link %d→%d", before.ProgramID, after.ProgramID, before.LinkID, after.LinkID)
	}
	if n := dropsFor(t, d, "filter", 7001); n != 20 {
		t.Fatalf("drops for 7001 after restarts = %d, want 20 (map contents kept)", n)
	}
	if !strings.Contains(d.Logs(), "action=keep") {
		t.Errorf("start-up reconcile did not report keep:\n%s", d.Logs())
	}
}

func first(s []uint64) []uint64 {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}

// TestVersionSwapUnderTraffic upgrades the package while traffic flows:
// the program is swapped inside the same link (bpf_link_update), maps and
// their counters carry over, and no datagram is lost.
func TestVersionSwapUnderTraffic(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	repo := versionedRepo(t, "1.0.0", "1.1.0")
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--repository-allow-unsigned", repo}})
	apply(t, d, doc(portFilter(p, "filter", "1.0.0", 7001)))
	p.Delivered(t, 7001, 5, 200*time.Millisecond)
	before := status(t, d)["filter"]

	stream := p.StartStream(t, 7002, time.Millisecond)
	time.Sleep(150 * time.Millisecond)
	res := apply(t, d, doc(portFilter(p, "filter", "1.1.0", 7001)))
	time.Sleep(150 * time.Millisecond)
	res2 := apply(t, d, doc(portFilter(p, "filter", "1.0.0", 7001)))
	time.Sleep(150 * time.Millisecond)
	sent, lost, dup := stream.Stop()

	if k := actionKinds(res)["filter"]; k != "replace" {
		t.Fatalf("upgrade action %q, want replace", k)
	}
	if k := actionKinds(res2)["filter"]; k != "replace" {
		t.Fatalf("downgrade action %q, want replace", k)
	}
	if len(lost) > 0 || len(dup) > 0 {
		t.Fatalf("across two version swaps: %d sent, %d lost (first %v), %d duplicated", sent, len(lost), first(lost), len(dup))
	}
	t.Logf("%d datagrams sent across two version swaps: none lost", sent)
	after := status(t, d)["filter"]
	if after.LinkID != before.LinkID {
		t.Fatalf("link changed %d→%d: the swap detached", before.LinkID, after.LinkID)
	}
	if after.ProgramID == before.ProgramID {
		t.Fatalf("program %d was not replaced", after.ProgramID)
	}
	if kernel := xdpProgID(t, p.NsB, p.IfB); kernel != after.ProgramID {
		t.Fatalf("kernel runs %d, status says %d", kernel, after.ProgramID)
	}
	if n := dropsFor(t, d, "filter", 7001); n != 5 {
		t.Fatalf("drops counter after upgrade = %d, want 5 carried over", n)
	}
	if got := p.Delivered(t, 7001, 10, 200*time.Millisecond); got != 0 {
		t.Fatalf("after the swap the blocked port delivered %d", got)
	}
	// The replaced program is gone from the kernel.
	if prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(before.ProgramID)); err == nil {
		prog.Close()
		t.Fatalf("old program %d is still loaded", before.ProgramID)
	}
}

// TestParameterChanges: a map parameter changes without a reload; a
// load-time constant reloads and swaps in place.
func TestParameterChanges(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	apply(t, d, doc(portFilter(p, "filter", "1.0.0", 7001)))
	before := status(t, d)["filter"]

	res := apply(t, d, doc(portFilter(p, "filter", "1.0.0", 7002)))
	if k := actionKinds(res)["filter"]; k != "update-params" {
		t.Fatalf("ports change: action %q, want update-params", k)
	}
	mid := status(t, d)["filter"]
	if mid.ProgramID != before.ProgramID {
		t.Fatalf("a map parameter change reloaded the program (%d→%d)", before.ProgramID, mid.ProgramID)
	}
	if got := p.Delivered(t, 7001, 10, 200*time.Millisecond); got != 10 {
		t.Errorf("port 7001 (no longer listed) delivered %d of 10", got)
	}
	if got := p.Delivered(t, 7002, 10, 200*time.Millisecond); got != 0 {
		t.Errorf("port 7002 (now listed) delivered %d of 10", got)
	}

	noUDP := portFilter(p, "filter", "1.0.0", 7002)
	noUDP = strings.Replace(noUDP, "params: {", "params: {filter_udp: false, ", 1)
	res = apply(t, d, doc(noUDP))
	if k := actionKinds(res)["filter"]; k != "replace" {
		t.Fatalf("const change: action %q, want replace", k)
	}
	after := status(t, d)["filter"]
	if after.ProgramID == mid.ProgramID || after.LinkID != mid.LinkID {
		t.Fatalf("const change: program %d→%d, link %d→%d; want new program in the same link", mid.ProgramID, after.ProgramID, mid.LinkID, after.LinkID)
	}
	if got := p.Delivered(t, 7002, 10, 200*time.Millisecond); got != 10 {
		t.Errorf("with filter_udp false, UDP to listed port delivered %d of 10", got)
	}
}

// TestDeleteDetaches: only an explicit delete detaches, and it removes the
// attachment's pins.
func TestDeleteDetaches(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	apply(t, d, doc(portFilter(p, "filter", "1.0.0", 7001)))
	progID := status(t, d)["filter"].ProgramID
	if _, err := d.Client.Delete(ctx(t), "filter", false); err != nil {
		t.Fatal(err)
	}
	if id := xdpProgID(t, p.NsB, p.IfB); id != 0 {
		t.Fatalf("XDP program %d still attached after delete", id)
	}
	if _, err := os.Stat(filepath.Join(d.BPFFS, "attachments", "filter")); !os.IsNotExist(err) {
		t.Fatalf("pins remain after delete: %v", err)
	}
	if prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(progID)); err == nil {
		prog.Close()
		t.Fatalf("program %d still loaded after delete", progID)
	}
	if got := p.Delivered(t, 7001, 10, 200*time.Millisecond); got != 10 {
		t.Fatalf("after delete, port 7001 delivered %d of 10", got)
	}
	if len(status(t, d)) != 0 {
		t.Fatal("status still lists the attachment")
	}
}

// TestStartupRemovesStalePins: pins under the layout that leafd has no
// record of (for example left by a crash) are removed at start, and what
// is desired is kept.
func TestStartupRemovesStalePins(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	apply(t, d, doc(portFilter(p, "filter", "1.0.0", 7001)))
	keep := status(t, d)["filter"].ProgramID
	d.Stop()

	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	ghost := filepath.Join(d.BPFFS, "attachments", "ghost")
	if err := os.MkdirAll(ghost, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := prog.Pin(filepath.Join(ghost, "prog")); err != nil {
		t.Fatal(err)
	}
	info, _ := prog.Info()
	ghostID, _ := info.ID()
	prog.Close()

	d.Restart()
	if _, err := os.Stat(ghost); !os.IsNotExist(err) {
		t.Fatalf("stale pins of ghost not removed: %v", err)
	}
	if p, err := ebpf.NewProgramFromID(ghostID); err == nil {
		p.Close()
		t.Fatalf("stale program %d still loaded", ghostID)
	}
	if got := status(t, d)["filter"].ProgramID; got != keep {
		t.Fatalf("desired program changed across restart: %d→%d", keep, got)
	}
}
