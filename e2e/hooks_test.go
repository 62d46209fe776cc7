package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/client"
	"github.com/leaf-ebpf/leaf/internal/hook"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

func mapSum(t *testing.T, d *testenv.Daemon, attachment, m string) (entries int, byKey map[uint64]uint64) {
	t.Helper()
	dump, err := d.Client.DumpMap(ctx(t), attachment, m)
	if err != nil {
		t.Fatal(err)
	}
	byKey = map[uint64]uint64{}
	for _, e := range dump.Entries {
		byKey[*e.KeyUint] = *e.ValueUint
	}
	return len(dump.Entries), byKey
}

// TestTCXHook attaches a TC program through TCX and checks it with the
// kernel's own query and with traffic.
func TestTCXHook(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	apply(t, d, doc(`name: count-in
package: pktcount@1.0.0
program: count_tc
hook: {type: tc, direction: ingress, interface: `+p.IfB+`, netns: `+p.NsB+`}`))
	st := status(t, d)["count-in"]
	progs := tcxPrograms(t, p.NsB, p.IfB, ebpf.AttachTCXIngress)
	if len(progs) != 1 || uint32(progs[0].ID) != st.ProgramID {
		t.Fatalf("kernel TCX ingress programs %+v, status program %d", progs, st.ProgramID)
	}
	if got := p.Delivered(t, 7100, 25, 300*time.Millisecond); got != 25 {
		t.Fatalf("count_tc must pass everything: %d of 25 delivered", got)
	}
	_, c := mapSum(t, d, "count-in", "counters")
	if c[0] < 25 {
		t.Fatalf("TC program counted %d packets, want at least 25", c[0])
	}
}

// TestTracepointHook counts exec calls.
func TestTracepointHook(t *testing.T) {
	testenv.RequireKernel(t)
	if _, err := os.Stat(filepath.Join(hook.TracefsRoot, "events")); err != nil {
		t.Skipf("tracefs not mounted at %s (leafd mounts it; this test reads it first): %v", hook.TracefsRoot, err)
	}
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	apply(t, d, doc(`name: execs
package: execcount@1.0.0
hook: {type: tracepoint, tracepoint: sched/sched_process_exec}`))
	_, before := mapSum(t, d, "execs", "execs")
	for i := 0; i < 5; i++ {
		if err := exec.Command("/bin/true").Run(); err != nil {
			t.Fatal(err)
		}
	}
	_, after := mapSum(t, d, "execs", "execs")
	uid := uint64(os.Getuid())
	if after[uid]-before[uid] < 5 {
		t.Fatalf("exec count for uid %d went %d→%d after 5 execs", uid, before[uid], after[uid])
	}
}

// TestUprobeHook counts calls of libc's exit in processes the test runs.
func TestUprobeHook(t *testing.T) {
	testenv.RequireKernel(t)
	libc := ""
	for _, p := range []string{"/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6", "/usr/lib64/libc.so.6"} {
		if _, err := os.Stat(p); err == nil {
			libc = p
			break
		}
	}
	if libc == "" {
		t.Skip("no libc.so.6 found to put a uprobe on")
	}
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	apply(t, d, doc(`name: exits
package: callcount@1.0.0
program: count_uprobe
hook: {type: uprobe, binary: `+libc+`, function: exit}`))
	if st := status(t, d)["exits"]; st.State != "attached" {
		t.Fatalf("uprobe status %+v", st)
	}
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	_, calls := mapSum(t, d, "exits", "calls")
	if calls[uint64(cmd.Process.Pid)] < 1 {
		t.Fatalf("no call of exit counted for pid %d: %v", cmd.Process.Pid, calls)
	}
}

// cgroup2Root finds the cgroup v2 mount.
func cgroup2Root(t *testing.T) string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" {
				return fields[4]
			}
		}
	}
	t.Skip("no cgroup v2 mount")
	return ""
}

// TestCgroupSKBHook counts packets sent by processes of one cgroup.
func TestCgroupSKBHook(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	cg := filepath.Join(cgroup2Root(t), fmt.Sprintf("leaf-test-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Skipf("cannot create a cgroup: %v", err)
	}
	t.Cleanup(func() { os.Remove(cg) })
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	apply(t, d, doc(`name: cg-out
package: pktcount@1.0.0
program: count_cgroup_skb
hook: {type: cgroup_skb, direction: egress, cgroup: `+cg+`}`))
	if st := status(t, d)["cg-out"]; st.State != "attached" {
		t.Fatalf("status %+v", st)
	}
	// A shell moves itself into the cgroup (before `ip netns exec`, which
	// remounts /sys), then sends 7 datagrams from A.
	send := fmt.Sprintf(`for i in 1 2 3 4 5 6 7; do echo x > /dev/udp/%s/7200; done`, p.AddrB)
	script := fmt.Sprintf(`echo $$ > %s/cgroup.procs && exec ip netns exec %s bash -c '%s'`, cg, p.NsA, send)
	if out, err := exec.Command("bash", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("send from cgroup: %v: %s", err, out)
	}
	_, c := mapSum(t, d, "cg-out", "counters")
	if c[0] < 7 {
		t.Fatalf("cgroup egress program counted %d packets, want at least 7", c[0])
	}
}

// TestKprobeHook attaches a kprobe where the kernel has kprobes, and
// otherwise checks that leaf says clearly that it does not.
func TestKprobeHook(t *testing.T) {
	testenv.RequireKernel(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	document := doc(`name: kp
package: callcount@1.0.0
program: count_kprobe
hook: {type: kprobe, function: do_sys_openat2}`)
	_, err := d.Client.Apply(ctx(t), document, false)
	if hook.KprobeSupported() != nil {
		var apiErr *client.APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 422 || apiErr.Kind() != "feature-missing" || !strings.Contains(err.Error(), "kprobes are not supported by this kernel") {
			t.Fatalf("on a kernel without kprobes, want a 422 of kind feature-missing saying so, got %v", err)
		}
		if len(status(t, d)) != 0 {
			t.Fatal("a refused kprobe left an attachment behind")
		}
		t.Skipf("kernel has no kprobes; leaf refused clearly: %v", err)
	}
	if err != nil {
		t.Fatalf("kprobe apply: %v", err)
	}
	os.ReadFile("/etc/hostname")
	if st := status(t, d)["kp"]; st.State != "attached" {
		t.Fatalf("status %+v", st)
	}
	n, _ := mapSum(t, d, "kp", "calls")
	if n == 0 {
		t.Fatal("kprobe counted no calls")
	}
}
