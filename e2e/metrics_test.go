package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// scrapeRaw fetches /metrics in the text exposition format.
func scrapeRaw(t *testing.T, addr string) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s: %s", addr, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("scrape %s: Content-Type %q, want text/plain", addr, ct)
	}
	return body
}

// scrapeMetrics fetches /metrics and parses it with Prometheus's own
// parser, so malformed output fails the test.
func scrapeMetrics(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	body := scrapeRaw(t, addr)
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, body)
	}
	return families
}

// series returns the family's metric whose labels are exactly labels, or
// nil.
func metricSeries(families map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	f := families[name]
	if f == nil {
		return nil
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; !ok || v != l.GetValue() {
				match = false
			}
		}
		if match {
			return m
		}
	}
	return nil
}

// metricValue returns the value of a counter, gauge or untyped series,
// failing the test when it is absent.
func metricValue(t *testing.T, families map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	m := metricSeries(families, name, labels)
	if m == nil {
		t.Fatalf("no series %s%v in the exposition", name, labels)
	}
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	t.Fatalf("%s%v is not a counter, gauge or untyped metric", name, labels)
	return 0
}

func histogramCount(t *testing.T, families map[string]*dto.MetricFamily, name string) uint64 {
	t.Helper()
	f := families[name]
	if f == nil || f.GetType() != dto.MetricType_HISTOGRAM || len(f.GetMetric()) != 1 {
		t.Fatalf("%s is not a single histogram: %v", name, f)
	}
	h := f.GetMetric()[0].GetHistogram()
	var last uint64
	for _, b := range h.GetBucket() {
		if b.GetCumulativeCount() < last {
			t.Fatalf("%s: buckets not cumulative: %v", name, h.GetBucket())
		}
		last = b.GetCumulativeCount()
	}
	if last > h.GetSampleCount() {
		t.Fatalf("%s: bucket count %d above sample count %d", name, last, h.GetSampleCount())
	}
	return h.GetSampleCount()
}

// checkNaming enforces leaf's metric conventions on a scrape.
func checkNaming(t *testing.T, families map[string]*dto.MetricFamily) {
	t.Helper()
	for name, f := range families {
		switch {
		case strings.HasPrefix(name, "leaf_"):
		case strings.HasPrefix(name, "go_"), strings.HasPrefix(name, "process_"):
			continue // the client library's runtime collectors
		case name == "promhttp_metric_handler_errors_total":
			continue // the client library's own handler errors
		default:
			t.Errorf("metric %s does not start with leaf_", name)
		}
		if f.GetHelp() == "" {
			t.Errorf("metric %s has no help text", name)
		}
		isCounter := f.GetType() == dto.MetricType_COUNTER
		if isCounter != strings.HasSuffix(name, "_total") {
			t.Errorf("metric %s is a %s: counters, and only counters, end in _total", name, f.GetType())
		}
	}
}

