package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/client"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/testenv"
	"github.com/leaf-ebpf/leaf/internal/yamljson"
)

// apiRepository is the package repository of test-only packages (one the
// verifier rejects), as a leafd --repository flag value.
func apiRepository(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../testdata/packages")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// apiHTTP is a plain net/http client for leafd's socket, so the tests see
// status codes and bodies exactly as any client would.
func apiHTTP(socket string) *http.Client {
	return &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
		},
	}
}

type apiAnswer struct {
	Code        int
	ContentType string
	Body        []byte
}

func apiRequest(t *testing.T, hc *http.Client, method, path string, body []byte) apiAnswer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx(t), method, "http://leafd"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return apiAnswer{Code: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Body: data}
}

// apiErrorBody decodes an error answer strictly: a JSON v1.Error with a
// message.
func apiErrorBody(t *testing.T, a apiAnswer) v1.Error {
	t.Helper()
	if !strings.HasPrefix(a.ContentType, "application/json") {
		t.Errorf("error answer has Content-Type %q, want application/json", a.ContentType)
	}
	var e v1.Error
	dec := json.NewDecoder(bytes.NewReader(a.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("error answer is not a JSON error body: %v: %s", err, a.Body)
	}
	if e.Error == "" {
		t.Fatalf("error answer has no message: %s", a.Body)
	}
	return e
}

// apiHasDetail reports whether e names attachment and field.
func apiHasDetail(e v1.Error, attachment, field string) bool {
	for _, d := range e.Details {
		if d.Attachment == attachment && d.Field == field && d.Message != "" {
			return true
		}
	}
	return false
}

// apiSnapshot is what must not change when leafd refuses a request.
type apiSnapshot struct {
	Status  map[string]v1.AttachmentStatus
	Pins    []string
	Desired string
	XDP     uint32
}

func apiTakeSnapshot(t *testing.T, d *testenv.Daemon, p *testenv.Pair) apiSnapshot {
	t.Helper()
	raw, err := d.Client.Desired(ctx(t))
	if err != nil {
		t.Fatalf("desired: %v", err)
	}
	st := status(t, d)
	for k, a := range st {
		// Run statistics move with traffic; the rest must not.
		a.RunCount, a.RunTimeNs = nil, nil
		st[k] = a
	}
	return apiSnapshot{Status: st, Pins: pinTree(t, d.BPFFS), Desired: string(raw), XDP: xdpProgID(t, p.NsB, p.IfB)}
}

func (s apiSnapshot) diff(o apiSnapshot) string {
	var out []string
	if !reflect.DeepEqual(s.Status, o.Status) {
		out = append(out, fmt.Sprintf("status %+v → %+v", s.Status, o.Status))
	}
	if !slices.Equal(s.Pins, o.Pins) {
		out = append(out, fmt.Sprintf("pins %v → %v", s.Pins, o.Pins))
	}
	if s.Desired != o.Desired {
		out = append(out, fmt.Sprintf("desired state %s → %s", s.Desired, o.Desired))
	}
	if s.XDP != o.XDP {
		out = append(out, fmt.Sprintf("kernel XDP program %d → %d", s.XDP, o.XDP))
	}
	return strings.Join(out, "; ")
}

// TestAPIBadRequests sends every kind of bad request leafd must refuse
// with a 4xx and a JSON body naming the problem, and checks that none of
// them changes what runs.
func TestAPIBadRequests(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--repository-allow-unsigned", apiRepository(t)}})
	hc := apiHTTP(d.Socket)

	good := portFilter(p, "filter", "1.0.0", 7001)
	ans := apiRequest(t, hc, http.MethodPut, v1.PathState, doc(good))
	if ans.Code != http.StatusOK {
		t.Fatalf("good apply: %d %s", ans.Code, ans.Body)
	}
	before := apiTakeSnapshot(t, d, p)
	if before.XDP == 0 || before.Status["filter"].State != v1.StateAttached {
		t.Fatalf("filter not attached before the bad requests: %+v", before)
	}

	// onA is an attachment on A's veth end, so that it does not clash with
	// the good filter on B's.
	onA := func(name, pkg, params string) string {
		s := fmt.Sprintf("name: %s\npackage: %s\nhook: {type: xdp, interface: %s, netns: %s}", name, pkg, p.IfA, p.NsA)
		if params != "" {
			s += "\nparams: " + params
		}
		return s
	}
	big := append(doc(good), bytes.Repeat([]byte("# padding padding padding padding padding padding\n"), (4<<20)/50+10)...)

	type check func(t *testing.T, e v1.Error)
	wants := func(substrs ...string) check {
		return func(t *testing.T, e v1.Error) {
			t.Helper()
			for _, s := range substrs {
				if !strings.Contains(e.Error, s) {
					t.Errorf("error %q does not contain %q", e.Error, s)
				}
			}
		}
	}
	detail := func(attachment, field string, substrs ...string) check {
		return func(t *testing.T, e v1.Error) {
			t.Helper()
			if !apiHasDetail(e, attachment, field) {
				t.Errorf("details %+v do not name attachment %q field %q", e.Details, attachment, field)
			}
			for _, s := range substrs {
				found := strings.Contains(e.Error, s)
				for _, d := range e.Details {
					found = found || strings.Contains(d.Message, s)
				}
				if !found {
					t.Errorf("error %+v does not contain %q", e, s)
				}
			}
		}
	}
	cases := []struct {
		name   string
		method string
		path   string
		body   []byte
		code   int
		check  check
	}{
		{"malformed YAML", "PUT", v1.PathState, []byte("apiVersion: leaf.dev/v1alpha1\nspec: [unclosed\n"), 400, wants("malformed")},
		{"malformed JSON", "PUT", v1.PathState, []byte(`{"apiVersion": "leaf.dev/v1alpha1", "spec": {`), 400, wants("malformed")},
		{"empty body", "PUT", v1.PathState, []byte(""), 400, wants("empty")},
		{"unknown top-level field", "PUT", v1.PathState, append(doc(good), []byte("colour: red\n")...), 400, wants("colour")},
		{"unknown attachment field", "PUT", v1.PathState, doc(good, onA("extra", "pktcount@1.0.0", "")+"\nflavour: mint"), 400, wants("flavour")},
		{"wrong JSON type", "PUT", v1.PathState, []byte(`{"apiVersion": 5, "kind": "HostState", "spec": {"attachments": []}}`), 400, wants("apiVersion")},
		{"wrong kind", "PUT", v1.PathState, bytes.Replace(doc(good), []byte("kind: HostState"), []byte("kind: Pod"), 1), 422, detail("", "kind", "HostState")},
		{"invalid name", "PUT", v1.PathState, doc(good, onA("Bad_Name", "pktcount@1.0.0", "")), 422, detail("Bad_Name", "name")},
		{"unknown package", "PUT", v1.PathState, doc(good, onA("bad", "nosuchpkg@1.0.0", "")), 422, detail("bad", "package", "nosuchpkg")},
		{"unknown version", "PUT", v1.PathState, doc(good, onA("bad", "portfilter@9.9.9", "")), 422, detail("bad", "package", "9.9.9")},
		{"package without version", "PUT", v1.PathState, doc(good, onA("bad", "portfilter", "")), 422, detail("bad", "package")},
		{"missing interface", "PUT", v1.PathState, doc(good, fmt.Sprintf("name: bad\npackage: pktcount@1.0.0\nprogram: count_xdp\nhook: {type: xdp, interface: nosuch0, netns: %s}", p.NsA)), 422, detail("bad", "hook.interface", "nosuch0")},
		{"program type does not fit hook", "PUT", v1.PathState, doc(good, onA("bad", "execcount@1.0.0", "")), 422, detail("bad", "hook.type", "tracepoint")},
		{"param of wrong type", "PUT", v1.PathState, doc(good, onA("bad", "portfilter@1.0.0", "{ports: [http]}")), 422, detail("bad", "params.ports")},
		{"param out of range", "PUT", v1.PathState, doc(good, onA("bad", "portfilter@1.0.0", "{ports: [70000]}")), 422, detail("bad", "params.ports")},
		{"param scalar for list", "PUT", v1.PathState, doc(good, onA("bad", "portfilter@1.0.0", "{ports: 80}")), 422, detail("bad", "params.ports")},
		{"bool param given a string", "PUT", v1.PathState, doc(good, onA("bad", "portfilter@1.0.0", "{filter_udp: maybe}")), 422, detail("bad", "params.filter_udp")},
		{"unknown param", "PUT", v1.PathState, doc(good, onA("bad", "portfilter@1.0.0", "{colour: 1}")), 422, detail("bad", "params.colour", "colour")},
		{"verifier rejects", "PUT", v1.PathState, doc(good, onA("bad", "badverifier@1.0.0", "")), 422, detail("bad", "package", "verifier", "invalid access to packet")},
		{"bad dryRun on apply", "PUT", v1.PathState + "?dryRun=perhaps", doc(good), 400, wants("dryRun", "perhaps")},
		{"bad dryRun on delete", "DELETE", v1.PathAttachments + "/filter?dryRun=2", nil, 400, wants("dryRun")},
		{"body over 4 MiB", "PUT", v1.PathState, big, 413, wants("too large")},
		{"delete unknown attachment", "DELETE", v1.PathAttachments + "/nosuch", nil, 404, wants("nosuch")},
		{"maps of unknown attachment", "GET", v1.PathAttachments + "/nosuch/maps", nil, 404, wants("nosuch")},
		{"dump of unknown attachment", "GET", v1.PathAttachments + "/nosuch/maps/drops", nil, 404, wants("nosuch")},
		{"dump of unknown map", "GET", v1.PathAttachments + "/filter/maps/nosuchmap", nil, 404, wants("nosuchmap")},
		{"dump of a dotted map name", "GET", v1.PathAttachments + "/filter/maps/.rodata", nil, 404, wants(".rodata")},
		{"history of no samples", "GET", v1.PathHistory + "?samples=0", nil, 400, wants("samples", "positive")},
		{"history of a word of samples", "GET", v1.PathHistory + "?samples=ten", nil, 400, wants(`"ten"`)},
		{"unknown path", "GET", "/v1/nothing-here", nil, 404, wants("/v1/nothing-here")},
		{"unknown version prefix", "GET", "/v2/status", nil, 404, wants("/v2/status")},
		{"stats with bad JSON", "PUT", v1.PathStats, []byte(`{"enabled": `), 400, nil},
		{"stats with wrong type", "PUT", v1.PathStats, []byte(`{"enabled": "yes"}`), 400, wants("enabled")},
		{"stats with unknown field", "PUT", v1.PathStats, []byte(`{"enable": true}`), 400, wants("enable")},
		{"stats with empty body", "PUT", v1.PathStats, nil, 400, nil},
		{"stats body too large", "PUT", v1.PathStats, append(bytes.Repeat([]byte(" "), 5000), []byte(`{"enabled": true}`)...), 413, wants("too large")},
		{"wrong method", "POST", v1.PathState, doc(good), 404, wants("POST")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ans := apiRequest(t, hc, c.method, c.path, c.body)
			if ans.Code >= 500 {
				t.Fatalf("bad request answered %d: %s", ans.Code, ans.Body)
			}
			if ans.Code != c.code {
				t.Fatalf("answered %d, want %d: %s", ans.Code, c.code, ans.Body)
			}
			e := apiErrorBody(t, ans)
			if c.check != nil {
				c.check(t, e)
			}
			if t.Failed() {
				t.Logf("body: %s", ans.Body)
			}
			if diff := before.diff(apiTakeSnapshot(t, d, p)); diff != "" {
				t.Fatalf("refused request changed the host: %s", diff)
			}
		})
	}

	// The typed client surfaces the same answers as *client.APIError.
	_, err := d.Client.Apply(ctx(t), doc(good, onA("bad", "nosuchpkg@1.0.0", "")), false)
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnprocessableEntity || !apiHasDetail(apiErr.Body, "bad", "package") {
		t.Fatalf("client apply of an unknown package: %#v", err)
	}
	if _, err := d.Client.Delete(ctx(t), "nosuch", false); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
		t.Fatalf("client delete of an unknown attachment: %v", err)
	}
	if _, err := d.Client.DumpMap(ctx(t), "filter", "nosuchmap"); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
		t.Fatalf("client dump of an unknown map: %v", err)
	}
	// Several problems at once are all reported.
	_, err = d.Client.Apply(ctx(t), doc(good, onA("bad1", "nosuchpkg@1.0.0", ""), fmt.Sprintf("name: bad2\npackage: pktcount@1.0.0\nprogram: count_xdp\nhook: {type: xdp, interface: nosuch0, netns: %s}", p.NsA)), false)
	if !errors.As(err, &apiErr) || !apiHasDetail(apiErr.Body, "bad1", "package") || !apiHasDetail(apiErr.Body, "bad2", "hook.interface") {
		t.Fatalf("two bad attachments: %v", err)
	}
	if !strings.Contains(err.Error(), `attachment "bad1"`) || !strings.Contains(err.Error(), `attachment "bad2"`) {
		t.Errorf("client error message does not name both attachments: %v", err)
	}

	// After all that, the filter still drops its port and passes others.
	if got := p.Delivered(t, 7001, 20, 300*time.Millisecond); got != 0 {
		t.Errorf("port 7001: %d of 20 delivered after the bad requests, want 0", got)
	}
	if got := p.Delivered(t, 7002, 20, 300*time.Millisecond); got != 20 {
		t.Errorf("port 7002: %d of 20 delivered after the bad requests, want 20", got)
	}
	if diff := before.diff(apiTakeSnapshot(t, d, p)); diff != "" {
		t.Fatalf("bad requests changed the host: %s", diff)
	}
	if strings.Contains(d.Logs(), "handler panic") {
		t.Errorf("leafd logged a handler panic:\n%s", d.Logs())
	}
}

