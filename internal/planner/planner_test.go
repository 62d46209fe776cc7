package planner

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/leaf-ebpf/leaf/internal/bpffs"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/hook"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/observer"
	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/internal/store"
	"github.com/leaf-ebpf/leaf/internal/yamljson"
	"github.com/leaf-ebpf/leaf/packages"
)

func builtin(t *testing.T) *repository.Local {
	t.Helper()
	l, err := repository.OpenFS("builtin", packages.FS)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func pkg(t *testing.T, name string) *repository.Package {
	t.Helper()
	p, err := builtin(t).Resolve(name, "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func nums(vs ...string) []any {
	out := []any{}
	for _, v := range vs {
		out = append(out, json.Number(v))
	}
	return out
}

// portfilter returns a resolved drop-ports attachment and the record and
// observation of it running exactly as desired.
func portfilter(t *testing.T) (*Resolved, *store.Record, *observer.Attachment) {
	t.Helper()
	p := pkg(t, "portfilter")
	prog, err := p.Manifest.Program("")
	if err != nil {
		t.Fatal(err)
	}
	att := desired.Attachment{
		Name:    "drop",
		Package: "portfilter@1.0.0",
		Hook:    desired.Hook{Type: "xdp", Interface: "veth0", Netns: "blue"},
		Params:  map[string]any{"ports": nums("80", "443")},
	}
	r := &Resolved{
		Attachment:  att,
		Package:     p,
		Program:     prog,
		ConstParams: map[string]any{"filter_tcp": true, "filter_udp": true},
		MapParams:   map[string]any{"ports": nums("80", "443")},
	}
	rec := &store.Record{
		Name:        "drop",
		Attachment:  att,
		Package:     store.PackageRef{Name: "portfilter", Version: "1.0.0", Digest: p.Digest, Repository: "builtin"},
		Program:     prog.Name,
		ConstParams: map[string]any{"filter_tcp": true, "filter_udp": true},
		MapParams:   map[string]any{"ports": nums("80", "443")},
		ProgramID:   10,
		LinkID:      20,
	}
	obs := &observer.Attachment{Name: "drop", HasPins: true, ProgramID: 10, LinkID: 20, Attached: true}
	return r, rec, obs
}

func decideOne(t *testing.T, r *Resolved, rec *store.Record, obs *observer.Attachment) *Action {
	t.Helper()
	records := map[string]*store.Record{}
	if rec != nil {
		records[rec.Name] = rec
	}
	observed := map[string]*observer.Attachment{}
	if obs != nil {
		observed[obs.Name] = obs
	}
	plan := Make([]*Resolved{r}, records, observed, nil)
	if len(plan.Actions) != 1 {
		t.Fatalf("plan has %d actions, want 1: %+v", len(plan.Actions), plan.Actions)
	}
	a := plan.Actions[0]
	if a.Name != r.Attachment.Name || a.Desired != r || a.Record != rec || a.Observed != obs {
		t.Errorf("action does not carry its inputs: %+v", a)
	}
	if plan.Changes() != (a.Kind != Keep) {
		t.Errorf("Changes() = %v for %s", plan.Changes(), a.Kind)
	}
	return a
}

func TestMake(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment)
		kind   Kind
		reason string
	}{
		{"equal", nil, Keep, "up to date"},
		{"new", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			return nil, nil
		}, Create, "new attachment"},
		{"new with stray pins", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			return nil, obs
		}, Create, "new attachment"},
		{"program pin gone", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			return rec, nil
		}, Create, "program no longer pinned"},
		{"program ID zero", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			obs.ProgramID = 0
			return rec, obs
		}, Create, "program no longer pinned"},
		{"map param changed", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			r.MapParams["ports"] = nums("80", "443", "8080")
			return rec, obs
		}, UpdateParams, "map parameters changed"},
		// The kernel, not the record, says what runs: an apply killed
		// after swapping pins leaves a program the record does not name.
		{"kernel runs another program", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			obs.ProgramID = 11
			return rec, obs
		}, Replace, "the kernel runs program 11, not the recorded 10"},
		{"program tag differs", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			rec.ProgramTag, obs.Tag = "aaaa", "bbbb"
			return rec, obs
		}, Replace, "program 10 has tag bbbb, not the recorded aaaa"},
		{"link runs another program", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			obs.LinkProgramID = 12
			return rec, obs
		}, Replace, "the link runs program 12, not the pinned program 10"},
		{"link runs another program, detached", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			obs.ProgramID, obs.Attached, obs.Problem = 11, false, "link detached from its hook"
			return rec, obs
		}, Create, "link detached from its hook; the kernel runs program 11, not the recorded 10"},
		{"parameter map differs from the record", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			obs.ParamsDrift = "parameter ports: map ports holds key 1f90 that was not written"
			return rec, obs
		}, UpdateParams, "parameter ports: map ports holds key 1f90"},
		{"map param emptied", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			r.MapParams["ports"] = nums()
			return rec, obs
		}, UpdateParams, "map parameters changed"},
		{"map param order and duplicates", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			r.MapParams["ports"] = nums("443", "80", "443", "80")
			return rec, obs
		}, Keep, "up to date"},
		{"map param other number form", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			r.MapParams["ports"] = []any{float64(443), 80}
			return rec, obs
		}, Keep, "up to date"},
		{"map param missing from record", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			rec.MapParams = nil
			return rec, obs
		}, UpdateParams, "map parameters changed"},
		{"const param changed", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			r.ConstParams["filter_udp"] = false
			return rec, obs
		}, Replace, "load-time parameters changed"},
		{"const and map params changed", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			r.ConstParams["filter_udp"] = false
			r.MapParams["ports"] = nums("22")
			return rec, obs
		}, Replace, "load-time parameters changed"},
		{"digest changed, same version", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			rec.Package.Digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
			return rec, obs
		}, Replace, "package portfilter@1.0.0 content changed (digest sha256:000000000000 → sha256:"},
		{"version changed", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			rec.Package.Version, rec.Package.Digest = "0.9.0", "sha256:1111"
			return rec, obs
		}, Replace, "package portfilter@0.9.0 → portfilter@1.0.0"},
		{"program changed", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			rec.Program = "old_filter"
			return rec, obs
		}, Replace, "program old_filter → port_filter"},
		{"link detached", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			obs.Attached, obs.Problem = false, "link detached"
			return rec, obs
		}, Reattach, "link detached"},
		{"link pin gone", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			obs.LinkID, obs.Attached, obs.Problem = 0, false, "link not pinned"
			return rec, obs
		}, Reattach, "link not pinned"},
		{"link detached, map params changed", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			obs.Attached, obs.Problem = false, "link detached"
			r.MapParams["ports"] = nums("22")
			return rec, obs
		}, Reattach, "link detached"},
		{"link detached, const changed", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			obs.Attached, obs.Problem = false, "link detached"
			r.ConstParams["filter_tcp"] = false
			return rec, obs
		}, Create, "link detached; load-time parameters changed"},
		{"link gone, version changed", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			obs.LinkID, obs.Attached, obs.Problem = 0, false, "link not pinned"
			rec.Package.Version, rec.Package.Digest = "0.9.0", "sha256:1111"
			return rec, obs
		}, Create, "link not pinned; package portfilter@0.9.0 → portfilter@1.0.0"},
		{"interface changed", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			r.Attachment.Hook.Interface = "veth1"
			return rec, obs
		}, Create, "hook changed from xdp/native veth0 (netns blue) to xdp/native veth1 (netns blue)"},
		{"netns changed", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			r.Attachment.Hook.Netns = "red"
			return rec, obs
		}, Create, "hook changed"},
		{"xdp mode changed", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			r.Attachment.Hook.Mode = "generic"
			return rec, obs
		}, Create, "hook changed from xdp/native veth0 (netns blue) to xdp/generic veth0 (netns blue)"},
		{"explicit native mode is the default", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			r.Attachment.Hook.Mode = "native"
			return rec, obs
		}, Keep, "up to date"},
		{"netns name vs path", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			r.Attachment.Hook.Netns = "/var/run/netns/blue"
			return rec, obs
		}, Keep, "up to date"},
		{"hook changed while detached", func(r *Resolved, rec *store.Record, obs *observer.Attachment) (*store.Record, *observer.Attachment) {
			obs.Attached = false
			r.Attachment.Hook.Interface = "veth1"
			return rec, obs
		}, Create, "hook changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, rec, obs := portfilter(t)
			if tc.change != nil {
				rec, obs = tc.change(r, rec, obs)
			}
			a := decideOne(t, r, rec, obs)
			if a.Kind != tc.kind || !strings.HasPrefix(a.Reason, tc.reason) {
				t.Errorf("got %s (%s), want %s (%s…)", a.Kind, a.Reason, tc.kind, tc.reason)
			}
		})
	}
}

