package e2e

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// notifySocket is the test's stand-in for systemd: a unixgram socket
// leafd's sd_notify messages arrive on, in order.
type notifySocket struct {
	conn *net.UnixConn
	msgs chan string
}

func newNotifySocket(t *testing.T) (*notifySocket, string) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	ns := &notifySocket{conn: conn, msgs: make(chan string, 256)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(ns.msgs)
				return
			}
			ns.msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return ns, path
}

// next waits for a message containing want, returning those before it.
func (ns *notifySocket) next(t *testing.T, want string, wait time.Duration) []string {
	t.Helper()
	var seen []string
	deadline := time.After(wait)
	for {
		select {
		case m, ok := <-ns.msgs:
			if !ok {
				t.Fatalf("notify socket closed waiting for %q; got %q", want, seen)
			}
			if strings.Contains(m, want) {
				return seen
			}
			seen = append(seen, m)
		case <-deadline:
			t.Fatalf("no %q from leafd within %v; got %q", want, wait, seen)
		}
	}
}

// TestSystemdNotifyAndWatchdog runs the real leafd as systemd would run a
// Type=notify unit with WatchdogSec: READY=1 comes only once the declared
// program is attached, WATCHDOG=1 keeps coming while leafd runs, and
// STOPPING=1 is sent on SIGTERM.
func TestSystemdNotifyAndWatchdog(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	ns, sockPath := newNotifySocket(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state.yaml")
	if err := os.WriteFile(state, doc(portFilter(p, "filter", "1.0.0", 7001)), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(filepath.Join(testenv.Binaries(t), "leafd"), "--state-dir", filepath.Join(dir, "db"),
		"--bpffs", testenv.BPFFS(t), "--socket", filepath.Join(dir, "leafd.sock"), "--metrics-address=",
		"--desired-state", state, "--companion-dir", filepath.Join(dir, "companions"))
	// 600 ms: leafd pings every 300 ms.
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath, "WATCHDOG_USEC=600000")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("leafd log:\n%s", logs.String())
		}
	})

	if before := ns.next(t, "READY=1", 60*time.Second); len(before) != 0 {
		t.Errorf("messages before READY=1: %q", before)
	}
	// READY=1 means the first reconciliation is done: the program runs.
	if id := xdpProgID(t, p.NsB, p.IfB); id == 0 {
		t.Fatal("READY=1 sent before the declared XDP program was attached")
	}
	start := time.Now()
	for i := 0; i < 3; i++ {
		ns.next(t, "WATCHDOG=1", 10*time.Second)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("3 watchdog pings in %v: faster than every half WatchdogSec", d)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	ns.next(t, "STOPPING=1", 20*time.Second)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("leafd exited with %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("leafd did not exit after SIGTERM")
	}
	// Shutdown never detaches.
	if id := xdpProgID(t, p.NsB, p.IfB); id == 0 {
		t.Error("program detached at shutdown")
	}
}
