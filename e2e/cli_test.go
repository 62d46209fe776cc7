package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/client"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// cliResult is what one run of the leaf binary printed and how it exited.
type cliResult struct {
	Stdout, Stderr string
	Code           int
}

// runCLI runs the built leaf binary against socket.
func runCLI(t *testing.T, socket string, stdin []byte, args ...string) cliResult {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(c, filepath.Join(testenv.Binaries(t), "leaf"), append([]string{"--socket", socket}, args...)...)
	cmd.Env = append(os.Environ(), "LEAF_SOCKET=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	res := cliResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		t.Fatalf("leaf %v: %v", args, err)
	}
	return res
}

// mustCLI runs leaf and fails the test unless it exits 0.
func mustCLI(t *testing.T, socket string, args ...string) string {
	t.Helper()
	r := runCLI(t, socket, nil, args...)
	if r.Code != 0 {
		t.Fatalf("leaf %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// table parses a tabwriter table whose header has the given columns (in
// order; a column name may contain a space). It returns the rows keyed by
// their first cell, each as column → cell, cut at the header's offsets.
func cliTable(t *testing.T, out string, columns ...string) map[string]map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	header := lines[0]
	var offsets []int
	rest := 0
	for _, c := range columns {
		i := strings.Index(header[rest:], c)
		if i < 0 || (len(offsets) == 0 && i != 0) {
			t.Fatalf("table header %q lacks column %q (want %q)", header, c, columns)
		}
		offsets = append(offsets, rest+i)
		rest += i + len(c)
	}
	if strings.TrimSpace(header[rest:]) != "" {
		t.Fatalf("table header %q has columns beyond %q", header, columns)
	}
	rows := map[string]map[string]string{}
	for _, l := range lines[1:] {
		row := map[string]string{}
		for i, c := range columns {
			start, end := offsets[i], len(l)
			if i+1 < len(offsets) {
				end = min(offsets[i+1], len(l))
			}
			if start < len(l) {
				row[c] = strings.TrimSpace(l[start:end])
			}
		}
		rows[row[columns[0]]] = row
	}
	return rows
}

// atLeast reports whether s is an integer of at least n.
func cliAtLeast(s string, n uint64) bool {
	v, err := strconv.ParseUint(s, 10, 64)
	return err == nil && v >= n
}

func cliFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func cliCounter(p *testenv.Pair) string {
	return fmt.Sprintf("name: counter\npackage: pktcount@1.0.0\nprogram: count_xdp\nhook: {type: xdp, interface: %s, netns: %s}", p.IfA, p.NsA)
}

func TestCLI(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--repository-allow-unsigned", apiRepository(t)}})
	sock := d.Socket

	// Empty host.
	if out := mustCLI(t, sock, "status"); strings.TrimSpace(out) != "no attachments" {
		t.Errorf("status on an empty host: %q", out)
	}

	// apply -f FILE.
	file := cliFile(t, "state.yaml", doc(portFilter(p, "filter", "1.0.0", 7001, 7003), cliCounter(p)))
	out := mustCLI(t, sock, "apply", "-f", file)
	for _, want := range []string{"counter: create (", "filter: create ("} {
		if !strings.Contains(out, want) {
			t.Errorf("apply output %q does not contain %q", out, want)
		}
	}
	if got := p.Delivered(t, 7001, 10, 300*time.Millisecond); got != 0 {
		t.Errorf("port 7001: %d of 10 delivered after leaf apply, want 0", got)
	}
	// Again: nothing to do.
	checkNoChanges := func(what, out string) {
		t.Helper()
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if lines[0] != "no changes" || len(lines) != 3 {
			t.Errorf("%s: output %q, want \"no changes\" and a keep line per attachment", what, out)
		}
		for _, l := range lines[1:] {
			if !strings.Contains(l, ": keep (") {
				t.Errorf("%s: line %q is not a keep", what, l)
			}
		}
	}
	checkNoChanges("re-apply", mustCLI(t, sock, "apply", "-f", file))
	// From standard input, as JSON.
	var asJSON bytes.Buffer
	raw, err := d.Client.Desired(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	asJSON.Write(raw)
	if r := runCLI(t, sock, asJSON.Bytes(), "apply", "-f", "-"); r.Code != 0 {
		t.Errorf("apply -f - of the same state as JSON: %+v", r)
	} else {
		checkNoChanges("apply -f - (JSON)", r.Stdout)
	}

	// apply --dry-run plans and changes nothing.
	before := status(t, d)
	changed := cliFile(t, "changed.yaml", doc(portFilter(p, "filter", "1.0.0", 7002)))
	out = mustCLI(t, sock, "apply", "--dry-run", "-f", changed)
	if !strings.Contains(out, "(dry run) filter: update-params (") || !strings.Contains(out, "(dry run) counter: delete (") {
		t.Errorf("dry-run output %q", out)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, "(dry run) ") {
			t.Errorf("dry-run line %q lacks the (dry run) prefix", l)
		}
	}
	if after := status(t, d); !reflect.DeepEqual(before, after) {
		t.Fatalf("apply --dry-run changed status:\n%+v\n%+v", before, after)
	}
	bp, err := d.Client.DumpMap(ctx(t), "filter", "blocked_ports")
	if err != nil {
		t.Fatal(err)
	}
	if keys := apiDumpKeys(bp); !reflect.DeepEqual(keys, []uint64{7001, 7003}) {
		t.Fatalf("blocked_ports after a dry run = %v", keys)
	}

	// status: the table.
	statusCols := []string{"NAME", "PACKAGE", "PROGRAM", "HOOK", "ORDER", "STATE", "PROG ID", "LINK ID"}
	rows := cliTable(t, mustCLI(t, sock, "status"), statusCols...)
	if len(rows) != 2 {
		t.Errorf("status rows %v, want filter and counter", rows)
	}
	for name, a := range before {
		r := rows[name]
		if r["PACKAGE"] != a.Package || r["PROGRAM"] != a.Program || r["STATE"] != v1.StateAttached || r["PROG ID"] != fmt.Sprint(a.ProgramID) || r["LINK ID"] != fmt.Sprint(a.LinkID) {
			t.Errorf("status row of %s: %v, want %+v", name, r, a)
		}
		if !strings.Contains(r["HOOK"], map[string]string{"filter": p.IfB, "counter": p.IfA}[name]) {
			t.Errorf("status row of %s: hook %q does not name its interface", name, r["HOOK"])
		}
	}

	// status -o json.
	var st v1.Status
	dec := json.NewDecoder(strings.NewReader(mustCLI(t, sock, "status", "-o", "json")))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		t.Fatalf("status -o json: %v", err)
	}
	if len(st.Attachments) != 2 {
		t.Fatalf("status -o json lists %d attachments", len(st.Attachments))
	}
	for _, a := range st.Attachments {
		if b := before[a.Name]; a.ProgramID != b.ProgramID || a.State != v1.StateAttached {
			t.Errorf("status -o json %s: %+v, want program %d attached", a.Name, a, b.ProgramID)
		}
	}
	if r := runCLI(t, sock, nil, "status", "-o", "yaml"); r.Code == 0 || !strings.Contains(r.Stderr, "want table or json") {
		t.Errorf("status -o yaml: %+v", r)
	}

	// maps NAME and maps NAME MAP.
	rows = cliTable(t, mustCLI(t, sock, "maps", "filter"), "MAP", "ID", "TYPE", "KEY", "VALUE", "MAX ENTRIES")
	for _, m := range []string{"blocked_ports", "drops"} {
		if r := rows[m]; r["ID"] != fmt.Sprint(before["filter"].Maps[m]) {
			t.Errorf("maps row %s = %v, want ID %d", m, r, before["filter"].Maps[m])
		}
	}
	if r := rows["blocked_ports"]; r["KEY"] != "2" {
		t.Errorf("blocked_ports row %v, want 2-byte keys", r)
	}
	rows = cliTable(t, mustCLI(t, sock, "maps", "filter", "blocked_ports"), "KEY", "VALUE")
	if len(rows) != 2 || rows["7001"] == nil || rows["7003"] == nil {
		t.Errorf("maps filter blocked_ports: rows %v, want keys 7001 and 7003", rows)
	}
	rows = cliTable(t, mustCLI(t, sock, "maps", "filter", "drops"), "KEY", "VALUE")
	if r := rows["7001"]; r["VALUE"] != "10" || len(rows) != 1 {
		t.Errorf("maps filter drops: %v, want 10 drops for 7001 only", rows)
	}
	var ml v1.MapList
	if err := json.Unmarshal([]byte(mustCLI(t, sock, "maps", "filter", "-o", "json")), &ml); err != nil || len(ml.Maps) < 2 {
		t.Errorf("maps -o json: %+v %v", ml, err)
	}

	// packages.
	rows = cliTable(t, mustCLI(t, sock, "packages"), "PACKAGE", "REPOSITORY", "PROGRAMS", "DESCRIPTION")
	for _, pk := range []string{"portfilter@1.0.0", "pktcount@1.0.0", "execcount@1.0.0", "callcount@1.0.0", "badverifier@1.0.0"} {
		if rows[pk] == nil {
			t.Errorf("packages does not list %s: %v", pk, rows)
		}
	}
	if r := rows["badverifier@1.0.0"]; r["REPOSITORY"] != apiRepository(t) || r["PROGRAMS"] != "unchecked (xdp)" {
		t.Errorf("badverifier row %v does not name its repository", r)
	}

	// stats on|off.
	if out := mustCLI(t, sock, "stats", "on"); strings.TrimSpace(out) != "BPF statistics: on" {
		t.Errorf("stats on: %q", out)
	}
	if out := mustCLI(t, sock, "stats"); strings.TrimSpace(out) != "BPF statistics: on" {
		t.Errorf("stats after on: %q", out)
	}
	p.Delivered(t, 7002, 5, 300*time.Millisecond)
	rows = cliTable(t, mustCLI(t, sock, "status"), append(statusCols, "RUNS", "AVG NS")...)
	if r := rows["filter"]; !cliAtLeast(r["RUNS"], 5) || !cliAtLeast(r["AVG NS"], 1) {
		t.Errorf("filter row with statistics on: %v, want at least 5 runs and their average time", r)
	}
	if out := mustCLI(t, sock, "stats", "off"); !apiStatsSysctlOn(t) && strings.TrimSpace(out) != "BPF statistics: off" {
		t.Errorf("stats off: %q", out)
	}
	if r := runCLI(t, sock, nil, "stats", "maybe"); r.Code == 0 || !strings.Contains(r.Stderr, "want on or off") {
		t.Errorf("stats maybe: %+v", r)
	}
	// Statistics on and off rebuilt the chains (with and without run
	// counters): the IDs to compare against are today's.
	before = status(t, d)

	// get-state prints the desired state as JSON.
	var gs struct {
		APIVersion string
		Kind       string
		Spec       struct {
			Attachments []struct{ Name, Package string }
		}
	}
	if err := json.Unmarshal([]byte(mustCLI(t, sock, "get-state")), &gs); err != nil {
		t.Fatalf("get-state: %v", err)
	}
	if gs.APIVersion != "leaf.dev/v1alpha1" || gs.Kind != "HostState" || len(gs.Spec.Attachments) != 2 {
		t.Errorf("get-state: %+v", gs)
	}

	// Client errors exit 3 with leafd's message on stderr.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"delete", "nosuch"}, `no such attachment: "nosuch"`},
		{[]string{"maps", "nosuch"}, `no such attachment: "nosuch"`},
		{[]string{"maps", "filter", "nosuchmap"}, `has no map "nosuchmap"`},
		{[]string{"apply", "-f", cliFile(t, "bad.yaml", doc(portFilter(p, "filter", "1.0.0", 7001), fmt.Sprintf("name: bad\npackage: nosuchpkg@1.0.0\nhook: {type: xdp, interface: %s, netns: %s}", p.IfA, p.NsA)))}, "attachment \"bad\": package: package not found.*\nkind: not-found \\(HTTP 422\\)\n"},
		{[]string{"apply", "-f", cliFile(t, "malformed.yaml", []byte("spec: [\n"))}, "malformed document"},
		{[]string{"apply", "-f", cliFile(t, "verifier.yaml", doc(fmt.Sprintf("name: bad\npackage: badverifier@1.0.0\nhook: {type: xdp, interface: %s, netns: %s}", p.IfA, p.NsA)))}, "(?s)invalid access to packet.*\nkind: verifier \\(HTTP 422\\)\nhint: the kernel's verifier refused"},
	} {
		r := runCLI(t, sock, nil, c.args...)
		if r.Code != 3 || !strings.HasPrefix(r.Stderr, "leaf: ") || !regexp.MustCompile(c.want).MatchString(r.Stderr) || r.Stdout != "" {
			t.Errorf("leaf %s: exit %d stdout %q stderr %q; want exit 3 and %q on stderr", strings.Join(c.args, " "), r.Code, r.Stdout, r.Stderr, c.want)
		}
	}
	// Mistakes caught before asking leafd are not API errors.
	for _, args := range [][]string{{"apply"}, {"apply", "-f", filepath.Join(t.TempDir(), "missing.yaml")}, {"delete"}, {"status", "extra"}, {"nosuchcommand"}} {
		if r := runCLI(t, sock, nil, args...); r.Code != 1 || r.Stderr == "" {
			t.Errorf("leaf %s: exit %d stderr %q, want exit 1 and a message", strings.Join(args, " "), r.Code, r.Stderr)
		}
	}
	if after := status(t, d); !reflect.DeepEqual(before["filter"].ProgramID, after["filter"].ProgramID) || len(after) != 2 {
		t.Fatalf("failed commands changed status: %+v", after)
	}

	// delete detaches.
	counterProg := before["counter"].ProgramID
	if id := xdpProgID(t, p.NsA, p.IfA); id != counterProg {
		t.Fatalf("kernel runs %d on %s, want %d", id, p.IfA, counterProg)
	}
	out = mustCLI(t, sock, "delete", "--dry-run", "counter")
	if !strings.Contains(out, "(dry run) counter: delete") || xdpProgID(t, p.NsA, p.IfA) != counterProg {
		t.Fatalf("delete --dry-run: %q", out)
	}
	out = mustCLI(t, sock, "delete", "counter")
	if !strings.Contains(out, "counter: delete (") {
		t.Errorf("delete output %q", out)
	}
	rows = cliTable(t, mustCLI(t, sock, "status"), statusCols...)
	if _, ok := rows["counter"]; ok || rows["filter"] == nil {
		t.Errorf("status after delete: %v", rows)
	}
	if id := xdpProgID(t, p.NsA, p.IfA); id != 0 {
		t.Errorf("kernel still runs XDP program %d on %s after leaf delete", id, p.IfA)
	}
	if r := runCLI(t, sock, nil, "delete", "counter"); r.Code != 3 {
		t.Errorf("second delete: %+v, want exit 3", r)
	}
}

