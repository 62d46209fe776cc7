package manifest

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Metric declares a Prometheus metric leafd reads from one of the
// package's maps at scrape time, for every attachment of the package. It
// is what L3AF's monitor_maps did, with types, units and labels declared.
//
// Values are unsigned integers of 1, 2, 4 or 8 bytes; per-CPU maps are
// summed over CPUs. Keys are integers of 1, 2, 4 or 8 bytes.
type Metric struct {
	// Name becomes leaf_pkg_<package>_<name>. Counters end in _total,
	// rates in _per_second.
	Name string `json:"name"`
	Help string `json:"help"`
	// Type is counter, gauge, rate or histogram.
	Type string `json:"type"`
	// Map is the map the value is read from.
	Map string `json:"map"`
	// Key reads one key. Without Key or ByKey every key's value is summed.
	Key *uint64 `json:"key,omitempty"`
	// ByKey exports one series per key, the key in a label of this name.
	// The map's size bounds the series.
	ByKey string `json:"byKey,omitempty"`
	// KeyFormat shows the key in the byKey label: uint (default), hex,
	// port (a big-endian u16), ipv4 or cidr (see Formats).
	KeyFormat string `json:"keyFormat,omitempty"`
	// SkipZero leaves out the series of keys whose value is 0 (byKey).
	SkipZero bool `json:"skipZero,omitempty"`
	// Buckets (histogram only) are the upper bounds of the map's keys 0,
	// 1, …: key i counts the values in (Buckets[i-1], Buckets[i]], and key
	// len(Buckets), if the map has it, those above the last bound.
	Buckets []float64 `json:"buckets,omitempty"`
	// SumKey (histogram only) is the key holding the sum of the observed
	// values; without it the histogram's _sum is 0.
	SumKey *uint64 `json:"sumKey,omitempty"`
	// Verdict (counters only) names the program verdict the counter
	// counts (XDP_DROP, TC_ACT_SHOT, …): the console shows it as the
	// member's verdict counter.
	Verdict string `json:"verdict,omitempty"`
}

// Metric types.
const (
	MetricCounter   = "counter"
	MetricGauge     = "gauge"
	MetricRate      = "rate"
	MetricHistogram = "histogram"
)

var (
	metricNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	labelRE      = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)
	verdictRE    = regexp.MustCompile(`^(XDP|TC_ACT)_[A-Z]{1,16}$`)
	// reservedLabels are set by leafd or Prometheus.
	reservedLabels = map[string]bool{"attachment": true, "le": true, "quantile": true, "job": true, "instance": true}
)

// MetricName is the exported name of a package's declared metric.
func MetricName(pkg, metric string) string {
	b := []byte("leaf_pkg_" + pkg + "_" + metric)
	for i, c := range b {
		if c == '-' {
			b[i] = '_'
		}
	}
	return string(b)
}

func (m *Metric) validate(field string) []error {
	var errs []error
	add := func(sub, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", field, sub, fmt.Sprintf(format, args...)))
	}
	if !metricNameRE.MatchString(m.Name) {
		add("name", "%q must be lower-case letters, digits and '_', starting with a letter", m.Name)
	}
	if m.Help == "" {
		add("help", "is required")
	}
	if !identRE.MatchString(m.Map) {
		add("map", "%q is not a valid map name", m.Map)
	}
	if m.Key != nil && m.ByKey != "" {
		add("byKey", "set only one of key and byKey")
	}
	if m.ByKey != "" && (!labelRE.MatchString(m.ByKey) || reservedLabels[m.ByKey]) {
		add("byKey", "%q is not a label name leaf can use (lower-case, not attachment, le, quantile, job or instance)", m.ByKey)
	}
	if m.KeyFormat != "" && (m.ByKey == "" || !ValidFormat(m.KeyFormat)) {
		add("keyFormat", "%q: only with byKey, one of %s", m.KeyFormat, strings.Join(Formats, ", "))
	}
	if m.SkipZero && m.ByKey == "" {
		add("skipZero", "only applies with byKey")
	}
	hist := m.Type == MetricHistogram
	switch m.Type {
	case MetricCounter:
		if !hasSuffix(m.Name, "_total") {
			add("name", "a counter's name ends in _total, got %q", m.Name)
		}
	case MetricRate:
		if !hasSuffix(m.Name, "_per_second") {
			add("name", "a rate's name ends in _per_second, got %q", m.Name)
		}
	case MetricGauge:
	case MetricHistogram:
		if m.Key != nil || m.ByKey != "" {
			add("key", "a histogram reads its buckets from keys 0, 1, …; key and byKey do not apply")
		}
		if len(m.Buckets) == 0 {
			add("buckets", "a histogram needs at least one bucket bound")
		}
		if !sort.Float64sAreSorted(m.Buckets) || hasDuplicates(m.Buckets) {
			add("buckets", "bounds must be strictly increasing, got %v", m.Buckets)
		}
		if m.SumKey != nil && *m.SumKey <= uint64(len(m.Buckets)) {
			add("sumKey", "key %d is a bucket (keys 0..%d hold buckets)", *m.SumKey, len(m.Buckets))
		}
	default:
		add("type", "must be counter, gauge, rate or histogram, got %q", m.Type)
	}
	if m.Verdict != "" && (m.Type != MetricCounter || !verdictRE.MatchString(m.Verdict)) {
		add("verdict", "%q: only on counters, a verdict name like XDP_DROP or TC_ACT_SHOT", m.Verdict)
	}
	if !hist && (len(m.Buckets) > 0 || m.SumKey != nil) {
		add("buckets", "buckets and sumKey only apply to histograms")
	}
	return errs
}

func hasSuffix(s, suffix string) bool {
	return len(s) > len(suffix) && s[len(s)-len(suffix):] == suffix
}

func hasDuplicates(fs []float64) bool {
	for i := 1; i < len(fs); i++ {
		if fs[i] == fs[i-1] {
			return true
		}
	}
	return false
}
