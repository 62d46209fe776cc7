package manifest

import (
	"strings"
	"testing"
)

const baseManifest = `apiVersion: leaf.dev/v1alpha1
kind: Package
name: pkt
version: 1.0.0
description: d
license: MIT
programs:
  - {name: p, object: p.o, function: f, type: xdp, hooks: [xdp]}
`

// TestMetricsAndCompanionValidation checks each rule with the field it
// names, and that good declarations pass.
func TestMetricsAndCompanionValidation(t *testing.T) {
	for _, c := range []struct{ yaml, field, msg string }{
		{"metrics:\n  - {name: drops_total, help: h, type: counter, map: drops, byKey: port}\n  - {name: pkts_per_second, help: h, type: rate, map: c, key: 0}\n  - {name: fill, help: h, type: gauge, map: c}\n  - {name: size, help: h, type: histogram, map: sizes, buckets: [64, 128, 1500], sumKey: 4}", "", ""},
		{"metrics:\n  - {name: drops_total, help: h, type: counter, map: drops, verdict: XDP_DROP}\n  - {name: shot_total, help: h, type: counter, map: s, verdict: TC_ACT_SHOT}", "", ""},
		{"metrics:\n  - {name: g, help: h, type: gauge, map: m, verdict: XDP_DROP}", "metrics[0].verdict", "only on counters"},
		{"metrics:\n  - {name: d_total, help: h, type: counter, map: m, verdict: drop}", "metrics[0].verdict", "verdict name like XDP_DROP"},
		{"metrics:\n  - {name: drops, help: h, type: counter, map: drops}", "metrics[0].name", "ends in _total"},
		{"metrics:\n  - {name: r, help: h, type: rate, map: m}", "metrics[0].name", "ends in _per_second"},
		{"metrics:\n  - {name: Bad, help: h, type: gauge, map: m}", "metrics[0].name", "lower-case"},
		{"metrics:\n  - {name: g, type: gauge, map: m}", "metrics[0].help", "is required"},
		{"metrics:\n  - {name: g, help: h, type: summary, map: m}", "metrics[0].type", "must be counter, gauge, rate or histogram"},
		{"metrics:\n  - {name: g, help: h, type: gauge, map: m, key: 1, byKey: k}", "metrics[0].byKey", "only one of key and byKey"},
		{"metrics:\n  - {name: g, help: h, type: gauge, map: m, byKey: attachment}", "metrics[0].byKey", "not a label name"},
		{"metrics:\n  - {name: g, help: h, type: gauge, map: m, buckets: [1]}", "metrics[0].buckets", "only apply to histograms"},
		{"metrics:\n  - {name: h, help: h, type: histogram, map: m, buckets: [3, 2]}", "metrics[0].buckets", "strictly increasing"},
		{"metrics:\n  - {name: h, help: h, type: histogram, map: m}", "metrics[0].buckets", "at least one bucket"},
		{"metrics:\n  - {name: h, help: h, type: histogram, map: m, buckets: [1, 2], sumKey: 1}", "metrics[0].sumKey", "is a bucket"},
		{"metrics:\n  - {name: g, help: h, type: gauge, map: m}\n  - {name: g, help: h, type: gauge, map: m}", "metrics[1].name", "duplicate metric"},
		{"companion: {path: bin/c, capabilities: [CAP_BPF], user: 1000, resources: {memory: 64Mi, cpu: 500m}}", "", ""},
		{"companion: {path: /bin/c}", "companion.path", "relative path inside the package"},
		{"companion: {path: ../c}", "companion.path", "relative path inside the package"},
		{"companion: {path: c, capabilities: [CAP_EVERYTHING]}", "companion.capabilities[0]", "unknown capability"},
		{"companion: {path: c, user: 0}", "companion.user", "never run as root"},
		{"companion: {path: c, resources: {memory: lots}}", "companion.resources.memory", "not a memory size"},
		{"companion: {path: c, resources: {memory: 100K}}", "companion.resources.memory", "below 1Mi"},
		{"companion: {path: c, resources: {cpu: \"-1\"}}", "companion.resources.cpu", "not a CPU share"},
	} {
		_, err := Parse([]byte(baseManifest + c.yaml))
		if c.field == "" {
			if err != nil {
				t.Errorf("%s: %v", c.yaml, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.field+": ") || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s:\n got %v\nwant %s: …%s…", c.yaml, err, c.field, c.msg)
		}
	}
}

func TestResourceUnits(t *testing.T) {
	for in, want := range map[string]uint64{"64Mi": 64 << 20, "2G": 2e9, "1048576": 1 << 20} {
		if got, err := (Resources{Memory: in}).MemoryBytes(); err != nil || got != want {
			t.Errorf("memory %s = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, want := range map[string]uint64{"0.5": 50000, "250m": 25000, "2": 200000} {
		if got, err := (Resources{CPU: in}).CPUQuota(); err != nil || got != want {
			t.Errorf("cpu %s = %d, %v; want %d", in, got, err, want)
		}
	}
}
