// Package metrics exposes leafd's Prometheus metrics. Names follow
// leaf_<subsystem>_<name>_<unit>; counters end in _total; label values are
// bounded (hook types, states, stages, and attachment names the operator
// declared).
package metrics

import (
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/reconciler"
	"github.com/leaf-ebpf/leaf/internal/version"
)

// StatusSource gives the current status at scrape time.
type StatusSource interface {
	Status() (*v1.Status, error)
}

// Metrics owns leafd's registry.
type Metrics struct {
	Registry      *prometheus.Registry
	applyDuration prometheus.Histogram
	applyErrors   *prometheus.CounterVec
	applies       prometheus.Counter
	events        *prometheus.CounterVec
	checkDuration prometheus.Histogram
}

// New registers leafd's metrics on a fresh registry.
func New(src StatusSource, objs ObjectsSource) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "leaf_apply_duration_seconds",
			Help:    "Time to apply a desired state, from validation to the recorded result.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		applyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leaf_apply_errors_total",
			Help: "Applies that failed, by the stage that failed (validate, resolve, load, attach, record).",
		}, []string{"stage"}),
		applies: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leaf_apply_runs_total",
			Help: "Applies attempted (dry runs excluded).",
		}),
	}
	m.checkDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "leaf_drift_check_duration_seconds",
		Help:    "Time to compare the kernel with what leaf applied (one drift check, repairs excluded).",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
	})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "leaf_events_total",
		Help: "Events recorded in leafd's event log, by type (apply, apply-failed, drift, restored, restore-failed, foreign-program, foreign-removed, companion).",
	}, []string{"type"})
	for _, t := range v1.EventTypes {
		m.events.WithLabelValues(t)
	}
	for _, s := range []string{reconciler.StageValidate, reconciler.StageResolve, reconciler.StageLoad, reconciler.StageAttach, reconciler.StageRecord} {
		m.applyErrors.WithLabelValues(s)
	}
	m.Registry.MustRegister(buildInfo(), m.applyDuration, m.applyErrors, m.applies, m.events, m.checkDuration,
		&statusCollector{src: src}, &objectsCollector{src: objs},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// buildInfo is leaf_build_info: always 1, its labels say which build runs
// (join on it to see versions across a fleet).
func buildInfo() prometheus.Collector {
	in := version.Get()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "leaf_build_info",
		Help: "Always 1; the labels are leafd's version, VCS revision and Go version.",
	}, []string{"version", "revision", "goversion"})
	g.WithLabelValues(in.Version, in.Revision, in.GoVersion).Set(1)
	return g
}

// ApplyDone records one apply.
func (m *Metrics) ApplyDone(d time.Duration, err error, stage string) {
	m.applies.Inc()
	m.applyDuration.Observe(d.Seconds())
	if err != nil {
		var se *reconciler.StageError
		if errors.As(err, &se) {
			stage = se.Stage
		}
		m.applyErrors.WithLabelValues(stage).Inc()
	}
}

// CheckDone records one drift check.
func (m *Metrics) CheckDone(d time.Duration) { m.checkDuration.Observe(d.Seconds()) }

// Event counts one event of the event log.
func (m *Metrics) Event(e v1.Event) {
	m.events.WithLabelValues(e.Type).Inc()
}

// Handler serves the exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

var (
	descPrograms = prometheus.NewDesc("leaf_attachments_programs",
		"Desired attachments by hook type and observed state (attached, detached, missing).",
		[]string{"hook", "state"}, nil)
	descRuns = prometheus.NewDesc("leaf_program_runs_total",
		"Times the attachment's program ran (kernel BPF statistics; only while they are enabled).",
		[]string{"attachment"}, nil)
	descRunTime = prometheus.NewDesc("leaf_program_run_time_seconds_total",
		"Time the attachment's program spent running (kernel BPF statistics; only while they are enabled).",
		[]string{"attachment"}, nil)
	descStats = prometheus.NewDesc("leaf_bpf_stats_enabled",
		"1 if the kernel collects per-program run counts and times.", nil, nil)
	descCompanionRestarts = prometheus.NewDesc("leaf_companion_restarts_total",
		"Times the attachment's companion exited and was restarted.",
		[]string{"attachment"}, nil)
)

var (
	hookTypes = []string{"xdp", "tc", "tracepoint", "kprobe", "uprobe", "cgroup_skb"}
	states    = []string{v1.StateAttached, v1.StateDetached, v1.StateMissing, v1.StateInterfaceMissing}
)

// statusCollector reads the kernel's view at scrape time, so the numbers
// are never stale.
type statusCollector struct {
	src StatusSource
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPrograms
	ch <- descRuns
	ch <- descRunTime
	ch <- descStats
	ch <- descCompanionRestarts
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.src.Status()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descPrograms, err)
		return
	}
	counts := map[[2]string]float64{}
	for _, h := range hookTypes {
		for _, s := range states {
			counts[[2]string{h, s}] = 0
		}
	}
	for _, a := range st.Attachments {
		counts[[2]string{a.HookType, a.State}]++
		if a.RunCount != nil {
			ch <- prometheus.MustNewConstMetric(descRuns, prometheus.CounterValue, float64(*a.RunCount), a.Name)
		}
		if a.RunTimeNs != nil {
			ch <- prometheus.MustNewConstMetric(descRunTime, prometheus.CounterValue, float64(*a.RunTimeNs)/1e9, a.Name)
		}
		if a.Companion != nil {
			ch <- prometheus.MustNewConstMetric(descCompanionRestarts, prometheus.CounterValue, float64(a.Companion.Restarts), a.Name)
		}
	}
	for k, v := range counts {
		ch <- prometheus.MustNewConstMetric(descPrograms, prometheus.GaugeValue, v, k[0], k[1])
	}
	enabled := 0.0
	if st.BPFStats {
		enabled = 1
	}
	ch <- prometheus.MustNewConstMetric(descStats, prometheus.GaugeValue, enabled)
}
