package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/companion"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// companionRepo builds a repository with two packages that ship a
// companion built from testdata/companions: pktmon (pktcount's programs
// and a companion that reads the counters map) and crashy (one that dies
// at once).
func companionRepo(t *testing.T) string {
	t.Helper()
	repo := t.TempDir()
	for _, c := range []struct{ pkg, bin, extra string }{
		{"pktmon", "mapreader", "  capabilities: [CAP_BPF]\n  user: 65534\n  group: 65534\n  resources: {memory: 32Mi, cpu: 250m}\n"},
		{"crashy", "crasher", ""},
	} {
		dir := filepath.Join(repo, c.pkg)
		os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
		for _, f := range []string{"pktcount.bpf.o", "README.md"} {
			data, err := os.ReadFile(filepath.Join("..", "packages", "pktcount", f))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, f), data, 0o644)
		}
		manifest, _ := os.ReadFile(filepath.Join("..", "packages", "pktcount", "leaf.yaml"))
		m := strings.Replace(string(manifest), "name: pktcount", "name: "+c.pkg, 1)
		m += "companion:\n  path: bin/" + c.bin + "\n" + c.extra
		os.WriteFile(filepath.Join(dir, "leaf.yaml"), []byte(m), 0o644)
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "bin", c.bin), "../testdata/companions/"+c.bin).CombinedOutput()
		if err != nil {
			t.Fatalf("build %s: %v: %s", c.bin, err, out)
		}
	}
	return repo
}

// companionDir is a directory the companions' user can reach (the test's
// temporary directories are root's alone).
func companionDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "leaf-companions-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func procField(t *testing.T, pid int, file, prefix string) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, prefix) {
			return strings.TrimSpace(strings.TrimPrefix(l, prefix))
		}
	}
	t.Fatalf("/proc/%d/%s has no %q line:\n%s", pid, file, prefix, data)
	return ""
}

// TestCompanion runs a companion that reads its attachment's map: it
// starts with the desired state's arguments as uid 65534 with only
// CAP_BPF, in its own cgroup with the manifest's limits, its output
// lands in leafd's log under the attachment, and deleting the attachment
// stops it.
func TestCompanion(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--repository-allow-unsigned", companionRepo(t), "--companion-dir", companionDir(t)}})
	apply(t, d, doc(fmt.Sprintf("name: mon\npackage: pktmon@1.0.0\nprogram: count_xdp\nhook: {type: xdp, interface: %s, netns: %s}\ncompanion: {args: [-map, counters, -interval, 50ms]}", p.IfB, p.NsB)))
	ev := waitEvent(t, d, 0, v1.EventCompanion, "started")
	waitUntil(t, "status shows the companion running", func() bool {
		c := status(t, d)["mon"].Companion
		return c != nil && c.State == v1.CompanionRunning && c.PID == ev.PID
	})
	pid := ev.PID
	if pid == 0 || !alive(pid) {
		t.Fatalf("companion started event %+v, but no such process", ev)
	}
	if uid := procField(t, pid, "status", "Uid:"); strings.Fields(uid)[0] != "65534" || strings.Fields(uid)[1] != "65534" {
		t.Errorf("companion runs as uid %s, want 65534", uid)
	}
	const capBPF = 39
	if eff := procField(t, pid, "status", "CapEff:"); eff != fmt.Sprintf("%016x", uint64(1)<<capBPF) {
		t.Errorf("companion's effective capabilities %s, want CAP_BPF alone", eff)
	}
	if bnd := procField(t, pid, "status", "CapPrm:"); bnd != fmt.Sprintf("%016x", uint64(1)<<capBPF) {
		t.Errorf("companion's permitted capabilities %s, want CAP_BPF alone", bnd)
	}
	if bnd := procField(t, pid, "status", "CapBnd:"); bnd != fmt.Sprintf("%016x", uint64(1)<<capBPF) {
		t.Errorf("companion's capability bounding set %s, want CAP_BPF alone", bnd)
	}
	if nnp := procField(t, pid, "status", "NoNewPrivs:"); nnp != "1" {
		t.Errorf("companion runs without no_new_privs (%s): a setuid binary could give it root", nnp)
	}
	cg := procField(t, pid, "cgroup", "0::")
	sub := companion.CgroupName(d.StateDir)
	if cg != "/"+sub+"/mon" {
		t.Errorf("companion is in cgroup v2 %q, want /%s/mon", cg, sub)
	}
	checkLimits(t, pid, sub)
	if n := p.Delivered(t, 20, 10, time.Second); n != 10 {
		t.Fatalf("%d of 10 arrived", n)
	}
	line := regexp.MustCompile(`attachment=mon .*line="?counters=(\d+)`)
	waitUntil(t, "companion prints the counter", func() bool {
		for _, m := range line.FindAllStringSubmatch(d.Logs(), -1) {
			if n, _ := strconv.Atoi(m[1]); n >= 10 {
				return true
			}
		}
		return false
	})
	if _, err := d.Client.Delete(ctx(t), "mon", false); err != nil {
		t.Fatal(err)
	}
	took := waitUntil(t, "companion stopped", func() bool { return !alive(pid) })
	waitEvent(t, d, ev.Seq, v1.EventCompanion, "stopped")
	t.Logf("companion stopped %.1f ms after the delete returned", float64(took.Microseconds())/1000)
}