// TestMetrics scrapes leafd's Prometheus endpoint through applies, a bad
// apply, traffic and a delete.
func TestMetrics(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	p := testenv.NewPair(t)
	addr := fmt.Sprintf("127.0.0.1:%d", metricsPort(t))
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--metrics-address", addr, "--bpf-stats", "--repository-allow-unsigned", apiRepository(t)}})

	m := scrapeMetrics(t, addr)
	checkNaming(t, m)
	for _, name := range []string{"leaf_apply_duration_seconds", "leaf_apply_errors_total", "leaf_apply_runs_total", "leaf_attachments_programs", "leaf_bpf_stats_enabled"} {
		if m[name] == nil {
			t.Errorf("metric %s missing", name)
		}
	}
	if got := m["leaf_apply_duration_seconds"].GetType(); got != dto.MetricType_HISTOGRAM {
		t.Errorf("leaf_apply_duration_seconds is a %s, want a histogram", got)
	}
	if got := m["leaf_attachments_programs"].GetType(); got != dto.MetricType_GAUGE {
		t.Errorf("leaf_attachments_programs is a %s, want a gauge", got)
	}
	if v := metricValue(t, m, "leaf_bpf_stats_enabled", nil); v != 1 {
		t.Errorf("leaf_bpf_stats_enabled = %v with --bpf-stats, want 1", v)
	}
	for _, stage := range []string{"validate", "resolve", "load", "attach", "record"} {
		if v := metricValue(t, m, "leaf_apply_errors_total", map[string]string{"stage": stage}); v != 0 {
			t.Errorf("leaf_apply_errors_total{stage=%q} = %v before any bad apply", stage, v)
		}
	}
	// Labels are bounded: every hook type and state, nothing else.
	programs := m["leaf_attachments_programs"].GetMetric()
	if len(programs) != 24 {
		t.Errorf("leaf_attachments_programs has %d series, want 6 hook types × 4 states", len(programs))
	}
	for _, s := range programs {
		if v := s.GetGauge().GetValue(); v != 0 {
			t.Errorf("leaf_attachments_programs%v = %v on an empty host", s.GetLabel(), v)
		}
	}
	applies0 := histogramCount(t, m, "leaf_apply_duration_seconds")
	runs0 := metricValue(t, m, "leaf_apply_runs_total", nil)

	// One XDP attachment.
	apply(t, d, doc(portFilter(p, "filter", "1.0.0", 7001)))
	m = scrapeMetrics(t, addr)
	if n := histogramCount(t, m, "leaf_apply_duration_seconds"); n != applies0+1 {
		t.Errorf("apply histogram count %d after one apply, want %d", n, applies0+1)
	}
	if v := metricValue(t, m, "leaf_apply_runs_total", nil); v != runs0+1 {
		t.Errorf("leaf_apply_runs_total = %v after one apply, want %v", v, runs0+1)
	}
	if h := m["leaf_apply_duration_seconds"].GetMetric()[0].GetHistogram(); h.GetSampleSum() <= 0 {
		t.Errorf("apply duration sum %v, want > 0", h.GetSampleSum())
	}
	for _, s := range m["leaf_attachments_programs"].GetMetric() {
		labels := map[string]string{}
		for _, l := range s.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		want := 0.0
		if labels["hook"] == "xdp" && labels["state"] == v1.StateAttached {
			want = 1
		}
		if v := s.GetGauge().GetValue(); v != want {
			t.Errorf("leaf_attachments_programs%v = %v, want %v", labels, v, want)
		}
	}

	// Dry runs are not applies.
	if _, err := d.Client.Apply(ctx(t), doc(portFilter(p, "filter", "1.0.0", 7002)), true); err != nil {
		t.Fatal(err)
	}
	if n := histogramCount(t, scrapeMetrics(t, addr), "leaf_apply_duration_seconds"); n != applies0+1 {
		t.Errorf("apply histogram count %d after a dry run, want %d", n, applies0+1)
	}

	// Failed applies count by the stage that failed.
	bad := func(pkg string) []byte {
		return doc(portFilter(p, "filter", "1.0.0", 7001), fmt.Sprintf("name: bad\npackage: %s\nhook: {type: xdp, interface: %s, netns: %s}", pkg, p.IfA, p.NsA))
	}
	for _, c := range []struct {
		doc   []byte
		stage string
	}{
		{bad("nosuchpkg@1.0.0"), "resolve"},
		{bad("badverifier@1.0.0"), "load"},
		{bytes.Replace(doc(), []byte("kind: HostState"), []byte("kind: Other"), 1), "validate"},
	} {
		before := scrapeMetrics(t, addr)
		if _, err := d.Client.Apply(ctx(t), c.doc, false); err == nil {
			t.Fatalf("bad apply (%s) succeeded", c.stage)
		}
		after := scrapeMetrics(t, addr)
		for _, stage := range []string{"validate", "resolve", "load", "attach", "record"} {
			want := metricValue(t, before, "leaf_apply_errors_total", map[string]string{"stage": stage})
			if stage == c.stage {
				want++
			}
			if got := metricValue(t, after, "leaf_apply_errors_total", map[string]string{"stage": stage}); got != want {
				t.Errorf("after a %s failure: leaf_apply_errors_total{stage=%q} = %v, want %v", c.stage, stage, got, want)
			}
		}
		if n, was := histogramCount(t, after, "leaf_apply_duration_seconds"), histogramCount(t, before, "leaf_apply_duration_seconds"); n != was+1 {
			t.Errorf("after a %s failure: apply histogram count %d, want %d", c.stage, n, was+1)
		}
	}
	// A request refused before it is an apply (malformed) counts nothing.
	before := scrapeMetrics(t, addr)
	if _, err := d.Client.Apply(ctx(t), []byte("spec: [\n"), false); err == nil {
		t.Fatal("malformed apply succeeded")
	}
	if n, was := histogramCount(t, scrapeMetrics(t, addr), "leaf_apply_duration_seconds"), histogramCount(t, before, "leaf_apply_duration_seconds"); n != was {
		t.Errorf("malformed document counted as an apply: %d → %d", was, n)
	}

	// Traffic shows in the per-program run counters.
	if got := p.Delivered(t, 7001, 25, 300*time.Millisecond); got != 0 {
		t.Errorf("port 7001: %d of 25 delivered, want 0", got)
	}
	m = scrapeMetrics(t, addr)
	checkNaming(t, m)
	if f := m["leaf_program_runs_total"]; f == nil || f.GetType() != dto.MetricType_COUNTER {
		t.Fatalf("leaf_program_runs_total missing or not a counter: %v", f)
	}
	if v := metricValue(t, m, "leaf_program_runs_total", map[string]string{"attachment": "filter"}); v < 25 {
		t.Errorf("leaf_program_runs_total{attachment=\"filter\"} = %v after 25 packets", v)
	}
	if v := metricValue(t, m, "leaf_program_run_time_seconds_total", map[string]string{"attachment": "filter"}); v <= 0 {
		t.Errorf("leaf_program_run_time_seconds_total{attachment=\"filter\"} = %v, want > 0", v)
	}
	// Run counts agree with the API's.
	st, err := d.Client.Status(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Attachments) != 1 || st.Attachments[0].RunCount == nil || float64(*st.Attachments[0].RunCount) < metricValue(t, m, "leaf_program_runs_total", map[string]string{"attachment": "filter"}) {
		t.Errorf("status run count %+v is below the scraped one", st.Attachments)
	}

	// Statistics off: the gauge says so and the run counters go away.
	if _, err := d.Client.SetStats(ctx(t), false); err != nil {
		t.Fatal(err)
	}
	if !apiStatsSysctlOn(t) {
		m = scrapeMetrics(t, addr)
		if v := metricValue(t, m, "leaf_bpf_stats_enabled", nil); v != 0 {
			t.Errorf("leaf_bpf_stats_enabled = %v after turning statistics off", v)
		}
		if m["leaf_program_runs_total"] != nil {
			t.Errorf("leaf_program_runs_total still exposed with statistics off")
		}
	}

	// Delete: nothing attached any more.
	if _, err := d.Client.Delete(ctx(t), "filter", false); err != nil {
		t.Fatal(err)
	}
	m = scrapeMetrics(t, addr)
	if v := metricValue(t, m, "leaf_attachments_programs", map[string]string{"hook": "xdp", "state": v1.StateAttached}); v != 0 {
		t.Errorf("leaf_attachments_programs{hook=xdp,state=attached} = %v after delete", v)
	}
	checkNaming(t, m)

	// The metrics address serves only /metrics.
	resp, err := http.Get("http://" + addr + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /v1/status on the metrics address: %s, want 404", resp.Status)
	}
}

// TestMetricsPromtool lints the exposition with Prometheus's promtool
// (PROMTOOL, or promtool on PATH).
func TestMetricsPromtool(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		var err error
		if promtool, err = exec.LookPath("promtool"); err != nil {
			t.Skip("promtool not installed (Debian package prometheus, or set PROMTOOL)")
		}
	}
	p := testenv.NewPair(t)
	addr := fmt.Sprintf("127.0.0.1:%d", metricsPort(t))
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--metrics-address", addr, "--bpf-stats"}})
	apply(t, d, doc(portFilter(p, "filter", "1.0.0", 7001)))
	p.Delivered(t, 7001, 5, 200*time.Millisecond)
	body := scrapeRaw(t, addr)
	cmd := exec.CommandContext(ctx(t), promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\nexposition:\n%s", err, out, body)
	}
	if !bytes.Contains(body, []byte("leaf_program_runs_total{attachment=\"filter\"}")) {
		t.Fatalf("the linted exposition has no run counter for filter:\n%s", body)
	}
}