// TestAPIDryRunChangesNothing plans applies and deletes with dryRun and
// checks that the plans are right and the host is untouched.
func TestAPIDryRunChangesNothing(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	hc := apiHTTP(d.Socket)

	// A dry run on an empty host creates nothing.
	ans := apiRequest(t, hc, http.MethodPut, v1.PathState+"?dryRun=true", doc(portFilter(p, "filter", "1.0.0", 7001)))
	if ans.Code != http.StatusOK {
		t.Fatalf("dry-run apply: %d %s", ans.Code, ans.Body)
	}
	var res v1.ApplyResult
	if err := json.Unmarshal(ans.Body, &res); err != nil {
		t.Fatal(err)
	}
	if !res.DryRun || !res.Changed || actionKinds(&res)["filter"] != "create" {
		t.Fatalf("dry-run apply on an empty host: %s", ans.Body)
	}
	if st := status(t, d); len(st) != 0 {
		t.Fatalf("dry run created attachments: %+v", st)
	}
	if id := xdpProgID(t, p.NsB, p.IfB); id != 0 {
		t.Fatalf("dry run attached XDP program %d", id)
	}
	if got := p.Delivered(t, 7001, 10, 300*time.Millisecond); got != 10 {
		t.Fatalf("port 7001: %d of 10 delivered after a dry run, want 10", got)
	}

	apply(t, d, doc(portFilter(p, "filter", "1.0.0", 7001)))
	before := apiTakeSnapshot(t, d, p)

	plans := []struct {
		name  string
		run   func() (*v1.ApplyResult, error)
		kinds map[string]string
	}{
		{"change ports", func() (*v1.ApplyResult, error) {
			return d.Client.Apply(ctx(t), doc(portFilter(p, "filter", "1.0.0", 7002)), true)
		}, map[string]string{"filter": "update-params"}},
		{"add an attachment", func() (*v1.ApplyResult, error) {
			return d.Client.Apply(ctx(t), doc(portFilter(p, "filter", "1.0.0", 7001), fmt.Sprintf("name: counter\npackage: pktcount@1.0.0\nprogram: count_xdp\nhook: {type: xdp, interface: %s, netns: %s}", p.IfA, p.NsA)), true)
		}, map[string]string{"filter": "keep", "counter": "create"}},
		{"empty document", func() (*v1.ApplyResult, error) {
			return d.Client.Apply(ctx(t), doc(), true)
		}, map[string]string{"filter": "delete"}},
		{"delete", func() (*v1.ApplyResult, error) {
			return d.Client.Delete(ctx(t), "filter", true)
		}, map[string]string{"filter": "delete"}},
	}
	for _, pl := range plans {
		t.Run(pl.name, func(t *testing.T) {
			res, err := pl.run()
			if err != nil {
				t.Fatal(err)
			}
			if !res.DryRun || !res.Changed {
				t.Errorf("result %+v: want dryRun and changed", res)
			}
			if got := actionKinds(res); !reflect.DeepEqual(got, pl.kinds) {
				t.Errorf("planned %v, want %v", got, pl.kinds)
			}
			if diff := before.diff(apiTakeSnapshot(t, d, p)); diff != "" {
				t.Fatalf("dry run changed the host: %s", diff)
			}
		})
	}
	// A no-op dry run says so.
	res2, err := d.Client.Apply(ctx(t), doc(portFilter(p, "filter", "1.0.0", 7001)), true)
	if err != nil || !res2.DryRun || res2.Changed || actionKinds(res2)["filter"] != "keep" {
		t.Fatalf("no-op dry run: %+v, %v", res2, err)
	}
	// The blocked port is still the one applied for real.
	dump, err := d.Client.DumpMap(ctx(t), "filter", "blocked_ports")
	if err != nil {
		t.Fatal(err)
	}
	if keys := apiDumpKeys(dump); !reflect.DeepEqual(keys, []uint64{7001}) {
		t.Fatalf("blocked_ports after dry runs = %v, want [7001]", keys)
	}
	if got := p.Delivered(t, 7002, 10, 300*time.Millisecond); got != 10 {
		t.Fatalf("port 7002: %d of 10 delivered after dry runs, want 10", got)
	}
}

