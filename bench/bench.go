// Package bench measures leafd on the real kernel: how long an apply takes
// for one program and for fifty programs on fifty interfaces, how long a
// no-op re-apply takes, how much memory an idle leafd holds, and how big
// the binaries are. The Go benchmarks in this package and the leafbench
// command (bench/cmd/leafbench, run by `make bench`) share these helpers.
//
// Nothing here asserts a duration: these are measurements, not tests.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/client"
)

// Package is the package@version every benchmark attachment uses: the XDP
// port filter built from this repository's sources.
const Package = "portfilter@1.0.0"

// Document returns a desired-state document with one portfilter XDP
// attachment per interface, all in netns. No interfaces gives the empty
// state, which detaches everything.
func Document(netns string, ifaces []string) []byte {
	var b strings.Builder
	b.WriteString("apiVersion: leaf.dev/v1alpha1\nkind: HostState\nmetadata: {name: bench}\nspec:\n  attachments:")
	if len(ifaces) == 0 {
		b.WriteString(" []\n")
		return []byte(b.String())
	}
	b.WriteString("\n")
	for _, ifc := range ifaces {
		fmt.Fprintf(&b, "    - name: pf-%s\n", ifc)
		fmt.Fprintf(&b, "      package: %s\n", Package)
		fmt.Fprintf(&b, "      hook: {type: xdp, interface: %s, netns: %s}\n", ifc, netns)
		b.WriteString("      params: {ports: [7001, 7003]}\n")
	}
	return []byte(b.String())
}

// TCXDocument returns a desired-state document with one pktcount TCX
// ingress attachment per interface, all in netns: the hook bpfman's
// published load+attach figure is for.
func TCXDocument(netns string, ifaces []string) []byte {
	var b strings.Builder
	b.WriteString("apiVersion: leaf.dev/v1alpha1\nkind: HostState\nmetadata: {name: bench}\nspec:\n  attachments:\n")
	for _, ifc := range ifaces {
		fmt.Fprintf(&b, "    - name: tc-%s\n", ifc)
		b.WriteString("      package: pktcount@1.0.0\n      program: count_tc\n")
		fmt.Fprintf(&b, "      hook: {type: tc, direction: ingress, interface: %s, netns: %s}\n", ifc, netns)
	}
	return []byte(b.String())
}

// CheckApply returns an error unless res shows all want attachments of
// the document created (noop false) or all of them kept and nothing
// changed (noop true).
func CheckApply(res *v1.ApplyResult, want int, noop bool) error {
	kinds := map[string]int{}
	for _, a := range res.Actions {
		kinds[a.Kind]++
	}
	kind := "create"
	if noop {
		kind = "keep"
	}
	if res.Changed == noop || kinds[kind] != want || len(res.Actions) != want {
		return fmt.Errorf("apply: changed=%v, actions %v; want %d %q", res.Changed, kinds, want, kind)
	}
	return nil
}

// Summary is the distribution of a set of timings.
type Summary struct {
	N                     int
	Min, Median, P90, Max time.Duration
}

