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

	"github.com/cilium/ebpf"

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
// e2e/console) against the console leafd serves, through `leaf console`,
// on a host with a three-member XDP chain, a TC chain beside a foreign
// TCX program the test attaches itself, and a tracepoint: every hook
// shows (the foreign program marked foreign next to leaf's chain), the
// charts of declared metrics fill with the traffic the test sends, the
// verdict counters the packages declare count it, the TLS listener's
// certificates show with their expiry, a reorder made through the API
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

	// A TLS listener whose server certificate (a year) is inside a
	// 400-day warning window and whose CA (ten years) is not.
	s := startSecureLeafd(t, "certWarningWindow: 9600h\n", "--bpf-stats")
	d := s.d
	p := testenv.NewPair(t)
	attachTCX(t, p, foreignProgram(t, ebpf.SchedCLS, "not_leafs"))
	xdp := fmt.Sprintf("{type: xdp, interface: %s, netns: %s}", p.IfB, p.NsB)
	tc := fmt.Sprintf("{type: tc, direction: ingress, interface: %s, netns: %s}", p.IfB, p.NsB)
	chain := func(prioFilter, prioLimit int) []byte {
		return doc(
			fmt.Sprintf("name: filter\npackage: portfilter@1.0.0\npriority: %d\nhook: %s\nparams: {ports: [7001]}", prioFilter, xdp),
			fmt.Sprintf("name: count\npackage: pktcount@1.0.0\nprogram: count_xdp\npriority: 20\nhook: %s", xdp),
			fmt.Sprintf("name: limit\npackage: ratelimit@1.0.0\npriority: %d\nhook: %s", prioLimit, xdp),
			fmt.Sprintf("name: tc-count\npackage: pktcount@1.0.0\nprogram: count_tc\npriority: 10\nhook: %s", tc),
			fmt.Sprintf("name: tc-conns\npackage: connlimit@1.0.0\npriority: 20\nhook: %s\nparams: {ports: [7100]}", tc),
			"name: execs\npackage: execcount@1.0.0\nhook: {type: tracepoint, tracepoint: sched/sched_process_exec}",
		)
	}
	apply(t, d, chain(10, 30))
	st := status(t, d)
	hook, tcHook, tpHook := st["filter"].Hook, st["tc-count"].Hook, st["execs"].Hook
	var foreignID uint32
	waitFor(t, 10*time.Second, "the foreign TCX program in status", func() bool {
		full, err := d.Client.Status(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range full.Foreign {
			if f.Hook == tcHook && f.Name == "not_leafs" {
				foreignID = f.ProgramID
				return true
			}
		}
		return false
	})
	// Traffic for the charts and verdict counters: 7001 is dropped by
	// the filter, 7002 passes the whole chain.
	p.StartStream(t, 7001, 20*time.Millisecond)
	p.StartStream(t, 7002, 10*time.Millisecond)

	admin := startConsole(t, d.Socket, nil)
	reader := startConsole(t, d.Socket, &syscall.Credential{Uid: 3142, Gid: 3001, Groups: []uint32{socketGroup, 3001}})

	node := exec.Command("node", "console.test.mjs")
	node.Dir = "console"
	node.Env = append(os.Environ(), "ADMIN_URL="+admin, "READER_URL="+reader, "XDP_HOOK="+hook, "TC_HOOK="+tcHook, "TP_HOOK="+tpHook,
		fmt.Sprintf("FOREIGN_ID=%d", foreignID), "SHOTS="+shots)
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
	if tcShown := expect("TC"); tcShown != fmt.Sprintf("tc-count,tc-conns foreign %d", foreignID) {
		t.Fatalf("TC hook shown as %q", tcShown)
	}
	expect("TRACEPOINT execs")
	if charts := expect("CHARTS"); charts == "" {
		t.Fatal("no chart with data")
	} else {
		t.Logf("charts with data: %s", charts)
	}
	if verdicts := expect("VERDICTS"); !strings.Contains(verdicts, "XDP_DROP=") || !strings.Contains(verdicts, "XDP_PASS=") {
		t.Fatalf("filter's verdict counters: %q", verdicts)
	}
	if certs := expect("CERTS"); certs != "server:leafd:warn ca:leaf e2e CA:ok" {
		t.Fatalf("certificates shown as %q", certs)
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