// TestMakeTCDirection checks that a TC hook whose direction changes is a new
// hook.
func TestMakeTCDirection(t *testing.T) {
	p := pkg(t, "pktcount")
	prog, err := p.Manifest.Program("count_tc")
	if err != nil {
		t.Fatal(err)
	}
	att := desired.Attachment{Name: "count", Package: "pktcount@1.0.0", Program: "count_tc", Hook: desired.Hook{Type: "tc", Interface: "veth0", Direction: "ingress"}}
	r := &Resolved{Attachment: att, Package: p, Program: prog, ConstParams: map[string]any{}, MapParams: map[string]any{}}
	rec := &store.Record{Name: "count", Attachment: att, Package: store.PackageRef{Name: "pktcount", Version: "1.0.0", Digest: p.Digest}, Program: "count_tc"}
	obs := &observer.Attachment{Name: "count", HasPins: true, ProgramID: 1, LinkID: 2, Attached: true}
	if a := decideOne(t, r, rec, obs); a.Kind != Keep {
		t.Fatalf("unchanged TC hook: %s (%s)", a.Kind, a.Reason)
	}
	r.Attachment.Hook.Direction = "egress"
	if a := decideOne(t, r, rec, obs); a.Kind != Create || !strings.Contains(a.Reason, "tc/ingress veth0 to tc/egress veth0") {
		t.Errorf("direction change: %s (%s)", a.Kind, a.Reason)
	}
}