func apiDumpKeys(d *v1.MapDump) []uint64 {
	var keys []uint64
	for _, e := range d.Entries {
		if e.KeyUint != nil {
			keys = append(keys, *e.KeyUint)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

// apiStatsSysctlOn reports whether someone turned BPF statistics on for the
// whole host, in which case leafd cannot report them off.
func apiStatsSysctlOn(t *testing.T) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled")
	return err == nil && strings.TrimSpace(string(b)) != "0"
}

// TestClientTypedEndToEnd drives every method of the typed client against
// a real leafd.
func TestClientTypedEndToEnd(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	c := d.Client

	if err := c.Health(ctx(t)); err != nil {
		t.Fatal(err)
	}

	// Packages: the four built-ins, with their programs and hooks.
	pkgs, err := c.Packages(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]v1.Package{}
	for _, pk := range pkgs {
		byName[pk.Name] = pk
	}
	builtins := []string{"portfilter", "pktcount", "execcount", "callcount", "firewall", "ratelimit", "connlimit", "mirror", "flowexport"}
	if len(pkgs) != len(builtins) {
		t.Errorf("%d packages, want the %d built-ins: %+v", len(pkgs), len(builtins), pkgs)
	}
	for _, name := range builtins {
		pk, ok := byName[name]
		if !ok {
			t.Errorf("package %s missing", name)
			continue
		}
		if pk.Version != "1.0.0" || pk.Repository != "builtin" || !strings.HasPrefix(pk.Digest, "sha256:") || len(pk.Programs) == 0 || pk.License == "" || pk.Description == "" {
			t.Errorf("package %s: %+v", name, pk)
		}
	}
	if pf := byName["portfilter"]; len(pf.Programs) != 1 || pf.Programs[0].Name != "port_filter" || pf.Programs[0].Type != "xdp" || !slices.Equal(pf.Programs[0].Hooks, []string{"xdp"}) {
		t.Errorf("portfilter programs: %+v", pf.Programs)
	}

	// Apply, then Desired returns the applied document.
	document := doc(portFilter(p, "filter", "1.0.0", 7003, 7001), fmt.Sprintf("name: counter\npackage: pktcount@1.0.0\nprogram: count_xdp\npriority: 10\nhook: {type: xdp, interface: %s, netns: %s, mode: generic}", p.IfA, p.NsA))
	res, err := c.Apply(ctx(t), document, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.DryRun || !res.Changed || !reflect.DeepEqual(actionKinds(res), map[string]string{"filter": "create", "counter": "create"}) {
		t.Fatalf("apply: %+v", res)
	}
	raw, err := c.Desired(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var got, want desired.State
	if err := yamljson.Decode(raw, &got); err != nil {
		t.Fatalf("desired state does not decode strictly: %v: %s", err, raw)
	}
	if err := yamljson.Decode(document, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("desired state\n got %+v\nwant %+v", got, want)
	}

	// Status agrees with the kernel.
	st, err := c.Status(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Attachments) != 2 {
		t.Fatalf("status lists %d attachments, want 2: %+v", len(st.Attachments), st)
	}
	sm := status(t, d)
	for name, ns := range map[string]string{"filter": p.NsB, "counter": p.NsA} {
		a := sm[name]
		ifname := p.IfB
		if name == "counter" {
			ifname = p.IfA
		}
		if a.State != v1.StateAttached || a.HookType != "xdp" || a.ProgramID == 0 || a.LinkID == 0 || a.LoadedAt.IsZero() {
			t.Errorf("status of %s: %+v", name, a)
		}
		if k := xdpProgID(t, ns, ifname); k != a.ProgramID {
			t.Errorf("%s: kernel runs program %d, status says %d", name, k, a.ProgramID)
		}
	}
	if a := sm["counter"]; a.Package != "pktcount@1.0.0" || a.Program != "count_xdp" || a.Priority != 10 {
		t.Errorf("counter status: %+v", a)
	}
	if a := sm["filter"]; a.Package != "portfilter@1.0.0" || a.Program != "port_filter" || a.Priority != desired.DefaultPriority || a.Maps["blocked_ports"] == 0 || a.Maps["drops"] == 0 {
		t.Errorf("filter status: %+v", a)
	}

	// Maps and DumpMap.
	ml, err := c.Maps(ctx(t), "filter")
	if err != nil {
		t.Fatal(err)
	}
	maps := map[string]v1.MapInfo{}
	for _, m := range ml.Maps {
		maps[m.Name] = m
	}
	if ml.Attachment != "filter" || maps["blocked_ports"].ID != sm["filter"].Maps["blocked_ports"] || maps["drops"].ID != sm["filter"].Maps["drops"] {
		t.Fatalf("maps %+v do not match status %+v", ml, sm["filter"].Maps)
	}
	if m := maps["blocked_ports"]; m.KeySize != 2 || m.MaxEntries == 0 {
		t.Errorf("blocked_ports: %+v", m)
	}
	bp, err := c.DumpMap(ctx(t), "filter", "blocked_ports")
	if err != nil {
		t.Fatal(err)
	}
	if keys := apiDumpKeys(bp); !reflect.DeepEqual(keys, []uint64{7001, 7003}) || len(bp.Entries) != 2 || bp.Map.Name != "blocked_ports" {
		t.Fatalf("blocked_ports keys = %v, want the ports param [7001 7003]: %+v", keys, bp)
	}

	// Statistics on: runs are counted and shown.
	if s, err := c.SetStats(ctx(t), true); err != nil || !s.Enabled {
		t.Fatalf("stats on: %+v, %v", s, err)
	}
	if s, err := c.Stats(ctx(t)); err != nil || !s.Enabled {
		t.Fatalf("stats after on: %+v, %v", s, err)
	}
	sent := map[int]int{7001: 30, 7003: 7}
	for port, n := range sent {
		if got := p.Delivered(t, port, n, 300*time.Millisecond); got != 0 {
			t.Errorf("port %d: %d of %d delivered, want 0", port, got, n)
		}
	}
	if got := p.Delivered(t, 7002, 5, 300*time.Millisecond); got != 5 {
		t.Errorf("port 7002: %d of 5 delivered, want 5", got)
	}
	drops, err := c.DumpMap(ctx(t), "filter", "drops")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(drops.Map.Type, "PerCPU") {
		t.Errorf("drops map type %q, want a per-CPU map", drops.Map.Type)
	}
	perPort := map[uint64]uint64{}
	for _, e := range drops.Entries {
		if e.KeyUint == nil || e.ValueUint == nil || len(e.PerCPU) == 0 {
			t.Fatalf("drops entry without integer key/value or per-CPU values: %+v", e)
		}
		var sum uint64
		for _, h := range e.PerCPU {
			sum += apiHexUint(t, h)
		}
		if sum != *e.ValueUint {
			t.Errorf("drops[%d]: value %d is not the sum %d of the per-CPU values %v", *e.KeyUint, *e.ValueUint, sum, e.PerCPU)
		}
		perPort[*e.KeyUint] = *e.ValueUint
	}
	if !reflect.DeepEqual(perPort, map[uint64]uint64{7001: 30, 7003: 7}) {
		t.Errorf("drops = %v, want 7001:30 7003:7", perPort)
	}
	st, err = c.Status(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !st.BPFStats {
		t.Errorf("status says BPF stats are off after SetStats(true)")
	}
	for _, a := range st.Attachments {
		if a.Name == "filter" && (a.RunCount == nil || *a.RunCount < 42 || a.RunTimeNs == nil || *a.RunTimeNs == 0) {
			t.Errorf("filter run statistics after 42 packets: count %v time %v", a.RunCount, a.RunTimeNs)
		}
	}

	// Statistics off.
	if s, err := c.SetStats(ctx(t), false); err != nil {
		t.Fatalf("stats off: %v", err)
	} else if !apiStatsSysctlOn(t) {
		if s.Enabled {
			t.Errorf("SetStats(false) answered enabled")
		}
		st, err := c.Status(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if st.BPFStats {
			t.Errorf("status says BPF stats are on after SetStats(false)")
		}
		for _, a := range st.Attachments {
			if a.RunCount != nil {
				t.Errorf("%s: run count %d reported with statistics off", a.Name, *a.RunCount)
			}
		}
	}

	// Delete detaches one attachment and keeps the other. (Turning
	// statistics on and off rebuilt the chains, with and without run
	// counters, so take the IDs afresh.)
	sm = status(t, d)
	progID := sm["filter"].ProgramID
	res, err = c.Delete(ctx(t), "filter", false)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || actionKinds(res)["filter"] != "delete" {
		t.Fatalf("delete: %+v", res)
	}
	after := status(t, d)
	if _, ok := after["filter"]; ok || len(after) != 1 || after["counter"].ProgramID != sm["counter"].ProgramID {
		t.Fatalf("status after delete: %+v", after)
	}
	if id := xdpProgID(t, p.NsB, p.IfB); id != 0 {
		t.Fatalf("kernel still runs XDP program %d (was %d) on %s after delete", id, progID, p.IfB)
	}
	for _, pin := range pinTree(t, d.BPFFS) {
		if strings.Contains(pin, "filter") {
			t.Errorf("pin %s left after delete", pin)
		}
	}
	if got := p.Delivered(t, 7001, 10, 300*time.Millisecond); got != 10 {
		t.Errorf("port 7001: %d of 10 delivered after delete, want 10", got)
	}
	if _, err := c.Maps(ctx(t), "filter"); err == nil {
		t.Errorf("maps of a deleted attachment succeeded")
	}
	raw, err = c.Desired(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var afterDoc desired.State
	if err := yamljson.Decode(raw, &afterDoc); err != nil || !slices.Equal(afterDoc.Names(), []string{"counter"}) {
		t.Fatalf("desired after delete: %s (%v)", raw, err)
	}
}

// apiHexUint decodes a hex per-CPU value as an integer in host byte order.
func apiHexUint(t *testing.T, h string) uint64 {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatalf("value %q is not hex: %v", h, err)
	}
	switch len(b) {
	case 4:
		return uint64(binary.NativeEndian.Uint32(b))
	case 8:
		return binary.NativeEndian.Uint64(b)
	}
	t.Fatalf("value %q: %d bytes, want 4 or 8", h, len(b))
	return 0
}

// TestAPIBrokenBodies sends request bodies that cannot be read to the end
// (bad chunked encoding, a body shorter than its Content-Length): they are
// bad requests, not bodies that are too large.
func TestAPIBrokenBodies(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	for _, c := range []struct {
		name    string
		request string
	}{
		{"bad chunk size", "PUT /v1/state HTTP/1.1\r\nHost: leafd\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"},
		{"short body", "PUT /v1/state HTTP/1.1\r\nHost: leafd\r\nContent-Length: 1000\r\n\r\napiVersion: leaf.dev/v1alpha1\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("unix", d.Socket)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.WriteString(conn, c.request); err != nil {
				t.Fatal(err)
			}
			conn.(*net.UnixConn).CloseWrite()
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("read answer: %v", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("answered %s, want 400: %s", resp.Status, body)
			}
			apiErrorBody(t, apiAnswer{Code: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Body: body})
		})
	}
	if st := status(t, d); len(st) != 0 {
		t.Fatalf("broken bodies applied something: %+v", st)
	}
}

// TestAPIConcurrentRequests runs applies, deletes, reads, statistics
// switches and scrapes at the same time. Every answer must be a success
// or a 4xx, the final state must be consistent with the kernel, and leafd
// (built with the race detector when the tests are) must report no race.
func TestAPIConcurrentRequests(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	p := testenv.NewPair(t)
	addr := fmt.Sprintf("127.0.0.1:%d", metricsPort(t))
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--metrics-address", addr}})
	c := ctx(t)
	apply(t, d, doc(portFilter(p, "filter", "1.0.0", 7001)))

	docs := [][]byte{
		doc(portFilter(p, "filter", "1.0.0", 7001)),
		doc(portFilter(p, "filter", "1.0.0", 7001, 7002)),
		doc(portFilter(p, "filter", "1.0.0", 7001), cliCounter(p)),
	}
	// check accepts success and client errors (a map read can race with
	// the delete of its attachment), never a server error.
	check := func(what string, err error) {
		var apiErr *client.APIError
		if err != nil && (!errors.As(err, &apiErr) || apiErr.StatusCode >= 500) {
			t.Errorf("%s: %v", what, err)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	workers := []func(i int){
		func(i int) { _, err := d.Client.Apply(c, docs[i%len(docs)], i%5 == 0); check("apply", err) },
		func(i int) { _, err := d.Client.Status(c); check("status", err) },
		func(i int) { _, err := d.Client.Maps(c, "filter"); check("maps", err) },
		func(i int) { _, err := d.Client.DumpMap(c, "filter", "blocked_ports"); check("dump", err) },
		func(i int) { _, err := d.Client.DumpMap(c, "counter", "stats"); check("dump counter", err) },
		func(i int) { _, err := d.Client.Delete(c, "counter", i%2 == 0); check("delete", err) },
		func(i int) { _, err := d.Client.SetStats(c, i%2 == 0); check("stats", err) },
		func(i int) { _, err := d.Client.Desired(c); check("desired", err) },
		func(i int) { _, err := d.Client.Packages(c); check("packages", err) },
		func(i int) {
			resp, err := http.Get("http://" + addr + "/metrics")
			if err != nil {
				t.Errorf("scrape: %v", err)
				return
			}
			defer resp.Body.Close()
			parser := expfmt.NewTextParser(model.LegacyValidation)
			if _, err := parser.TextToMetricFamilies(resp.Body); err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("scrape: %s: %v", resp.Status, err)
			}
		},
		func(i int) { p.Delivered(t, 7100+i%200, 3, 50*time.Millisecond) }, // a fresh port each time: no bind races with the last socket
	}
	done := make(chan struct{})
	for _, w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; time.Now().Before(deadline) && !t.Failed(); i++ {
				w(i)
			}
		}()
	}
	for range workers {
		<-done
	}

	// Settle on one document and compare with the kernel.
	apply(t, d, docs[2])
	st := status(t, d)
	if st["filter"].State != v1.StateAttached || st["counter"].State != v1.StateAttached || len(st) != 2 {
		t.Fatalf("status after the storm: %+v", st)
	}
	if k := xdpProgID(t, p.NsB, p.IfB); k != st["filter"].ProgramID {
		t.Errorf("kernel runs %d on %s, status says %d", k, p.IfB, st["filter"].ProgramID)
	}
	if k := xdpProgID(t, p.NsA, p.IfA); k != st["counter"].ProgramID {
		t.Errorf("kernel runs %d on %s, status says %d", k, p.IfA, st["counter"].ProgramID)
	}
	d.Stop()
	logs := d.Logs()
	for _, bad := range []string{"DATA RACE", "panic"} {
		if strings.Contains(logs, bad) {
			t.Fatalf("leafd logged %q:\n%s", bad, logs)
		}
	}
}