// Summarize sorts a copy of d and returns its distribution. The median of
// an even count is the mean of the two middle values; the p90 is the
// nearest-rank 90th percentile.
func Summarize(d []time.Duration) Summary {
	if len(d) == 0 {
		return Summary{}
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	rank := (90*n + 99) / 100 // ceil(0.9 n), 1-based
	if rank < 1 {
		rank = 1
	}
	return Summary{N: n, Min: s[0], Median: med, P90: s[rank-1], Max: s[n-1]}
}

// Runner runs external commands and remembers each command line, so the
// leafbench report can print exactly what it ran.
type Runner struct {
	mu  sync.Mutex
	Log []string
}

// Note records a step done without an external command.
func (r *Runner) Note(line string) {
	if r != nil {
		r.mu.Lock()
		r.Log = append(r.Log, line)
		r.mu.Unlock()
	}
}

// Run runs name with args (stdin, when not empty, is fed to it).
func (r *Runner) Run(stdin, name string, args ...string) error {
	line := name
	for _, a := range args {
		if strings.ContainsAny(a, " '\"$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		line += " " + a
	}
	if stdin != "" {
		line += " <<EOF\n" + stdin + "EOF"
	}
	r.Note(line)
	cmd := exec.Command(name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

var seq atomic.Uint32

// Sandbox is two network namespaces joined by N veth pairs. Each pair's
// ends have the same name in A and in B (bv0, bv1, …); programs attach to
// the B ends.
type Sandbox struct {
	NsA, NsB string
	Ifaces   []string
	r        *Runner
}

// NewSandbox creates the namespaces and n veth pairs, all up. r may be nil.
func NewSandbox(r *Runner, n int) (*Sandbox, error) {
	tag := fmt.Sprintf("leafbench-%d-%d", os.Getpid(), seq.Add(1))
	s := &Sandbox{NsA: tag + "-a", NsB: tag + "-b", r: r}
	for i := 0; i < n; i++ {
		s.Ifaces = append(s.Ifaces, fmt.Sprintf("bv%d", i))
	}
	var inA, inB strings.Builder
	for _, ifc := range s.Ifaces {
		fmt.Fprintf(&inA, "link add %s type veth peer name %s netns %s\n", ifc, ifc, s.NsB)
		fmt.Fprintf(&inA, "link set %s up\n", ifc)
		fmt.Fprintf(&inB, "link set %s up\n", ifc)
	}
	inA.WriteString("link set lo up\n")
	inB.WriteString("link set lo up\n")
	err := errors.Join(
		r.Run("", "ip", "netns", "add", s.NsA),
		r.Run("", "ip", "netns", "add", s.NsB),
	)
	// Two ip -batch runs are much faster than 150 ip processes; the log
	// shows the equivalent shell loop.
	r.Note(fmt.Sprintf("for i in $(seq 0 %d); do ip -n %s link add bv$i type veth peer name bv$i netns %s; ip -n %s link set bv$i up; ip -n %s link set bv$i up; done; ip -n %s link set lo up; ip -n %s link set lo up",
		n-1, s.NsA, s.NsB, s.NsA, s.NsB, s.NsA, s.NsB))
	var quiet *Runner
	if err == nil {
		err = quiet.Run(inA.String(), "ip", "-n", s.NsA, "-batch", "-")
	}
	if err == nil {
		err = quiet.Run(inB.String(), "ip", "-n", s.NsB, "-batch", "-")
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close deletes both namespaces, and with them every veth pair.
func (s *Sandbox) Close() error {
	var errs []error
	for _, ns := range []string{s.NsA, s.NsB} {
		if _, err := os.Stat(filepath.Join("/var/run/netns", ns)); err == nil {
			errs = append(errs, s.r.Run("", "ip", "netns", "del", ns))
		}
	}
	return errors.Join(errs...)
}

// Daemon is a leafd process on a private bpffs, state directory and
// socket, all under one temporary directory.
type Daemon struct {
	Dir, BPFFS, StateDir, Socket string
	// Argv is the full command line leafd runs with.
	Argv   []string
	Client *client.Client

	cmd     *exec.Cmd
	logs    bytes.Buffer
	done    chan struct{}
	mounted bool
	r       *Runner
}

// StartDaemon mounts a private bpffs, starts leafd (the binary at path)
// with extra flags after the private ones, and waits until it answers.
func StartDaemon(r *Runner, leafd string, extra ...string) (*Daemon, error) {
	dir, err := os.MkdirTemp("", "leafbench-")
	if err != nil {
		return nil, err
	}
	d := &Daemon{Dir: dir, BPFFS: filepath.Join(dir, "bpffs"), StateDir: filepath.Join(dir, "state"), Socket: filepath.Join(dir, "leafd.sock"), r: r}
	if err := os.MkdirAll(d.BPFFS, 0o700); err != nil {
		d.Close()
		return nil, err
	}
	r.Note("mkdir -p " + d.BPFFS + " && mount -t bpf -o mode=0700 bpf " + d.BPFFS)
	if err := unix.Mount("bpf", d.BPFFS, "bpf", 0, "mode=0700"); err != nil {
		d.Close()
		return nil, fmt.Errorf("mount bpffs on %s: %w", d.BPFFS, err)
	}
	d.mounted = true
	d.Argv = append([]string{leafd, "--state-dir", d.StateDir, "--bpffs", d.BPFFS, "--socket", d.Socket}, extra...)
	r.Note(strings.Join(d.Argv, " ") + " &")
	d.cmd = exec.Command(d.Argv[0], d.Argv[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = &lockedWriter{w: &d.logs}, &lockedWriter{w: &d.logs}
	// Its own process group: a Ctrl-C meant for the benchmark must not
	// stop leafd before the benchmark has detached what it applied.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		d.Close()
		return nil, fmt.Errorf("start leafd: %w", err)
	}
	d.done = make(chan struct{})
	go func() { d.cmd.Wait(); close(d.done) }()
	d.Client = client.New(d.Socket)
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-d.done:
			logs := d.Logs()
			d.Close()
			return nil, fmt.Errorf("leafd exited at start: %s", logs)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := d.Client.Health(ctx)
		cancel()
		if err == nil {
			return d, nil
		}
		if time.Now().After(deadline) {
			logs := d.Logs()
			d.Close()
			return nil, fmt.Errorf("leafd did not answer within 30s: %v: %s", err, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var logsMu sync.Mutex

type lockedWriter struct{ w *bytes.Buffer }

func (l *lockedWriter) Write(p []byte) (int, error) {
	logsMu.Lock()
	defer logsMu.Unlock()
	return l.w.Write(p)
}

// Logs returns what leafd wrote so far.
func (d *Daemon) Logs() string {
	logsMu.Lock()
	defer logsMu.Unlock()
	return d.logs.String()
}

// PID is leafd's process ID.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// RSS returns leafd's resident set size in bytes (VmRSS).
func (d *Daemon) RSS() (int64, error) { return VmRSS(d.PID()) }

// Close stops leafd with SIGTERM (which leaves programs attached: detach
// them first by applying the empty document), unmounts the bpffs, which
// frees whatever it still pins, and removes the directory.
func (d *Daemon) Close() error {
	var errs []error
	if d.done != nil {
		select {
		case <-d.done:
		default:
			d.r.Note(fmt.Sprintf("kill -TERM %d  # leafd", d.PID()))
			d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.done:
			case <-time.After(20 * time.Second):
				d.cmd.Process.Kill()
				<-d.done
				errs = append(errs, errors.New("leafd did not stop on SIGTERM within 20s"))
			}
		}
	}
	if d.mounted {
		d.r.Note("umount -l " + d.BPFFS)
		if err := unix.Unmount(d.BPFFS, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", d.BPFFS, err))
		}
		d.mounted = false
	}
	d.r.Note("rm -r " + d.Dir)
	errs = append(errs, os.RemoveAll(d.Dir))
	return errors.Join(errs...)
}

// VmRSS reads a process's resident set size from /proc/PID/status.
func VmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[0] == "VmRSS:" && fields[2] == "kB" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// Objects are kernel BPF objects by ID: programs and the maps they use.
type Objects struct {
	Progs []ebpf.ProgramID
	Maps  []ebpf.MapID
}

// ObjectsOf returns the programs with the given IDs and the maps they
// use, except their .rodata maps (see below). Programs already gone are
// left out.
func ObjectsOf(ids []ebpf.ProgramID) (Objects, error) {
	var o Objects
	for _, id := range ids {
		p, err := ebpf.NewProgramFromID(id)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return o, fmt.Errorf("program %d: %w", id, err)
		}
		info, err := p.Info()
		p.Close()
		if err != nil {
			return o, fmt.Errorf("program %d: %w", id, err)
		}
		o.Progs = append(o.Progs, id)
		maps, _ := info.MapIDs()
		for _, mid := range maps {
			m, err := ebpf.NewMapFromID(mid)
			if err != nil {
				continue
			}
			mi, err := m.Info()
			m.Close()
			// Leave out .rodata: cilium/ebpf maps it into the loading
			// process's memory and unmaps it only when Go's garbage
			// collector runs, so it can outlive its program by minutes.
			if err == nil && mi.Name == ".rodata" {
				continue
			}
			o.Maps = append(o.Maps, mid)
		}
	}
	return o, nil
}

// WaitFreed polls until the kernel has freed every object (programs and
// maps are freed asynchronously after their last reference goes), then
// lets the kernel finish the freeing (SettleRCU), and returns how long
// the objects took to go.
func (o Objects) WaitFreed(timeout time.Duration) (took time.Duration, err error) {
	defer SettleRCU()
	start := time.Now()
	for {
		var alive []string
		for _, id := range o.Progs {
			if p, err := ebpf.NewProgramFromID(id); err == nil {
				p.Close()
				alive = append(alive, fmt.Sprintf("program %d", id))
			}
		}
		for _, id := range o.Maps {
			if m, err := ebpf.NewMapFromID(id); err == nil {
				m.Close()
				alive = append(alive, fmt.Sprintf("map %d", id))
			}
		}
		if len(alive) == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("%d of %d programs and maps still exist %s after the delete: %s", len(alive), len(o.Progs)+len(o.Maps), timeout, strings.Join(alive, ", "))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Cleared is what Clear measured.
type Cleared struct {
	// Apply is how long the apply of the empty document took.
	Apply time.Duration
	// Freed is how long after that the kernel took to free the programs
	// and maps (zero unless Clear waited).
	Freed time.Duration
}

// Clear applies the empty document to leafd, detaching everything, and
// with wait also waits until the kernel has freed the programs and maps
// that ran, so that the next measurement starts on a quiet kernel.
func Clear(ctx context.Context, c *client.Client, wait bool) (Cleared, error) {
	var out Cleared
	var objs Objects
	if wait {
		st, err := c.Status(ctx)
		if err != nil {
			return out, err
		}
		var ids []ebpf.ProgramID
		for _, a := range st.Attachments {
			if a.ProgramID != 0 {
				ids = append(ids, ebpf.ProgramID(a.ProgramID))
			}
		}
		if objs, err = ObjectsOf(ids); err != nil {
			return out, err
		}
	}
	start := time.Now()
	if _, err := c.Apply(ctx, Document("", nil), false); err != nil {
		return out, fmt.Errorf("apply the empty document: %w", err)
	}
	out.Apply = time.Since(start)
	if wait {
		var err error
		if out.Freed, err = objs.WaitFreed(30 * time.Second); err != nil {
			return out, err
		}
	}
	return out, nil
}

// SettleRCU lets the kernel finish what freeing the run before queued
// for RCU, so that the next measurement starts as every other does: just
// after a grace period ended. Freeing a program or a map (and closing a
// socket, or any bpffs path walk) leaves work for the next grace period,
// which the scheduler tick starts; an XDP or TCX attach made while one is
// in flight waits for it to end before its own, one to three ticks (4 ms
// each here) more. Without settling, the measurement after a cleanup
// pays for the cleanup, the more the later its attach comes: leafd's
// apply, which attaches about 2 ms after its request, paid it in most
// iterations, the reference, which attaches within 1 ms, seldom
// (docs/benchmarks.md, "Where a one-program apply's time goes"). Each
// round gives the callbacks of the last time to queue what they free
// next, then waits for one full grace period (MEMBARRIER_CMD_GLOBAL is
// synchronize_rcu). Ending on a grace period rather than on a sleep keeps
// the CPUs as a loader finds them between two applies: after a long idle
// the first grace period takes a tick longer for both sides.
func SettleRCU() {
	const membarrierCmdGlobal = 1
	for range 3 {
		time.Sleep(10 * time.Millisecond)
		unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0)
	}
}