func TestMakeDeletes(t *testing.T) {
	r, rec, obs := portfilter(t)
	records := map[string]*store.Record{
		"drop":  rec,
		"old-b": {Name: "old-b"},
		"old-a": {Name: "old-a"},
	}
	observed := map[string]*observer.Attachment{
		"drop":        obs,
		"old-a":       {Name: "old-a", HasPins: true, ProgramID: 3},
		"stray":       {Name: "stray", HasPins: true},
		"nothing":     {Name: "nothing"}, // no pins, no record: nothing to do
		"old-b":       {Name: "old-b"},   // record without pins: still deleted
		"a-stray-too": {Name: "a-stray-too", HasPins: true, ProgramID: 9, LinkID: 9, Attached: true},
	}
	plan := Make([]*Resolved{r}, records, observed, nil)
	var got []string
	for _, a := range plan.Actions {
		got = append(got, fmt.Sprintf("%s:%s", a.Name, a.Kind))
	}
	want := "drop:keep a-stray-too:delete old-a:delete old-b:delete stray:delete"
	if strings.Join(got, " ") != want {
		t.Fatalf("plan = %v, want %s", got, want)
	}
	if !plan.Changes() {
		t.Error("Changes() = false with deletes")
	}
	byName := map[string]*Action{}
	for _, a := range plan.Actions {
		byName[a.Name] = a
	}
	for name, reason := range map[string]string{
		"old-a":       "no longer desired",
		"old-b":       "no longer desired",
		"stray":       "stale pins of an attachment leaf has no record of",
		"a-stray-too": "stale pins of an attachment leaf has no record of",
	} {
		a := byName[name]
		if a.Reason != reason {
			t.Errorf("%s: reason %q, want %q", name, a.Reason, reason)
		}
		if a.Desired != nil {
			t.Errorf("%s: delete carries a desired attachment", name)
		}
		if a.Record != records[name] || a.Observed != observed[name] {
			t.Errorf("%s: delete does not carry its record and observation", name)
		}
	}
}

func TestMakeEmpty(t *testing.T) {
	plan := Make(nil, nil, nil, nil)
	if len(plan.Actions) != 0 || plan.Changes() {
		t.Errorf("empty plan: %+v", plan.Actions)
	}
	// Everything desired away.
	_, rec, obs := portfilter(t)
	plan = Make(nil, map[string]*store.Record{"drop": rec}, map[string]*observer.Attachment{"drop": obs}, nil)
	if len(plan.Actions) != 1 || plan.Actions[0].Kind != Delete || plan.Actions[0].Reason != "no longer desired" {
		t.Errorf("plan = %+v", plan.Actions[0])
	}
}

