package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// startConsole runs `leaf console` against socket (as cred, if set) and
// returns the login URL it prints.
func startConsole(t *testing.T, socket string, cred *syscall.Credential) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(testenv.Binaries(t), "leaf"), "--socket", socket, "console")
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("leaf console printed nothing: %v", err)
	}
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "leaf console: ")
	if !ok || !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.Contains(url, "/login?token=") {
		t.Fatalf("leaf console printed %q", line)
	}
	go io.Copy(io.Discard, out)
	return url
}

// TestConsoleInBrowser drives Debian's headless Chromium (playwright-core,
// e2e/console) against the console leafd serves, through `leaf console`:
// a three-member XDP chain shows in order, a reorder made through the API
// appears without a reload, and a reader sees everything but can change
// nothing. Screenshots land in $LEAF_TEST_ARTIFACTS (default: a temporary
// directory named in the log).
func TestConsoleInBrowser(t *testing.T) {
	testenv.RequireKernel(t)
	for _, need := range []string{"node", "/usr/bin/chromium"} {
		if _, err := exec.LookPath(need); err != nil {
			t.Skipf("%s not installed (scripts/install-deps.sh)", need)
		}
	}
	if _, err := os.Stat("console/node_modules/playwright-core"); err != nil {
		t.Skip("playwright-core missing: run (cd e2e/console && npm ci), as scripts/install-deps.sh does")
	}
	shots := os.Getenv("LEAF_TEST_ARTIFACTS")
	if shots == "" {
		shots = t.TempDir()
	}
	os.MkdirAll(shots, 0o755)
	shots, _ = filepath.Abs(shots)

	const readerGID = 3141
	cfg := filepath.Join(t.TempDir(), "leafd.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("apiVersion: leaf.dev/v1alpha1\nkind: DaemonConfig\nsocketGroup: \"%d\"\nsocketRoles:\n  - {group: \"%d\", role: reader}\n", readerGID, readerGID)), 0o600)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{
		Socket: filepath.Join(testenv.SharedDir(t), "leafd.sock"),
		Args:   []string{"--config", cfg, "--bpf-stats"},
	})
	p := testenv.NewPair(t)
	xdp := fmt.Sprintf("{type: xdp, interface: %s, netns: %s}", p.IfB, p.NsB)
	chain := func(prioFilter, prioLimit int) []byte {
		return doc(
			fmt.Sprintf("name: filter\npackage: portfilter@1.0.0\npriority: %d\nhook: %s\nparams: {ports: [7001]}", prioFilter, xdp),
			fmt.Sprintf("name: count\npackage: pktcount@1.0.0\nprogram: count_xdp\npriority: 20\nhook: %s", xdp),
			fmt.Sprintf("name: limit\npackage: ratelimit@1.0.0\npriority: %d\nhook: %s", prioLimit, xdp),
			fmt.Sprintf("name: tc-count\npackage: pktcount@1.0.0\nprogram: count_tc\nhook: {type: tc, direction: ingress, interface: %s, netns: %s}", p.IfB, p.NsB),
			"name: execs\npackage: execcount@1.0.0\nhook: {type: tracepoint, tracepoint: sched/sched_process_exec}",
		)
	}
	apply(t, d, chain(10, 30))
	hook := status(t, d)["filter"].Hook

	admin := startConsole(t, d.Socket, nil)
	reader := startConsole(t, d.Socket, &syscall.Credential{Uid: 3142, Gid: readerGID, Groups: []uint32{readerGID}})

	node := exec.Command("node", "console.test.mjs")
	node.Dir = "console"
	node.Env = append(os.Environ(), "ADMIN_URL="+admin, "READER_URL="+reader, "XDP_HOOK="+hook, "SHOTS="+shots)
	node.Stderr = os.Stderr
	stdin, _ := node.StdinPipe()
	stdout, _ := node.StdoutPipe()
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- node.Wait() }()
	t.Cleanup(func() { node.Process.Kill() })
	lines := bufio.NewScanner(stdout)
	expect := func(prefix string) string {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("browser test ended before %s: %v", prefix, <-done)
		}
		got := lines.Text()
		if !strings.HasPrefix(got, prefix) {
			t.Fatalf("browser test said %q, want %s", got, prefix)
		}
		return strings.TrimSpace(strings.TrimPrefix(got, prefix))
	}
	if order := expect("READY"); order != "filter,count,limit" {
		t.Fatalf("chain shown as %s", order)
	}
	// Reorder through the API: limit first.
	apply(t, d, chain(10, 5))
	fmt.Fprintln(stdin, "REORDERED")
	if order := expect("LIVE"); order != "limit,filter,count" {
		t.Fatalf("after the reorder the page shows %s", order)
	}
	expect("READER 403")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("browser test: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("browser test did not end")
	}
	// The reader changed nothing.
	if st := status(t, d); st["limit"].Chain == nil || st["limit"].Chain.Position != 1 {
		t.Errorf("chain changed after the reader's attempt: %+v", st["limit"].Chain)
	}
	t.Logf("screenshots in %s", shots)
}