// checkLimits reads the companion's memory and CPU limits from cgroup v2,
// or from the v1 hierarchies on a hybrid host.
func checkLimits(t *testing.T, pid int, sub string) {
	t.Helper()
	read := func(paths ...string) (string, string) {
		for _, p := range paths {
			if b, err := os.ReadFile(p); err == nil {
				return strings.TrimSpace(string(b)), p
			}
		}
		return "", ""
	}
	mem, where := read("/sys/fs/cgroup/unified/"+sub+"/mon/memory.max", "/sys/fs/cgroup/"+sub+"/mon/memory.max", "/sys/fs/cgroup/memory/"+sub+"/mon/memory.limit_in_bytes")
	if mem != fmt.Sprint(32<<20) {
		t.Errorf("memory limit %q (%s), want 32Mi", mem, where)
	}
	cpu, where := read("/sys/fs/cgroup/unified/"+sub+"/mon/cpu.max", "/sys/fs/cgroup/"+sub+"/mon/cpu.max", "/sys/fs/cgroup/cpu/"+sub+"/mon/cpu.cfs_quota_us")
	if cpu != "25000 100000" && cpu != "25000" {
		t.Errorf("cpu limit %q (%s), want 25000 µs per 100 ms", cpu, where)
	}
	if strings.HasSuffix(where, "cfs_quota_us") {
		if procs, _ := os.ReadFile("/sys/fs/cgroup/cpu/" + sub + "/mon/cgroup.procs"); !strings.Contains(string(procs), fmt.Sprint(pid)) {
			t.Errorf("companion %d is not in the v1 cpu cgroup carrying its limit: %q", pid, procs)
		}
	}
}

// TestCompanionCrashRestartsWithBackoff: a companion that dies is started
// again after a pause that doubles each time; deleting the attachment
// ends the restarts.
func TestCompanionCrashRestartsWithBackoff(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--repository-allow-unsigned", companionRepo(t), "--companion-dir", companionDir(t)}})
	apply(t, d, doc(fmt.Sprintf("name: boom\npackage: crashy@1.0.0\nprogram: count_xdp\nhook: {type: xdp, interface: %s, netns: %s}\ncompanion: {}", p.IfB, p.NsB)))
	starts := func() []time.Time {
		evs, err := d.Client.Events(ctx(t), 0)
		if err != nil {
			t.Fatal(err)
		}
		var out []time.Time
		for _, e := range evs {
			if e.Type == v1.EventCompanion && e.Kind == "started" && e.Attachment == "boom" {
				out = append(out, e.Time)
			}
		}
		return out
	}
	waitUntil(t, "five starts", func() bool { return len(starts()) >= 5 })
	s := starts()
	var gaps []string
	for i := 1; i < len(s); i++ {
		gap := s[i].Sub(s[i-1])
		gaps = append(gaps, gap.Round(time.Millisecond).String())
		// 100 ms, 200 ms, 400 ms, …: each pause at least the backoff.
		if want := 100 * time.Millisecond << (i - 1); gap < want {
			t.Errorf("restart %d came %s after the previous start, want at least %s", i, gap, want)
		}
	}
	t.Logf("gaps between starts: %s", strings.Join(gaps, " "))
	// Status shows the companion and how often it died.
	if c := status(t, d)["boom"].Companion; c == nil || c.Restarts < 4 || c.LastExit == "" {
		t.Errorf("status companion %+v, want at least 4 restarts and the last exit", c)
	}
	if !strings.Contains(d.Logs(), "crasher: giving up") {
		t.Error("the companion's output is not in leafd's log")
	}
	if _, err := d.Client.Delete(ctx(t), "boom", false); err != nil {
		t.Fatal(err)
	}
	n := len(starts())
	time.Sleep(2 * time.Second)
	if got := len(starts()); got != n {
		t.Fatalf("the companion started %d more times after its attachment was deleted", got-n)
	}
}

// companionFDs lists a companion's descriptors: what each points to, and
// for BPF maps their IDs (from fdinfo).
func companionFDs(t *testing.T, pid int) map[int]string {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for _, e := range entries {
		fd, _ := strconv.Atoi(e.Name())
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
		if target == "anon_inode:bpf-map" {
			target += " id " + procField(t, pid, "fdinfo/"+e.Name(), "map_id:")
		}
		out[fd] = target
	}
	return out
}