// TestMakeOrder checks that desired actions come in name order, whatever
// the document's order, and before deletes.
func TestMakeOrder(t *testing.T) {
	var want []*Resolved
	for _, n := range []string{"c", "a", "b"} {
		r, _, _ := portfilter(t)
		r.Attachment.Name = n
		want = append(want, r)
	}
	plan := Make(want, map[string]*store.Record{"0-old": {Name: "0-old"}}, nil, nil)
	var got []string
	for _, a := range plan.Actions {
		got = append(got, a.Name+":"+string(a.Kind))
	}
	if strings.Join(got, " ") != "a:create b:create c:create 0-old:delete" {
		t.Errorf("plan = %v", got)
	}
}

func TestParamsEqual(t *testing.T) {
	p := pkg(t, "portfilter")
	for _, tc := range []struct {
		name string
		a, b map[string]any
		want bool
	}{
		{"both empty", nil, map[string]any{}, true},
		{"same list", map[string]any{"ports": nums("1", "2")}, map[string]any{"ports": nums("1", "2")}, true},
		{"list as set", map[string]any{"ports": nums("2", "1", "2")}, map[string]any{"ports": nums("1", "2")}, true},
		{"list differs", map[string]any{"ports": nums("1", "3")}, map[string]any{"ports": nums("1", "2")}, false},
		{"list subset", map[string]any{"ports": nums("1")}, map[string]any{"ports": nums("1", "2")}, false},
		{"empty lists", map[string]any{"ports": []any{}}, map[string]any{"ports": []any{}}, true},
		{"number forms", map[string]any{"ports": []any{json.Number("80"), float64(443), int(22)}}, map[string]any{"ports": []any{int64(22), uint64(80), json.Number("443")}}, true},
		{"bool", map[string]any{"filter_tcp": true}, map[string]any{"filter_tcp": true}, true},
		{"bool differs", map[string]any{"filter_tcp": true}, map[string]any{"filter_tcp": false}, false},
		{"different names", map[string]any{"filter_tcp": true}, map[string]any{"filter_udp": true}, false},
		{"different lengths", map[string]any{"filter_tcp": true}, map[string]any{"filter_tcp": true, "filter_udp": true}, false},
		{"undeclared param", map[string]any{"bogus": true}, map[string]any{"bogus": true}, false},
		{"unencodable", map[string]any{"ports": "80"}, map[string]any{"ports": "80"}, false},
		{"one unencodable", map[string]any{"ports": nums("70000")}, map[string]any{"ports": nums("4464")}, false},
	} {
		if got := paramsEqual(p, tc.a, tc.b); got != tc.want {
			t.Errorf("%s: paramsEqual = %v, want %v", tc.name, got, tc.want)
		}
		if got := paramsEqual(p, tc.b, tc.a); got != tc.want {
			t.Errorf("%s (swapped): paramsEqual = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestParamsEqualStoredRecord checks the comparison against a record that
// went through the state store's JSON round trip, as after a restart.
func TestParamsEqualStoredRecord(t *testing.T) {
	r, rec, obs := portfilter(t)
	r.MapParams["ports"] = []any{float64(443), float64(80)}
	s, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Commit(desired.Empty(), map[string]*store.Record{"drop": rec}); err != nil {
		t.Fatal(err)
	}
	records, err := s.Records()
	if err != nil {
		t.Fatal(err)
	}
	plan := Make([]*Resolved{r}, records, map[string]*observer.Attachment{"drop": obs}, nil)
	if a := plan.Actions[0]; a.Kind != Keep {
		t.Errorf("after a store round trip: %s (%s)", a.Kind, a.Reason)
	}
}

func TestShort(t *testing.T) {
	if got := short("sha256:0123456789abcdef"); got != "sha256:0123456789ab" {
		t.Errorf("short = %q", got)
	}
	if got := short("abc"); got != "abc" {
		t.Errorf("short = %q", got)
	}
}

// --- Resolve ---

// ensureTracefs makes /sys/kernel/tracing/events available or skips.
func ensureTracefs(t *testing.T) {
	t.Helper()
	events := filepath.Join(hook.TracefsRoot, "events")
	if _, err := os.Stat(events); err == nil {
		return
	}
	if os.Geteuid() != 0 {
		t.Skipf("%s is missing and mounting tracefs needs root", events)
	}
	if err := syscall.Mount("tracefs", hook.TracefsRoot, "tracefs", 0, ""); err != nil {
		t.Skipf("mount tracefs on %s: %v", hook.TracefsRoot, err)
	}
	if _, err := os.Stat(filepath.Join(events, "sched", "sched_process_exec")); err != nil {
		t.Skipf("tracepoint sched/sched_process_exec missing: %v", err)
	}
}

func parse(t *testing.T, doc string) *desired.State {
	t.Helper()
	st, err := desired.Parse([]byte("apiVersion: leaf.dev/v1alpha1\nkind: HostState\nspec:\n  attachments:\n" + doc))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

const execAtt = `
    - name: %s
      package: execcount@1.0.0
      hook: {type: tracepoint, tracepoint: sched/sched_process_exec}
`

func TestResolveTracepoint(t *testing.T) {
	ensureTracefs(t)
	st := parse(t, fmt.Sprintf(execAtt, "execs-b")+fmt.Sprintf(execAtt, "execs-a")+`
    - name: execs-c
      package: execcount@1.0.0
      program: count_exec
      params: {only_uid: 0}
      hook: {type: tracepoint, tracepoint: sched/sched_process_exec}
`)
	got, err := Resolve(st, repository.Set{builtin(t)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Attachment.Name != "execs-a" || got[1].Attachment.Name != "execs-b" || got[2].Attachment.Name != "execs-c" {
		t.Fatalf("Resolve returned %d attachments, not sorted by name", len(got))
	}
	a := got[0]
	if a.Program.Name != "count_exec" || a.Package.Ref() != "execcount@1.0.0" || a.Spec == nil || a.Spec.Programs["count_exec"] == nil {
		t.Errorf("resolved %+v", a)
	}
	if a.Target == nil || a.Target.Hook.Tracepoint != "sched/sched_process_exec" {
		t.Errorf("target %+v", a.Target)
	}
	// The default applies when no value is given.
	if v := a.ConstParams["only_uid"]; v != json.Number("4294967295") {
		t.Errorf("only_uid = %#v, want the default", v)
	}
	if len(a.MapParams) != 0 {
		t.Errorf("map params %v", a.MapParams)
	}
	if v := got[2].ConstParams["only_uid"]; v != json.Number("0") {
		t.Errorf("given only_uid = %#v", v)
	}
}

// TestResolveErrors checks errors found before the hook is looked up on
// this host; each names its attachment and field.
func TestResolveErrors(t *testing.T) {
	for _, tc := range []struct {
		name, doc, field, msg string
	}{
		{"unknown package", `
    - name: x
      package: nope@1.0.0
      hook: {type: tracepoint, tracepoint: sched/sched_process_exec}
`, "package", `no package "nope"`},
		{"unknown version", `
    - name: x
      package: execcount@9.0.0
      hook: {type: tracepoint, tracepoint: sched/sched_process_exec}
`, "package", `no version "9.0.0" in repository builtin (it has: 1.0.0)`},
		{"unknown program", `
    - name: x
      package: execcount@1.0.0
      program: nope
      hook: {type: tracepoint, tracepoint: sched/sched_process_exec}
`, "program", `has no program "nope"`},
		{"ambiguous program", `
    - name: x
      package: pktcount@1.0.0
      hook: {type: xdp, interface: lo}
`, "program", "has 3 programs; name one of: count_xdp, count_tc, count_cgroup_skb"},
		{"program does not fit hook", `
    - name: x
      package: portfilter@1.0.0
      hook: {type: tc, interface: lo, direction: ingress}
`, "hook.type", "program port_filter of portfilter@1.0.0 (type xdp) cannot attach to a tc hook"},
		{"kprobe program on tracepoint", `
    - name: x
      package: callcount@1.0.0
      program: count_kprobe
      hook: {type: tracepoint, tracepoint: sched/sched_process_exec}
`, "hook.type", "cannot attach to a tracepoint hook"},
		{"unknown param", `
    - name: x
      package: execcount@1.0.0
      params: {only_gid: 1}
      hook: {type: tracepoint, tracepoint: sched/sched_process_exec}
`, "params.only_gid", `package execcount@1.0.0 has no parameter "only_gid"`},
		{"param out of range", `
    - name: x
      package: execcount@1.0.0
      params: {only_uid: -1}
      hook: {type: tracepoint, tracepoint: sched/sched_process_exec}
`, "params.only_uid", "-1 out of range for u32"},
		{"param wrong type", `
    - name: x
      package: execcount@1.0.0
      params: {only_uid: "root"}
      hook: {type: tracepoint, tracepoint: sched/sched_process_exec}
`, "params.only_uid", `expected u32, got string "root"`},
		{"list param scalar", `
    - name: x
      package: portfilter@1.0.0
      params: {ports: 80}
      hook: {type: xdp, interface: lo}
`, "params.ports", "expected a list of u16, got number 80"},
		{"list param item", `
    - name: x
      package: portfilter@1.0.0
      params: {ports: [80, 65536]}
      hook: {type: xdp, interface: lo}
`, "params.ports", "item 1: 65536 out of range for u16"},
		{"bool param", `
    - name: x
      package: portfilter@1.0.0
      params: {filter_tcp: 1}
      hook: {type: xdp, interface: lo}
`, "params.filter_tcp", "expected bool, got number 1"},
		{"missing interface", `
    - name: x
      package: portfilter@1.0.0
      hook: {type: xdp, interface: leaf-no-such0}
`, "hook.interface", "leaf-no-such0"},
		{"missing netns", `
    - name: x
      package: portfilter@1.0.0
      hook: {type: xdp, interface: lo, netns: leaf-no-such-netns}
`, "hook.netns", "/var/run/netns/leaf-no-such-netns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := parse(t, tc.doc)
			got, err := Resolve(st, repository.Set{builtin(t)}, Options{})
			if err == nil {
				t.Fatalf("Resolve accepted it: %+v", got)
			}
			if got != nil {
				t.Error("Resolve returned attachments with an error")
			}
			var errs desired.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T %v is not desired.Errors", err, err)
			}
			for _, e := range errs {
				if e.Attachment == "x" && e.Field == tc.field && strings.Contains(e.Message, tc.msg) {
					return
				}
			}
			t.Errorf("want attachment x field %s containing %q, got %#v", tc.field, tc.msg, errs)
		})
	}
}

// TestResolveCollectsAll checks that every attachment's problems are
// reported together.
func TestResolveCollectsAll(t *testing.T) {
	st := parse(t, `
    - name: a
      package: nope@1.0.0
      hook: {type: tracepoint, tracepoint: sched/sched_process_exec}
    - name: b
      package: portfilter@1.0.0
      params: {ports: [-1], bogus: 1, filter_udp: 3}
      hook: {type: xdp, interface: leaf-no-such0}
`)
	_, err := Resolve(st, repository.Set{builtin(t)}, Options{})
	var errs desired.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v", err)
	}
	want := map[string]bool{"a/package": false, "b/params.ports": false, "b/params.bogus": false, "b/params.filter_udp": false, "b/hook.interface": false}
	for _, e := range errs {
		want[e.Attachment+"/"+e.Field] = true
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("no error for %s in %v", k, errs)
		}
	}
}

// paramRepo copies execcount into a temp repository with extra params
// lines added to its manifest.
func paramRepo(t *testing.T, params string) repository.Set {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "execcount")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"leaf.yaml", "execcount.bpf.o", "README.md"} {
		data, err := os.ReadFile(filepath.Join("../../packages/execcount", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "leaf.yaml" {
			data = append(data, []byte(params)...)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, err := repository.OpenDir(filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	return repository.Set{l}
}

func TestResolveParamTargets(t *testing.T) {
	ensureTracefs(t)
	many := make([]string, 4097)
	for i := range many {
		many[i] = fmt.Sprint(i)
	}
	for _, tc := range []struct {
		name, params, values, msg string
	}{
		{"value param", "  - {name: limit, type: u64, default: 5, map: {name: execs, as: value, key: 1}}\n", "", ""},
		{"keys param", "  - {name: uids, type: list<u32>, map: {name: execs, as: keys}}\n", "{uids: [0, 1000]}", ""},
		{"keys param, no default", "  - {name: uids, type: list<u32>, map: {name: execs, as: keys}}\n", "", ""},
		{"required", "  - {name: limit, type: u64, map: {name: execs, as: value}}\n", "", "is required (type u64, no default)"},
		{"no such map", "  - {name: limit, type: u64, default: 1, map: {name: nope, as: value}}\n", "", `package execcount@1.0.0: object has no map "nope"`},
		{"value size", "  - {name: limit, type: u32, default: 1, map: {name: execs, as: value}}\n", "", `map "execs" has 8-byte values, parameter type u32 is 4 bytes`},
		{"key size", "  - {name: uids, type: list<u16>, map: {name: execs, as: keys}}\n", "", `map "execs" has 4-byte keys, parameter type list<u16> has 2-byte items`},
		{"too many keys", "  - {name: uids, type: list<u32>, map: {name: execs, as: keys}}\n", "{uids: [" + strings.Join(many, ", ") + "]}", `4097 items do not fit map "execs" (max 4096 entries)`},
		{"no such const", "  - {name: other, type: u32, default: 1, const: nope}\n", "", `object has no variable "nope"`},
		{"const size", "  - {name: other, type: u64, default: 1, const: only_uid}\n", "", `variable "only_uid" is 4 bytes, parameter type u64 is 8`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repos := paramRepo(t, tc.params)
			doc := fmt.Sprintf(execAtt, "x")
			if tc.values != "" {
				doc = strings.Replace(doc, "      hook:", "      params: "+tc.values+"\n      hook:", 1)
			}
			got, err := Resolve(parse(t, doc), repos, Options{})
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(got[0].MapParams) != 1 {
					t.Errorf("map params %v", got[0].MapParams)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %q", err, tc.msg)
			}
			var errs desired.Errors
			if !errors.As(err, &errs) || errs[0].Attachment != "x" || !strings.HasPrefix(errs[0].Field, "params.") {
				t.Errorf("error does not name attachment and param: %#v", err)
			}
		})
	}
}

// TestResolveMetricMaps: declared metrics are checked against the
// program's maps when an attachment resolves, with errors naming the
// metric's field.
func TestResolveMetricMaps(t *testing.T) {
	ensureTracefs(t)
	for _, tc := range []struct{ name, metrics, msg string }{
		{"good", "  - {name: n_total, help: h, type: counter, map: execs, byKey: uid}\n", ""},
		{"no such map", "  - {name: n_total, help: h, type: counter, map: nope}\n", `metrics[0].map: no object of the package has a map "nope"`},
		{"key too wide", "  - {name: g, help: h, type: gauge, map: execs, key: 4294967296}\n", "metrics[0].key: 4294967296 does not fit map execs's 4-byte key"},
		{"histogram", "  - {name: h, help: h, type: histogram, map: execs, buckets: [1, 2]}\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repos := paramRepo(t, "")
			pkg, _ := repos.Resolve("execcount", "1.0.0")
			m := *pkg.Manifest
			var extra []manifest.Metric
			if err := yamljson.Decode([]byte(tc.metrics), &extra); err != nil {
				t.Fatal(err)
			}
			m.Metrics = extra
			*pkg.Manifest = m
			_, err := Resolve(parse(t, fmt.Sprintf(execAtt, "x")), repos, Options{})
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %q", err, tc.msg)
			}
		})
	}
}

// TestMakeStrayHook checks that a hook link pinned by an apply that was
// killed before it recorded anything is planned for removal, and that a
// new chain on a hook whose link is pinned but unrecorded plans without a
// panic (the records[old[0]] of an empty old chain).
func TestMakeStrayHook(t *testing.T) {
	hooks := map[string]*observer.Hook{"xdp-veth9-00000000": {ID: "xdp-veth9-00000000", LinkID: 5, ProgramID: 6, Attached: true}}
	plan := Make(nil, nil, nil, hooks)
	if len(plan.Chains) != 1 || plan.Chains[0].Kind != ChainRemove || plan.Chains[0].HookID != "xdp-veth9-00000000" {
		t.Fatalf("stray hook: chains %+v, want one removal", plan.Chains)
	}
	if !plan.Changes() {
		t.Error("removing a stray hook counts as no change")
	}

	r, _, _ := portfilter(t)
	r.Chain = &ChainConfig{Priority: 1, ProceedOn: []int32{2}, Mode: "rewrite"}
	key := r.Attachment.Hook.Key()
	id := bpffs.HookID(key)
	hooks = map[string]*observer.Hook{id: {ID: id, LinkID: 5, ProgramID: 6, Attached: true}}
	plan = Make([]*Resolved{r}, nil, nil, hooks)
	if len(plan.Chains) != 1 {
		t.Fatalf("chains %+v, want one", plan.Chains)
	}
	cp := plan.Chains[0]
	if cp.Kind != ChainSwitch || cp.NewLink || cp.Fresh != 1 {
		t.Errorf("new chain over an unrecorded attached link: kind %s newLink %v fresh %d, want a switch of the pinned link with one fresh member", cp.Kind, cp.NewLink, cp.Fresh)
	}
}
