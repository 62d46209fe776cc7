package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	dto "github.com/prometheus/client_model/go"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/companion"
	"github.com/leaf-ebpf/leaf/internal/l3af"
	"github.com/leaf-ebpf/leaf/internal/pkgsource"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// l3afArtifact packages objects as L3AF's build does: a .tar.gz of a
// <name>/ folder, made with tar, at <root>/<name>/<version>/<codename>/<artifact>.
func l3afArtifact(t *testing.T, root, name, version, artifact string, objects ...string) {
	t.Helper()
	work := t.TempDir()
	if err := os.MkdirAll(filepath.Join(work, name), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, o := range objects {
		data, err := os.ReadFile(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, name, filepath.Base(o)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(root, name, version, pkgsource.HostCodename())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-C", work, "-czf", filepath.Join(dir, artifact), name).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
}

// l3afDaemon starts leafd with an HTTP KFaaS tree (the default
// repository) and a file:// one, both unsigned and allowed to be, and the
// L3AF API's interfaces in B's namespace.
func l3afDaemon(t *testing.T, p *testenv.Pair, metrics string) (*testenv.Daemon, string, string) {
	t.Helper()
	httpRoot, fileRoot := t.TempDir(), t.TempDir()
	testdata, _ := filepath.Abs(filepath.Join("..", "testdata"))
	l3afArtifact(t, httpRoot, "portdrop", "latest", "l3af_portdrop.tar.gz", filepath.Join(testdata, "l3af", "portdrop", "portdrop.bpf.o"))
	coop := filepath.Join(testdata, "packages", "l3afcoop", "l3afcoop.bpf.o")
	l3afArtifact(t, fileRoot, "seqa", "1.0", "l3af_seq.tar.gz", coop)
	l3afArtifact(t, fileRoot, "seqb", "1.0", "l3af_seq.tar.gz", coop)
	files := http.FileServer(http.Dir(httpRoot))
	gets := &atomic.Int32{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".tar.gz") {
			gets.Add(1)
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	artifactGets.Store(srv.URL, gets)
	cfg := filepath.Join(t.TempDir(), "leafd.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`apiVersion: leaf.dev/v1alpha1
kind: DaemonConfig
repositories:
  - {name: kfaas, type: kfaas, url: %s, trust: {allowUnsigned: true}}
  - {name: kfaas-file, type: kfaas, url: "file://%s", trust: {allowUnsigned: true}}
l3af: {hostName: leaf-l3af-test, netns: %s, pollInterval: 100ms, samples: 5}
`, srv.URL, fileRoot, p.NsB)), 0o644)
	args := []string{"--config", cfg}
	if metrics != "" {
		args = append(args, "--metrics-address", metrics)
	}
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: args})
	return d, srv.URL, "file://" + fileRoot
}

// artifactGets counts, per HTTP KFaaS server of l3afDaemon (by URL), the
// requests for artifacts it served.
var artifactGets sync.Map

func artifactsServed(t *testing.T, url string) int32 {
	t.Helper()
	n, ok := artifactGets.Load(url)
	if !ok {
		t.Fatalf("no KFaaS server at %s", url)
	}
	return n.(*atomic.Int32).Load()
}

// portdropPayload is l3afd's documented add payload for the portdrop
// fixture, map_args in the documented object shape.
func portdropPayload(iface string, seq int) string {
	return fmt.Sprintf(`[{
  "host_name": "leaf-l3af-test",
  "iface": %q,
  "bpf_programs": {
    "xdp_ingress": [{
      "name": "portdrop", "seq_id": %d, "artifact": "l3af_portdrop.tar.gz",
      "map_name": "xdp_portdrop_next", "cmd_start": "", "version": "latest",
      "user_program_daemon": false, "admin_status": "enabled", "prog_type": "xdp", "cfg_version": 1,
      "map_args": {"portdrop_ports": "7001,7002", "portdrop_config": "1"},
      "monitor_maps": [
        {"name": "portdrop_drop_count", "key": 0, "aggregator": "scalar"},
        {"name": "portdrop_recv_count", "key": 0, "aggregator": "max-rate"}
      ],
      "object_file": "portdrop.bpf.o", "entry_function_name": "_xdp_portdrop"
    }],
    "tc_ingress": [], "tc_egress": []
  }
}]`, iface, seq)
}

// seqProgram is an l3afcoop program (records the sequence numbers of the
// test stream) from the file:// repository, map_args in l3afd's list
// shape (none set).
func seqProgram(name, repo string, seq int) string {
	return fmt.Sprintf(`{"name": %q, "seq_id": %d, "artifact": "l3af_seq.tar.gz", "map_name": "xdp_next",
  "version": "1.0", "admin_status": "enabled", "prog_type": "xdp", "cfg_version": 1, "map_args": [],
  "ebpf_package_repo_url": %q, "object_file": "l3afcoop.bpf.o", "entry_function_name": "coop_xdp"}`, name, seq, repo)
}

func l3afCall(t *testing.T, d *testenv.Daemon, method, path, body string) apiAnswer {
	t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	return apiRequest(t, apiHTTP(d.Socket), method, path, b)
}

func mustL3AF(t *testing.T, d *testenv.Daemon, method, path, body string) apiAnswer {
	t.Helper()
	a := l3afCall(t, d, method, path, body)
	if a.Code != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, a.Code, a.Body)
	}
	return a
}

// TestL3AFDeployThroughAPI deploys an L3AF-style kernel function with
// l3afd's documented payload through l3afd's API, from an HTTP KFaaS tree
// whose archive has no leaf.yaml: map_args configure it, monitor_maps'
// key is created so that it acts, traffic shows it works, GET answers in
// l3afd's shape, l3afd's metrics count under traffic, and delete detaches.
func TestL3AFDeployThroughAPI(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	p := testenv.NewPair(t)
	addr := fmt.Sprintf("127.0.0.1:%d", metricsPort(t))
	d, url, _ := l3afDaemon(t, p, addr)

	mustL3AF(t, d, "POST", "/l3af/configs/v1/add", portdropPayload(p.IfB, 1))
	// One call, one resolution: the L3AF API hands the package it
	// resolved to admission rather than both fetching it.
	if n := artifactsServed(t, url); n != 1 {
		t.Errorf("the add fetched the artifact %d times, want once", n)
	}
	att := l3af.AttachmentName(p.IfB, l3af.HookXDPIngress, "portdrop")
	st := status(t, d)[att]
	if st.State != "attached" || xdpProgID(t, p.NsB, p.IfB) != st.ProgramID {
		t.Fatalf("%s: %+v; kernel runs XDP program %d", att, st, xdpProgID(t, p.NsB, p.IfB))
	}
	if st.Trust != "unsigned-allowed" {
		t.Errorf("trust %q: an unsigned L3AF package must say the policy allowed it", st.Trust)
	}
	if n := p.Delivered(t, 7001, 20, 300*time.Millisecond); n != 0 {
		t.Errorf("port 7001 (in map_args portdrop_ports): %d of 20 delivered, want 0", n)
	}
	if n := p.Delivered(t, 7003, 20, 2*time.Second); n != 20 {
		t.Errorf("port 7003: %d of 20 delivered", n)
	}

	// GET answers l3afd's shape, map_args in the shape given.
	var one map[string]any
	json.Unmarshal(mustL3AF(t, d, "GET", "/l3af/configs/v1/"+p.IfB, "").Body, &one)
	progs, _ := one["bpf_programs"].(map[string]any)["xdp_ingress"].([]any)
	if one["host_name"] != "leaf-l3af-test" || one["iface"] != p.IfB || len(progs) != 1 {
		t.Fatalf("GET /l3af/configs/v1/%s: %v", p.IfB, one)
	}
	prog := progs[0].(map[string]any)
	if prog["name"] != "portdrop" || prog["entry_function_name"] != "_xdp_portdrop" || prog["map_args"].(map[string]any)["portdrop_ports"] != "7001,7002" {
		t.Errorf("GET program: %v", prog)
	}
	var all []map[string]any
	json.Unmarshal(mustL3AF(t, d, "GET", "/l3af/configs/v1", "").Body, &all)
	if len(all) != 1 || all[0]["iface"] != p.IfB {
		t.Errorf("GET /l3af/configs/v1: %v", all)
	}

	// l3afd's metric names and labels, with the values the traffic made.
	labels := map[string]string{"host": "leaf-l3af-test", "ebpf_program": "portdrop", "interface_name": p.IfB, "map_name": "portdrop_drop_count_0_scalar"}
	deadline := time.Now().Add(10 * time.Second)
	var got float64
	for time.Now().Before(deadline) {
		if got = l3afMetric(scrapeMetrics(t, addr), "l3afd_BPFMonitorMap", labels); got == 20 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got != 20 {
		t.Errorf("l3afd_BPFMonitorMap%v = %v, want 20 drops", labels, got)
	}
	m := scrapeMetrics(t, addr)
	// The per-CPU counter of datagrams seen, summed over CPUs, as the
	// largest growth between two samples of the window: positive while
	// traffic flows, never more than what was sent (40 so far).
	rate := map[string]string{"ebpf_program": "portdrop", "map_name": "portdrop_recv_count_0_max-rate"}
	var v float64
	sent := 40.0
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
		p.Delivered(t, 7003, 10, 100*time.Millisecond)
		sent += 10
		time.Sleep(250 * time.Millisecond) // two samples
		if v = l3afMetric(scrapeMetrics(t, addr), "l3afd_BPFMonitorMap", rate); v > 0 {
			break
		}
	}
	if v <= 0 || v > sent {
		t.Errorf("l3afd_BPFMonitorMap%v = %v, want in (0, %v]", rate, v, sent)
	}
	m = scrapeMetrics(t, addr)
	run := map[string]string{"ebpf_program": "portdrop", "version": "latest", "direction": "xdpingress", "interface_name": p.IfB}
	if v := l3afMetric(m, "l3afd_BPFRunning", run); v != 1 {
		t.Errorf("l3afd_BPFRunning%v = %v, want 1", run, v)
	}
	if v := l3afMetric(m, "l3afd_BPFStartCount", map[string]string{"ebpf_program": "portdrop"}); v != 1 {
		t.Errorf("l3afd_BPFStartCount = %v, want 1", v)
	}
	if v := l3afMetric(m, "leaf_l3af_monitor_map_value", map[string]string{"attachment": att, "map": "portdrop_drop_count", "aggregator": "scalar"}); v != 20 {
		t.Errorf("leaf_l3af_monitor_map_value = %v, want 20", v)
	}
	promtoolCheck(t, scrapeRaw(t, addr))

	// Delete detaches; the traffic the program dropped passes.
	mustL3AF(t, d, "POST", "/l3af/configs/v1/delete", fmt.Sprintf(`[{"host_name": "leaf-l3af-test", "iface": %q, "bpf_programs": {"xdp_ingress": ["portdrop"]}}]`, p.IfB))
	if id := xdpProgID(t, p.NsB, p.IfB); id != 0 {
		t.Errorf("after delete, XDP program %d is attached", id)
	}
	for _, pin := range pinTree(t, d.BPFFS) {
		if strings.Contains(pin, att) {
			t.Errorf("after delete, %s remains", pin)
		}
	}
	if n := p.Delivered(t, 7001, 20, 2*time.Second); n != 20 {
		t.Errorf("after delete, port 7001: %d of 20 delivered", n)
	}
	if v := l3afMetric(scrapeMetrics(t, addr), "l3afd_BPFStopCount", map[string]string{"ebpf_program": "portdrop"}); v != 1 {
		t.Errorf("l3afd_BPFStopCount = %v, want 1", v)
	}
	json.Unmarshal(mustL3AF(t, d, "GET", "/l3af/configs/v1", "").Body, &all)
	if len(all) != 0 {
		t.Errorf("GET after delete: %v", all)
	}
}

// TestL3AFReorderUnderTraffic: two cooperative programs from a file://
// repository (per-program ebpf_package_repo_url) behind portdrop; an
// update that reorders their seq_ids while the stream flows loses no
// packet and runs no program twice.
func TestL3AFReorderUnderTraffic(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	p := testenv.NewPair(t)
	d, _, fileRepo := l3afDaemon(t, p, "")
	payload := func(a, b int) string {
		one := portdropPayload(p.IfB, 1)
		return strings.Replace(one, `"xdp_ingress": [{`, `"xdp_ingress": [`+seqProgram("seqa", fileRepo, a)+`, `+seqProgram("seqb", fileRepo, b)+`, {`, 1)
	}
	mustL3AF(t, d, "POST", "/l3af/configs/v1/add", payload(2, 3))
	stream := p.StartStream(t, 9000, time.Millisecond)
	time.Sleep(150 * time.Millisecond)
	mustL3AF(t, d, "POST", "/l3af/configs/v1/update", payload(3, 2))
	time.Sleep(150 * time.Millisecond)
	if got := chainOrder(t, d); len(got) != 3 || !strings.HasSuffix(got[1], "seqb") || !strings.HasSuffix(got[2], "seqa") {
		t.Fatalf("chain after the reorder: %v", got)
	}
	mustL3AF(t, d, "POST", "/l3af/configs/v1/update", payload(2, 3))
	time.Sleep(150 * time.Millisecond)
	// A restart (even kill -9) detaches nothing and reloads nothing: the
	// stored L3AF configuration tells the start-up reconcile where its
	// packages come from.
	ids := status(t, d)
	d.Kill()
	time.Sleep(100 * time.Millisecond)
	d.Restart()
	for n, a := range status(t, d) {
		if a.ProgramID != ids[n].ProgramID || a.State != "attached" {
			t.Errorf("restart: %s %s program %d → %d", n, a.State, ids[n].ProgramID, a.ProgramID)
		}
	}
	var all []map[string]any
	json.Unmarshal(mustL3AF(t, d, "GET", "/l3af/configs/v1", "").Body, &all)
	if len(all) != 1 || len(all[0]["bpf_programs"].(map[string]any)["xdp_ingress"].([]any)) != 3 {
		t.Errorf("GET after restart: %v", all)
	}
	time.Sleep(100 * time.Millisecond)
	sent, lost, dup := stream.Stop()
	if len(lost) > 0 || len(dup) > 0 {
		t.Fatalf("receiver: %d lost, %d duplicated of %d", len(lost), len(dup), sent)
	}
	for _, n := range []string{"seqa", "seqb"} {
		checkExactlyOnce(t, n, seen(t, d, l3af.AttachmentName(p.IfB, l3af.HookXDPIngress, n)), 0, sent)
	}
}

// TestL3AFAPIAnswers: l3afd's routes answer bad input with the status
// that names the problem, and nothing changes.
func TestL3AFAPIAnswers(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	p := testenv.NewPair(t)
	d, _, _ := l3afDaemon(t, p, "")
	for _, c := range []struct {
		method, path, body string
		code               int
		says               string
	}{
		{"POST", "/l3af/configs/v1/add", strings.Replace(portdropPayload(p.IfB, 1), "leaf-l3af-test", "other-host", 1), 422, "do not belong to this host"},
		{"POST", "/l3af/configs/v1/add", `[{"host_name": `, 400, "payload"},
		{"POST", "/l3af/configs/v1/add", strings.Replace(portdropPayload(p.IfB, 1), `"portdrop_config": "1"`, `"nosuch_map": "1"`, 1), 422, "nosuch_map"},
		{"POST", "/l3af/configs/v1/add", strings.Replace(portdropPayload(p.IfB, 1), `"portdrop_config": "1"`, `"xdp_portdrop_next": "1"`, 1), 422, "xdp_portdrop_next"},
		{"POST", "/l3af/configs/v1/add", strings.Replace(portdropPayload(p.IfB, 1), `"portdrop_ports": "7001,7002"`, `"portdrop_ports": "70000"`, 1), 422, "out of range"},
		{"POST", "/l3af/configs/v1/add", strings.Replace(portdropPayload(p.IfB, 1), `"artifact": "l3af_portdrop.tar.gz"`, `"artifact": "l3af_portdrop.tar.gz", "ebpf_package_repo_url": "https://kfaas.example"`, 1), 422, "not a configured kfaas repository"},
		{"POST", "/l3af/configs/v1/add", strings.Replace(portdropPayload(p.IfB, 1), `"artifact": "l3af_portdrop.tar.gz"`, `"artifact": "missing.tar.gz"`, 1), 422, "not found"},
		{"POST", "/l3af/configs/v1/delete", fmt.Sprintf(`[{"host_name": "leaf-l3af-test", "iface": %q, "bpf_programs": {"xdp_ingress": ["nothere"]}}]`, p.IfB), 404, "no such L3AF program"},
		{"GET", "/l3af/configs/v2", "", 404, "leafd serves v1"},
		{"PUT", "/l3af/configs/v1/restart", `{"hostname": "leaf-l3af-test", "version": "v2.1.0"}`, 200, "keeps every program attached"},
	} {
		a := l3afCall(t, d, c.method, c.path, c.body)
		if a.Code != c.code || !strings.Contains(string(a.Body), c.says) {
			t.Errorf("%s %s: %d %s, want %d naming %q", c.method, c.path, a.Code, a.Body, c.code, c.says)
		}
	}
	if id := xdpProgID(t, p.NsB, p.IfB); id != 0 {
		t.Errorf("refused calls attached XDP program %d", id)
	}
	// A disabled program and l3afd's chain root are kept in the
	// configuration and run nothing; the answer says why.
	body := strings.Replace(portdropPayload(p.IfB, 1), `"admin_status": "enabled"`, `"admin_status": "disabled"`, 1)
	body = strings.Replace(body, `"xdp_ingress": [{`, `"xdp_ingress": [{"name": "xdp_root", "seq_id": 0, "artifact": "l3af_xdp_root.tar.gz", "version": "latest", "admin_status": "enabled", "map_name": "xdp_root_array"}, {`, 1)
	a := mustL3AF(t, d, "POST", "/l3af/configs/v1/add", body)
	if !strings.Contains(string(a.Body), "without a root program") || !strings.Contains(string(a.Body), "admin_status disabled") {
		t.Errorf("add answer does not explain the root and the disabled program: %s", a.Body)
	}
	if id := xdpProgID(t, p.NsB, p.IfB); id != 0 {
		t.Errorf("a disabled program and a root attached XDP program %d", id)
	}
	var one map[string]any
	json.Unmarshal(mustL3AF(t, d, "GET", "/l3af/configs/v1/"+p.IfB, "").Body, &one)
	if progs := one["bpf_programs"].(map[string]any)["xdp_ingress"].([]any); len(progs) != 2 {
		t.Errorf("GET keeps both programs of the configuration: %v", progs)
	}
}

// l3afMetric is the value of the series of family name whose labels
// include want (gauge or counter); -1 when there is none.
func l3afMetric(m map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := m[name]
	if f == nil {
		return -1
	}
next:
	for _, s := range f.Metric {
		have := map[string]string{}
		for _, l := range s.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case s.Gauge != nil:
			return s.Gauge.GetValue()
		case s.Counter != nil:
			return s.Counter.GetValue()
		}
	}
	return -1
}

// promtoolCheck lints an exposition with promtool, when installed. It
// must parse; its only lint findings may be l3afd's own metric names
// (camelCase, counters without _total), which dashboards depend on; all
// else must pass clean.
func promtoolCheck(t *testing.T, body []byte) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed: exposition not linted")
		return
	}
	check := func(b []byte) (string, int) {
		cmd := exec.CommandContext(ctx(t), promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(b)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	out, code := check(body)
	if code != 0 && code != 3 { // 3: lint findings only
		t.Fatalf("promtool check metrics: exit %d\n%s", code, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line != "" && !strings.HasPrefix(line, "l3afd_") {
			t.Errorf("promtool check metrics: %s", line)
		}
	}
	var rest []string
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.Contains(line, "l3afd_") {
			rest = append(rest, line)
		}
	}
	if out, code := check([]byte(strings.Join(rest, "\n"))); code != 0 {
		t.Errorf("promtool check metrics without l3afd's names: exit %d\n%s", code, out)
	}
}

// TestL3AFImportRoundTrip: `leaf l3af import` turns an l3afd config and
// its persisted programs into leafd's config and desired state; leafd
// started from them runs the programs (traffic shows it) and answers GET
// with the configuration l3afd had persisted.
func TestL3AFImportRoundTrip(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	p := testenv.NewPair(t)
	root := t.TempDir()
	testdata, _ := filepath.Abs(filepath.Join("..", "testdata"))
	l3afArtifact(t, root, "portdrop", "latest", "l3af_portdrop.tar.gz", filepath.Join(testdata, "l3af", "portdrop", "portdrop.bpf.o"))
	dir := t.TempDir()
	cfg := filepath.Join(dir, "l3afd.cfg")
	store := filepath.Join(dir, "l3af-config.json")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`[DEFAULT]

[l3afd]
pid-file: /var/run/l3afd.pid
bpf-chaining-enabled: true
shutdown-timeout: 25s

[ebpf-repo]
url: file://%s

[web]
metrics-addr: 127.0.0.1:0
ebpf-poll-interval: 100ms
n-metric-samples: 5

[xdp-root]
package-name: xdp-root
artifact: l3af_xdp_root.tar.gz

[l3af-configs]
restapi-addr: localhost:7080

[l3af-config-store]
filename: %s

[mtls]
enabled: false
`, root, store)), 0o644)
	persisted := portdropPayload(p.IfB, 1)
	os.WriteFile(store, []byte(persisted), 0o644)
	out := filepath.Join(dir, "leaf")
	r := runCLI(t, "/nonexistent.sock", nil, "l3af", "import", "--config", cfg, "--out", out, "--netns", p.NsB)
	if r.Code != 0 {
		t.Fatalf("import: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{"1 attachment(s)", "[xdp-root]: not needed", "restapi-addr localhost:7080: not carried over", "[l3afd] pid-file: not carried over"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("import report lacks %q:\n%s", want, r.Stdout)
		}
	}
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--config", filepath.Join(out, "leafd.yaml")}})
	var got, want l3af.Config
	json.Unmarshal(mustL3AF(t, d, "GET", "/l3af/configs/v1", "").Body, &got)
	json.Unmarshal([]byte(persisted), &want)
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	// l3afd answers a hook without programs with null, whatever it was given.
	w = bytes.ReplaceAll(bytes.ReplaceAll(w, []byte(`"tc_ingress":[]`), []byte(`"tc_ingress":null`)), []byte(`"tc_egress":[]`), []byte(`"tc_egress":null`))
	if !bytes.Equal(g, w) {
		t.Errorf("GET after import:\n%s\nl3afd persisted:\n%s", g, w)
	}
	deadline := time.Now().Add(5 * time.Second)
	n := -1
	for time.Now().Before(deadline) && n != 0 {
		n = p.Delivered(t, 7002, 10, 300*time.Millisecond)
	}
	if n != 0 {
		t.Errorf("port 7002 (in the imported map_args): %d of 10 delivered, want 0", n)
	}
	if n := p.Delivered(t, 7003, 10, 2*time.Second); n != 10 {
		t.Errorf("port 7003: %d of 10 delivered", n)
	}
}

// TestL3AFUserProgram: a program's user program (cmd_start with
// user_program_daemon, start_args, cpu and memory) runs as a leaf
// companion: unprivileged but for CAP_BPF, in its own cgroup with l3afd's
// limits, reading its program's map; deleting the program stops it.
func TestL3AFUserProgram(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	root := t.TempDir()
	testdata, _ := filepath.Abs(filepath.Join("..", "testdata"))
	user := filepath.Join(t.TempDir(), "portdrop_user")
	if out, err := exec.Command("go", "build", "-o", user, "../testdata/companions/mapreader").CombinedOutput(); err != nil {
		t.Fatalf("build the user program: %v: %s", err, out)
	}
	l3afArtifact(t, root, "portdrop", "latest", "l3af_portdrop.tar.gz", filepath.Join(testdata, "l3af", "portdrop", "portdrop.bpf.o"), user)
	os.Chmod(filepath.Join(root, "portdrop"), 0o755)
	cfg := filepath.Join(t.TempDir(), "leafd.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`apiVersion: leaf.dev/v1alpha1
kind: DaemonConfig
repositories: [{name: kfaas, type: kfaas, url: "file://%s", trust: {allowUnsigned: true}}]
l3af: {hostName: leaf-l3af-test, netns: %s}
`, root, p.NsB)), 0o644)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--config", cfg, "--companion-dir", companionDir(t)}})
	payload := strings.Replace(portdropPayload(p.IfB, 1), `"cmd_start": "", "version": "latest",
      "user_program_daemon": false,`, `"cmd_start": "portdrop_user", "version": "latest", "cpu": 25, "memory": 32,
      "start_args": {"map": "portdrop_recv_count", "interval": "50ms"}, "user_program_daemon": true,`, 1)
	if payload == portdropPayload(p.IfB, 1) {
		t.Fatal("payload not rewritten")
	}
	mustL3AF(t, d, "POST", "/l3af/configs/v1/add", payload)
	att := l3af.AttachmentName(p.IfB, l3af.HookXDPIngress, "portdrop")
	ev := waitEvent(t, d, 0, v1.EventCompanion, "started")
	pid := ev.PID
	if pid == 0 || !alive(pid) || ev.Attachment != att {
		t.Fatalf("companion started event %+v", ev)
	}
	if uid := procField(t, pid, "status", "Uid:"); strings.Fields(uid)[0] != "65534" {
		t.Errorf("user program runs as uid %s, want 65534", uid)
	}
	if eff := procField(t, pid, "status", "CapEff:"); eff != fmt.Sprintf("%016x", uint64(1)<<39) {
		t.Errorf("user program's capabilities %s, want CAP_BPF alone", eff)
	}
	cg := procField(t, pid, "cgroup", "0::")
	if want := "/" + companion.CgroupName(d.StateDir) + "/" + att; cg != want {
		t.Errorf("user program in cgroup %q, want %q (leafd's own subtree)", cg, want)
	}
	for file, want := range map[string]string{"memory.max": fmt.Sprint(32 << 20), "cpu.max": "25000 100000"} {
		for _, base := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
			if b, err := os.ReadFile(filepath.Join(base, cg, file)); err == nil {
				if got := strings.TrimSpace(string(b)); got != want {
					t.Errorf("%s = %q, want %q (l3afd's cpu 25%%, memory 32 MiB)", file, got, want)
				}
				break
			}
		}
	}
	if n := p.Delivered(t, 7003, 10, 2*time.Second); n != 10 {
		t.Fatalf("%d of 10 arrived", n)
	}
	line := regexp.MustCompile(`portdrop_recv_count=(\d+)`)
	waitUntil(t, "the user program reads its program's counter", func() bool {
		for _, m := range line.FindAllStringSubmatch(d.Logs(), -1) {
			if n, _ := strconv.Atoi(m[1]); n >= 10 {
				return true
			}
		}
		return false
	})
	mustL3AF(t, d, "POST", "/l3af/configs/v1/delete", fmt.Sprintf(`[{"host_name": "leaf-l3af-test", "iface": %q, "bpf_programs": {"xdp_ingress": ["portdrop"]}}]`, p.IfB))
	waitUntil(t, "user program stopped", func() bool { return !alive(pid) })
}

// TestL3AFTCHooks: tc_ingress and tc_egress programs (pktcount's count_tc,
// an object with several programs, so entry_function_name picks one)
// attach on their TCX hooks and count the traffic each direction sees.
func TestL3AFTCHooks(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	p := testenv.NewPair(t)
	d, _, fileRepo := l3afDaemon(t, p, "")
	// The file:// tree of l3afDaemon gets pktcount beside seqa and seqb.
	root := strings.TrimPrefix(fileRepo, "file://")
	obj, _ := filepath.Abs(filepath.Join("..", "packages", "pktcount", "pktcount.bpf.o"))
	l3afArtifact(t, root, "pktcount", "1.0", "l3af_pktcount.tar.gz", obj)
	prog := func(seq int) string {
		return fmt.Sprintf(`{"name": "pktcount", "seq_id": %d, "artifact": "l3af_pktcount.tar.gz", "version": "1.0", "admin_status": "enabled",
  "prog_type": "tc", "ebpf_package_repo_url": %q, "object_file": "pktcount.bpf.o", "entry_function_name": "count_tc"}`, seq, fileRepo)
	}
	mustL3AF(t, d, "POST", "/l3af/configs/v1/add", fmt.Sprintf(`[{"host_name": "leaf-l3af-test", "iface": %q, "bpf_programs": {"tc_ingress": [%s], "tc_egress": [%s]}}]`, p.IfB, prog(1), prog(1)))
	st := status(t, d)
	for _, hook := range []string{l3af.HookTCIngress, l3af.HookTCEgress} {
		if a := st[l3af.AttachmentName(p.IfB, hook, "pktcount")]; a.State != "attached" {
			t.Fatalf("%s: %+v", hook, a)
		}
	}
	if n := p.Delivered(t, 7005, 10, 2*time.Second); n != 10 {
		t.Fatalf("%d of 10 delivered", n)
	}
	count := func(hook string) uint64 {
		m, err := ebpf.LoadPinnedMap(filepath.Join(d.BPFFS, "attachments", l3af.AttachmentName(p.IfB, hook, "pktcount"), "maps", "counters"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		var vals []uint64
		if err := m.Lookup(uint32(0), &vals); err != nil {
			t.Fatal(err)
		}
		var sum uint64
		for _, v := range vals {
			sum += v
		}
		return sum
	}
	if n := count(l3af.HookTCIngress); n < 10 {
		t.Errorf("tc_ingress counted %d packets, want at least the 10 datagrams", n)
	}
	if n := count(l3af.HookTCEgress); n == 0 {
		t.Errorf("tc_egress counted nothing (B answers ARP at least)")
	}
}
