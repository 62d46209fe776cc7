// Package monitoring holds leaf's Prometheus alerting rules and Grafana
// dashboard (docs/metrics.md); its test checks both.
package monitoring

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
)

func promtool(t *testing.T, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("promtool not installed (scripts/install-deps.sh installs prometheus)")
	}
	out, err := exec.Command("promtool", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

func TestRulesCheck(t *testing.T) { promtool(t, "check", "rules", "leaf.rules.yaml") }

// The unit tests fire each alert on series made for it and keep it quiet
// on others: a single drift, a certificate outside the window, a
// companion that restarted once.
func TestRulesUnitTests(t *testing.T) { promtool(t, "test", "rules", "leaf.rules_test.yaml") }

var metricName = regexp.MustCompile(`\bleaf_[a-z_]+`)

// documented lists the metric names docs/metrics.md describes.
func documented(t *testing.T) map[string]bool {
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range metricName.FindAllString(string(doc), -1) {
		out[m] = true
	}
	return out
}

// usedMetrics strips the suffixes Prometheus adds to histograms.
func usedMetrics(text string) []string {
	seen := map[string]bool{}
	for _, m := range metricName.FindAllString(text, -1) {
		m = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
		seen[m] = true
	}
	var out []string
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// Every metric the rules and the dashboard use is one leafd documents
// (and so exports): a renamed metric breaks this test, not an alert.
func TestDashboardAndRulesUseDocumentedMetrics(t *testing.T) {
	docs := documented(t)
	raw, err := os.ReadFile("leaf-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if dash.UID == "" || len(dash.Panels) < 10 {
		t.Fatalf("dashboard has uid %q and %d panels", dash.UID, len(dash.Panels))
	}
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	rules, err := os.ReadFile("leaf.rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range usedMetrics(strings.Join(exprs, "\n") + string(rules)) {
		if !docs[m] {
			t.Errorf("%s is used but not in docs/metrics.md", m)
		}
	}
}