// TestCLIWithoutLeafd checks the message when nothing answers on the
// socket.
func TestCLIWithoutLeafd(t *testing.T) {
	dir := t.TempDir()
	// A socket file nobody listens on, and no file at all.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	for _, sock := range []string{filepath.Join(dir, "missing.sock"), stale} {
		for _, args := range [][]string{{"status"}, {"apply", "-f", cliFile(t, "s.yaml", doc())}, {"stats", "on"}} {
			r := runCLI(t, sock, nil, args...)
			if r.Code != 1 || !strings.Contains(r.Stderr, "connect to leafd") || !strings.Contains(r.Stderr, sock) {
				t.Errorf("leaf --socket %s %s: exit %d stderr %q; want exit 1 and \"connect to leafd\" naming the socket", sock, strings.Join(args, " "), r.Code, r.Stderr)
			}
		}
	}
	// LEAF_SOCKET is used when --socket is not given.
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(c, filepath.Join(testenv.Binaries(t), "leaf"), "status")
	cmd.Env = append(os.Environ(), "LEAF_SOCKET="+filepath.Join(dir, "env.sock"))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "env.sock") {
		t.Errorf("leaf with LEAF_SOCKET: %v %s", err, out)
	}
}

// startLeafd runs leafd with exactly args (no harness defaults) and waits
// until it answers on socket.
func cliStartLeafd(t *testing.T, socket string, args ...string) *exec.Cmd {
	t.Helper()
	var logs bytes.Buffer
	cmd := exec.Command(filepath.Join(testenv.Binaries(t), "leafd"), args...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("leafd did not stop on SIGTERM")
		}
		if t.Failed() {
			t.Logf("leafd log:\n%s", logs.String())
		}
	})
	c := client.New(socket)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			t.Fatalf("leafd exited at start: %s", logs.String())
		default:
		}
		hctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Health(hctx)
		cancel()
		if err == nil {
			return cmd
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("leafd did not answer on %s", socket)
	return nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func metricsPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestLeafdConfigFile starts leafd from a config file, with one flag that
// overrides the file.
func TestLeafdConfigFile(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	p := testenv.NewPair(t)
	dir := t.TempDir()
	bpffs := testenv.BPFFS(t)
	fileSocket := filepath.Join(dir, "from-file.sock")
	flagSocket := filepath.Join(dir, "from-flag.sock")
	stateDir := filepath.Join(dir, "state")
	port := metricsPort(t)
	cfg := cliFile(t, "leafd.yaml", []byte(fmt.Sprintf(`apiVersion: leaf.dev/v1alpha1
kind: DaemonConfig
stateDir: %s
bpffs: %s
socket: %s
metricsAddress: 127.0.0.1:%d
repositories:
  - {name: testdata, path: %s, trust: {allowUnsigned: true}}
bpfStats: true
logLevel: debug
`, stateDir, bpffs, fileSocket, port, apiRepository(t))))
	cliStartLeafd(t, flagSocket, "--config", cfg, "--socket", flagSocket)
	c := client.New(flagSocket)

	if _, err := os.Stat(fileSocket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the config file's socket %s exists although --socket overrides it (%v)", fileSocket, err)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "leaf.db")); err != nil {
		t.Errorf("state store not in the config file's stateDir: %v", err)
	}
	pkgs, err := c.Packages(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, pk := range pkgs {
		names = append(names, pk.Name)
	}
	if !slices.Contains(names, "badverifier") || !slices.Contains(names, "portfilter") {
		t.Errorf("packages %v: want the config file's repository and the built-ins", names)
	}
	if s, err := c.Stats(ctx(t)); err != nil || !s.Enabled {
		t.Errorf("config bpfStats: true, stats %+v %v", s, err)
	}
	if _, err := c.Apply(ctx(t), doc(portFilter(p, "filter", "1.0.0", 7001)), false); err != nil {
		t.Fatal(err)
	}
	pinned := false
	for _, pin := range pinTree(t, bpffs) {
		pinned = pinned || strings.Contains(pin, "filter")
	}
	if !pinned {
		t.Errorf("nothing of the attachment pinned under the config file's bpffs %s: %v", bpffs, pinTree(t, bpffs))
	}
	families := scrapeMetrics(t, fmt.Sprintf("127.0.0.1:%d", port))
	if metricValue(t, families, "leaf_bpf_stats_enabled", nil) != 1 {
		t.Errorf("metrics on the config file's address do not show stats enabled")
	}

	// A config file with problems stops leafd with a message naming them.
	for _, c := range []struct {
		body, want string
	}{
		{"apiVersion: leaf.dev/v1alpha1\nkind: Deployment\n", `kind must be "DaemonConfig"`},
		{"apiVersion: leaf.dev/v9\nkind: DaemonConfig\n", "apiVersion must be"},
		{"apiVersion: leaf.dev/v1alpha1\nkind: DaemonConfig\nsockett: /tmp/x\n", "sockett"},
		{"apiVersion: leaf.dev/v1alpha1\nkind: DaemonConfig\nbpfStats: maybe\n", "bpfStats"},
		{"socket: [\n", "malformed"},
	} {
		bad := cliFile(t, "bad.yaml", []byte(c.body))
		out := testenv.StartDaemonExpectFailure(t, "--config", bad, "--socket", filepath.Join(dir, "bad.sock"), "--bpffs", testenv.BPFFS(t), "--state-dir", filepath.Join(dir, "bad-state"), "--metrics-address", "")
		if !strings.Contains(out, c.want) || !strings.Contains(out, bad) {
			t.Errorf("config %q: output %q does not name the file and %q", c.body, out, c.want)
		}
	}
	if out := testenv.StartDaemonExpectFailure(t, "--config", filepath.Join(dir, "missing.yaml")); !strings.Contains(out, "missing.yaml") {
		t.Errorf("missing config file: %q", out)
	}
	if out := testenv.StartDaemonExpectFailure(t, "--log-level", "loud", "--socket", filepath.Join(dir, "bad.sock")); !strings.Contains(out, "loud") {
		t.Errorf("bad log level: %q", out)
	}
	if out := testenv.StartDaemonExpectFailure(t, "--no-such-flag"); !strings.Contains(out, "no-such-flag") {
		t.Errorf("unknown flag: %q", out)
	}
}

// TestLeafdRefusesSecondInstance starts a second leafd on the state
// directory or socket of a running one.
func TestLeafdRefusesSecondInstance(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	apply(t, d, doc(portFilter(p, "filter", "1.0.0", 7001)))
	before := status(t, d)["filter"]
	dir := t.TempDir()

	out := testenv.StartDaemonExpectFailure(t, "--state-dir", d.StateDir, "--bpffs", testenv.BPFFS(t), "--socket", filepath.Join(dir, "other.sock"), "--metrics-address", "")
	if !strings.Contains(out, "locked") || !strings.Contains(out, "another leafd") {
		t.Errorf("second leafd on the same state directory: %q", out)
	}
	out = testenv.StartDaemonExpectFailure(t, "--state-dir", filepath.Join(dir, "state"), "--bpffs", testenv.BPFFS(t), "--socket", d.Socket, "--metrics-address", "")
	if !strings.Contains(out, "in use") || !strings.Contains(out, "another leafd") {
		t.Errorf("second leafd on the same socket: %q", out)
	}

	// The first one still serves and still runs its program.
	if err := d.Client.Health(ctx(t)); err != nil {
		t.Fatalf("first leafd stopped answering: %v", err)
	}
	if after := status(t, d)["filter"]; after.ProgramID != before.ProgramID || after.State != v1.StateAttached {
		t.Fatalf("status after the refused starts: %+v, was %+v", after, before)
	}
	if got := p.Delivered(t, 7001, 10, 300*time.Millisecond); got != 0 {
		t.Errorf("port 7001: %d of 10 delivered, want 0", got)
	}
}

// TestLeafdDesiredStateFlag applies a desired-state file at start, and
// refuses to start on an invalid one.
func TestLeafdDesiredStateFlag(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	p := testenv.NewPair(t)
	file := cliFile(t, "desired.yaml", doc(portFilter(p, "filter", "1.0.0", 7005)))
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--desired-state", file}})
	a := status(t, d)["filter"]
	if a.State != v1.StateAttached || xdpProgID(t, p.NsB, p.IfB) != a.ProgramID {
		t.Fatalf("desired-state file not applied at start: %+v", a)
	}
	if got := p.Delivered(t, 7005, 10, 300*time.Millisecond); got != 0 {
		t.Errorf("port 7005: %d of 10 delivered, want 0", got)
	}

	dir := t.TempDir()
	base := func() []string {
		return []string{"--state-dir", filepath.Join(t.TempDir(), "state"), "--bpffs", testenv.BPFFS(t), "--socket", filepath.Join(dir, "bad.sock"), "--metrics-address", ""}
	}
	for _, c := range []struct {
		name  string
		data  []byte
		wants []string
	}{
		{"unknown package", doc(fmt.Sprintf("name: bad\npackage: nosuchpkg@1.0.0\nhook: {type: xdp, interface: %s, netns: %s}", p.IfA, p.NsA)), []string{`attachment \"bad\"`, "package", "nosuchpkg"}},
		{"missing interface", doc(fmt.Sprintf("name: bad\npackage: portfilter@1.0.0\nhook: {type: xdp, interface: nosuch0, netns: %s}", p.NsA)), []string{`attachment \"bad\"`, "hook.interface", "nosuch0"}},
		{"unknown field", append(doc(), []byte("colour: red\n")...), []string{"colour"}},
		{"malformed", []byte("spec: [\n"), []string{"malformed"}},
	} {
		bad := cliFile(t, "bad.yaml", c.data)
		out := testenv.StartDaemonExpectFailure(t, append(base(), "--desired-state", bad)...)
		if !strings.Contains(out, bad) {
			t.Errorf("%s: output does not name the file %s: %s", c.name, bad, out)
		}
		for _, w := range c.wants {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output does not contain %q: %s", c.name, w, out)
			}
		}
	}
	out := testenv.StartDaemonExpectFailure(t, append(base(), "--desired-state", filepath.Join(dir, "missing.yaml"))...)
	if !strings.Contains(out, "missing.yaml") {
		t.Errorf("missing desired-state file: %s", out)
	}
	// None of the failed starts touched A's interface.
	if id := xdpProgID(t, p.NsA, p.IfA); id != 0 {
		t.Errorf("a refused start attached XDP program %d to %s", id, p.IfA)
	}
}