// TestCompanionGetsOnlyItsMaps is issue 10's descriptor leak: two
// companions run side by side under a leafd that inherited a descriptor
// from its parent. Each holds stdin, stdout, stderr and exactly its own
// attachment's maps at 3, 4, …; nothing of the other attachment's, and
// nothing leafd inherited. (A Go companion's own runtime opens an epoll,
// an eventfd and its cgroup's CPU limit files; they are told apart by
// kind.)
func TestCompanionGetsOnlyItsMaps(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	inherited, err := os.CreateTemp(t.TempDir(), "inherited-by-leafd-")
	if err != nil {
		t.Fatal(err)
	}
	defer inherited.Close()
	d := testenv.StartDaemon(t, testenv.DaemonOptions{
		Args:       []string{"--repository-allow-unsigned", companionRepo(t), "--companion-dir", companionDir(t)},
		ExtraFiles: []*os.File{inherited},
	})
	att := func(name, ifname, netns string) string {
		return fmt.Sprintf("name: %s\npackage: pktmon@1.0.0\nprogram: count_xdp\nhook: {type: xdp, interface: %s, netns: %s}\ncompanion: {args: [-map, counters, -interval, 1s]}", name, ifname, netns)
	}
	apply(t, d, doc(att("mon-a", p.IfA, p.NsA), att("mon-b", p.IfB, p.NsB)))
	pids := map[string]int{}
	waitUntil(t, "both companions running", func() bool {
		st := status(t, d)
		for _, n := range []string{"mon-a", "mon-b"} {
			if c := st[n].Companion; c == nil || c.State != v1.CompanionRunning || c.PID == 0 {
				return false
			}
			pids[n] = st[n].Companion.PID
		}
		return true
	})
	// The companions are running their loop once they printed.
	waitUntil(t, "both companions print", func() bool {
		return strings.Count(d.Logs(), `line="counters=`) >= 2
	})
	ownMaps := map[string]map[string]bool{}
	for name := range pids {
		maps, err := d.Client.Maps(ctx(t), name)
		if err != nil {
			t.Fatal(err)
		}
		ownMaps[name] = map[string]bool{}
		for _, m := range maps.Maps {
			// Data sections (.rodata, .bss) are not handed over.
			if !strings.Contains(m.Name, ".") {
				ownMaps[name][fmt.Sprintf("anon_inode:bpf-map id %d", m.ID)] = true
			}
		}
	}
	for name, pid := range pids {
		fds := companionFDs(t, pid)
		mapFDs := 0
		for fd, target := range fds {
			switch {
			case fd <= 2:
			case ownMaps[name][target]:
				mapFDs++
				if fd > 2+len(ownMaps[name]) {
					t.Errorf("%s: its map at fd %d, want 3..%d", name, fd, 2+len(ownMaps[name]))
				}
			case target == "anon_inode:[eventpoll]" || target == "anon_inode:[eventfd]",
				strings.HasPrefix(target, "/sys/fs/cgroup/") && regexp.MustCompile(`/cpu\.(max|cfs_quota_us|cfs_period_us)$`).MatchString(target):
				// the Go runtime's own: its poller, and the CPU limit it
				// reads for GOMAXPROCS
			default:
				t.Errorf("%s (pid %d) holds fd %d → %s, which is not one of its maps", name, pid, fd, target)
			}
		}
		if mapFDs != len(ownMaps[name]) {
			t.Errorf("%s holds %d of its %d maps: %v", name, mapFDs, len(ownMaps[name]), fds)
		}
		t.Logf("%s (pid %d): %v", name, pid, fds)
	}
}

// TestTwoLeafdsKeepTheirCompanions: two leafds with other state
// directories on one host each run a companion for an attachment of the
// same name; starting (and restarting) the second leaves the first's
// companion running, each in its own cgroup subtree.
func TestTwoLeafdsKeepTheirCompanions(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	repo, dir := companionRepo(t), companionDir(t)
	start := func() *testenv.Daemon {
		return testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--repository-allow-unsigned", repo, "--companion-dir", dir}})
	}
	run := func(d *testenv.Daemon, ifname, netns string) int {
		apply(t, d, doc(fmt.Sprintf("name: mon\npackage: pktmon@1.0.0\nprogram: count_xdp\nhook: {type: xdp, interface: %s, netns: %s}\ncompanion: {args: [-map, counters, -interval, 1s]}", ifname, netns)))
		return waitEvent(t, d, 0, v1.EventCompanion, "started").PID
	}
	first := start()
	pid1 := run(first, p.IfA, p.NsA)
	second := start()
	pid2 := run(second, p.IfB, p.NsB)
	second.Stop()
	second.Restart()
	time.Sleep(500 * time.Millisecond)
	if !alive(pid1) {
		t.Fatalf("the first leafd's companion (pid %d) was killed by the second leafd", pid1)
	}
	cg1, cg2 := procField(t, pid1, "cgroup", "0::"), ""
	if alive(pid2) {
		cg2 = procField(t, pid2, "cgroup", "0::")
	} else {
		pid2 = waitEvent(t, second, 0, v1.EventCompanion, "started").PID
		cg2 = procField(t, pid2, "cgroup", "0::")
	}
	if want := "/" + companion.CgroupName(first.StateDir) + "/mon"; cg1 != want {
		t.Errorf("first companion in %s, want %s", cg1, want)
	}
	if want := "/" + companion.CgroupName(second.StateDir) + "/mon"; cg2 != want {
		t.Errorf("second companion in %s, want %s", cg2, want)
	}
	if st := status(t, first)["mon"].Companion; st == nil || st.PID != pid1 || st.Restarts != 0 {
		t.Errorf("first leafd's companion status %+v, want pid %d never restarted", st, pid1)
	}
}
