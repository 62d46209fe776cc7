package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/client"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds leafd and leaf once per test binary (with the race
// detector when the tests use it) and returns their directory.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "leaf-bin-")
		if buildErr != nil {
			return
		}
		args := []string{"build", "-o", binDir + "/"}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "github.com/leaf-ebpf/leaf/cmd/leafd", "github.com/leaf-ebpf/leaf/cmd/leaf", "github.com/leaf-ebpf/leaf/internal/testenv/peerclient")
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
		// Other uids run peerclient (AsUser): let them reach it.
		if err == nil {
			buildErr = os.Chmod(binDir, 0o755)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

var (
	crashOnce sync.Once
	crashBin  string
	crashErr  error
)

// CrashBinary builds, once per test binary, a leafd with the leafcrash
// tag: it kills itself at the step named by LEAF_CRASH_AT (see package
// crashpoint).
func CrashBinary(t testing.TB) string {
	t.Helper()
	crashOnce.Do(func() {
		dir, err := os.MkdirTemp("", "leaf-crash-bin-")
		if err != nil {
			crashErr = err
			return
		}
		args := []string{"build", "-tags", "leafcrash", "-o", dir + "/"}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, "github.com/leaf-ebpf/leaf/cmd/leafd")...).CombinedOutput()
		if err != nil {
			crashErr = fmt.Errorf("go build -tags leafcrash: %v: %s", err, out)
		}
		crashBin = filepath.Join(dir, "leafd")
	})
	if crashErr != nil {
		t.Fatal(crashErr)
	}
	return crashBin
}

// Daemon is a leafd process run by a test.
type Daemon struct {
	t        testing.TB
	Socket   string
	BPFFS    string
	StateDir string
	Args     []string
	Env      []string
	// Binary is the leafd to run; empty runs the one Binaries builds.
	Binary string
	Client *client.Client

	cmd   *exec.Cmd
	extra []*os.File
	logs  *syncBuffer
	done  chan struct{}
}

// DaemonOptions configures StartDaemon.
type DaemonOptions struct {
	// BPFFS defaults to a fresh private bpffs.
	BPFFS string
	// StateDir defaults to a fresh temporary directory.
	StateDir string
	// Socket defaults to leafd.sock in a fresh temporary directory.
	Socket string
	// Args are extra leafd flags.
	Args []string
	// Env is extra environment for leafd.
	Env []string
	// ExtraFiles are descriptors leafd inherits (3, 4, …), as from a
	// careless parent.
	ExtraFiles []*os.File
	// Binary is the leafd to run (CrashBinary's, say); empty runs the one
	// Binaries builds.
	Binary string
}

// StartDaemon starts leafd on a private socket and waits until it answers.
func StartDaemon(t testing.TB, opts DaemonOptions) *Daemon {
	t.Helper()
	dir := t.TempDir()
	d := &Daemon{t: t, Socket: opts.Socket, BPFFS: opts.BPFFS, StateDir: opts.StateDir, Env: opts.Env, Binary: opts.Binary, extra: opts.ExtraFiles}
	if d.Socket == "" {
		d.Socket = filepath.Join(dir, "leafd.sock")
	}
	if d.BPFFS == "" {
		d.BPFFS = BPFFS(t)
	}
	if d.StateDir == "" {
		d.StateDir = filepath.Join(dir, "state")
	}
	d.Args = append([]string{"--state-dir", d.StateDir, "--bpffs", d.BPFFS, "--socket", d.Socket, "--metrics-address", "", "--log-level", "debug"}, opts.Args...)
	d.Client = client.New(d.Socket)
	d.start()
	t.Cleanup(func() {
		d.Stop()
		// leafd runs with the race detector in tests: a race or panic in it
		// fails the test that drove it.
		if logs := d.logs.String(); strings.Contains(logs, "DATA RACE") || strings.Contains(logs, "panic:") {
			t.Errorf("leafd reported a data race or panic")
		}
		if t.Failed() {
			t.Logf("leafd log:\n%s", d.logs.String())
		}
	})
	return d
}

func (d *Daemon) start() {
	d.t.Helper()
	d.logs = &syncBuffer{}
	bin := d.Binary
	if bin == "" {
		bin = filepath.Join(Binaries(d.t), "leafd")
	}
	d.cmd = exec.Command(bin, d.Args...)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	d.cmd.ExtraFiles = d.extra
	if d.Env != nil {
		d.cmd.Env = append(os.Environ(), d.Env...)
	}
	if err := d.cmd.Start(); err != nil {
		d.t.Fatalf("start leafd: %v", err)
	}
	d.done = make(chan struct{})
	go func() { d.cmd.Wait(); close(d.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			d.t.Fatalf("leafd exited at start: %s", d.logs.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		// Ready, not just alive: the start-up reconcile has finished, so a
		// test sees adopted programs and its applies do not race it.
		err := d.Client.Ready(ctx)
		cancel()
		if err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.t.Fatalf("leafd did not answer within 30s: %s", d.logs.String())
}

// PID is the running leafd's process ID.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Logs returns what leafd logged so far.
func (d *Daemon) Logs() string { return d.logs.String() }

// Kill sends SIGKILL and waits for the process to end.
func (d *Daemon) Kill() {
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// Stop sends SIGTERM and waits for a clean exit.
func (d *Daemon) Stop() {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		d.t.Errorf("leafd did not stop on SIGTERM")
	}
}

// Restart starts leafd again with the same flags (after Kill or Stop).
func (d *Daemon) Restart() {
	d.t.Helper()
	d.start()
}

// Exited waits up to timeout for leafd to exit by itself and returns its
// logs and whether it did.
func (d *Daemon) Exited(timeout time.Duration) (string, bool) {
	select {
	case <-d.done:
		return d.logs.String(), true
	case <-time.After(timeout):
		return d.logs.String(), false
	}
}

// StartDaemonExpectFailure runs leafd with args and returns its output,
// failing the test if it does not exit non-zero within 30s.
func StartDaemonExpectFailure(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(Binaries(t), "leafd"), args...).CombinedOutput()
	if err == nil {
		t.Fatalf("leafd %v succeeded, want failure: %s", args, out)
	}
	return string(out)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
