package desired

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

const header = "apiVersion: leaf.dev/v1alpha1\nkind: HostState\n"

// doc builds a document with the given attachments (YAML list items).
func doc(attachments ...string) []byte {
	return []byte(header + "spec:\n  attachments:\n" + strings.Join(attachments, ""))
}

const (
	xdpAtt = `
    - name: drop
      package: portfilter@1.0.0
      hook: {type: xdp, interface: veth0}
      params: {ports: [80]}
`
	tcAtt = `
    - name: count
      package: pktcount@1.0.0
      program: count_tc
      hook: {type: tc, interface: veth0, direction: egress}
`
)

func parseErrors(t *testing.T, data []byte) Errors {
	t.Helper()
	st, err := Parse(data)
	if err == nil {
		t.Fatalf("Parse accepted:\n%s\nas %+v", data, st)
	}
	if st != nil {
		t.Errorf("Parse returned a state with an error")
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %T %v is not desired.Errors", err, err)
	}
	if len(errs) == 0 {
		t.Fatal("empty Errors returned as an error")
	}
	return errs
}

// hasError reports whether errs has an error for attachment and field
// whose message contains msg.
func hasError(errs Errors, attachment, field, msg string) bool {
	for _, e := range errs {
		if e.Attachment == attachment && e.Field == field && strings.Contains(e.Message, msg) {
			return true
		}
	}
	return false
}

func wantError(t *testing.T, data []byte, attachment, field, msg string) Errors {
	t.Helper()
	errs := parseErrors(t, data)
	if !hasError(errs, attachment, field, msg) {
		t.Errorf("want error attachment=%q field=%q containing %q; got:", attachment, field, msg)
		for _, e := range errs {
			t.Errorf("  %#v", e)
		}
	}
	return errs
}

func TestParseQuickstart(t *testing.T) {
	data, err := os.ReadFile("../../examples/quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if st.Metadata.Name != "quickstart" {
		t.Errorf("metadata.name = %q", st.Metadata.Name)
	}
	if got, want := st.Names(), []string{"count-egress", "count-execs", "count-ingress", "drop-ports"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	a := st.Attachment("drop-ports")
	if a == nil || a.Package != "portfilter@1.0.0" || a.Hook.Type != "xdp" || a.Hook.Interface != "veth-b" || a.Hook.Netns != "leaf-demo-b" {
		t.Fatalf("drop-ports = %+v", a)
	}
	ports, ok := a.Params["ports"].([]any)
	if !ok || len(ports) != 2 || ports[0] != json.Number("8080") || ports[1] != json.Number("9999") {
		t.Errorf("ports = %#v", a.Params["ports"])
	}
	if a.PriorityOrDefault() != 20 {
		t.Errorf("priority = %d, want 20", a.PriorityOrDefault())
	}
	if st.Attachment("count-egress").PriorityOrDefault() != DefaultPriority {
		t.Errorf("count-egress priority = %d, want the default", st.Attachment("count-egress").PriorityOrDefault())
	}
	if st.Attachment("nope") != nil {
		t.Error("Attachment(nope) is not nil")
	}
	// Attachment returns a pointer into the state.
	st.Attachment("count-execs").Program = "changed"
	if st.Attachment("count-execs").Program != "changed" {
		t.Error("Attachment returned a copy")
	}
}

func TestParseJSON(t *testing.T) {
	data := `{"apiVersion":"leaf.dev/v1alpha1","kind":"HostState","spec":{"attachments":[
	 {"name":"a","package":"execcount@1.0.0","hook":{"type":"tracepoint","tracepoint":"sched/sched_process_exec"},
	  "params":{"only_uid":18446744073709551615}},
	 {"name":"b","package":"pktcount@1.0.0","program":"count_xdp","hook":{"type":"xdp","interface":"eth0"},"priority":0}]}}`
	st, err := Parse([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	a := st.Spec.Attachments[0]
	if a.Params["only_uid"] != json.Number("18446744073709551615") {
		t.Errorf("64-bit value lost: %#v", a.Params["only_uid"])
	}
	// An explicit 0 is not the default.
	if b := st.Spec.Attachments[1]; b.PriorityOrDefault() != 0 {
		t.Errorf("priority = %d, want 0", b.PriorityOrDefault())
	}
}

func TestParseEmptyAttachments(t *testing.T) {
	for _, in := range []string{header, header + "spec: {}\n", header + "spec:\n  attachments: []\n"} {
		st, err := Parse([]byte(in))
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if len(st.Spec.Attachments) != 0 || len(st.Names()) != 0 {
			t.Errorf("Parse(%q) = %+v", in, st)
		}
	}
	if err := Empty().Validate(); err != nil {
		t.Errorf("Empty() does not validate: %v", err)
	}
}

func TestParseDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "document is empty"},
		{"blank", "  \n\n", "document is empty"},
		{"malformed YAML", header + "spec: [", "malformed"},
		{"tab indentation", header + "spec:\n\tattachments: []\n", "malformed"},
		{"malformed JSON", `{"apiVersion": "leaf.dev/v1alpha1",`, "malformed"},
		{"unknown top-level field", header + "specs: {}\n", `unknown field "specs"`},
		{"unknown attachment field", string(doc(strings.Replace(xdpAtt, "params:", "parms:", 1))), `unknown field "parms"`},
		{"unknown hook field", string(doc(strings.Replace(xdpAtt, "interface:", "iface:", 1))), `unknown field "iface"`},
		{"duplicate key", header + "kind: HostState\n", "malformed"},
		{"duplicate attachment key", string(doc(strings.Replace(xdpAtt, "      package:", "      name: again\n      package:", 1))), "malformed"},
		{"wrong type", header + "spec:\n  attachments: {}\n", "expected"},
		{"priority not int", string(doc(strings.Replace(xdpAtt, "params:", "priority: high\n      params:", 1))), "priority"},
		{"pid not int", string(doc(`
    - name: up
      package: callcount@1.0.0
      hook: {type: uprobe, binary: /bin/sh, function: main, pid: "1"}
`)), "pid"},
		{"scalar document", "hello", "expected"},
		{"list document", "[1, 2]", "expected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := parseErrors(t, []byte(tc.in))
			if len(errs) != 1 || !strings.Contains(errs[0].Message, tc.want) {
				t.Errorf("errors %#v, want one containing %q", errs, tc.want)
			}
			if !strings.Contains(errs.Error(), tc.want) {
				t.Errorf("Error() = %q does not contain %q", errs.Error(), tc.want)
			}
		})
	}
}

func TestParseHeader(t *testing.T) {
	wantError(t, []byte("apiVersion: leaf.dev/v1\nkind: HostState\n"), "", "apiVersion", `must be "leaf.dev/v1alpha1", got "leaf.dev/v1"`)
	wantError(t, []byte("kind: HostState\n"), "", "apiVersion", `got ""`)
	wantError(t, []byte("apiVersion: leaf.dev/v1alpha1\nkind: Package\n"), "", "kind", `must be "HostState", got "Package"`)
	errs := parseErrors(t, []byte("metadata: {name: x}\n"))
	if !hasError(errs, "", "apiVersion", "") || !hasError(errs, "", "kind", "") {
		t.Errorf("want both apiVersion and kind errors, got %v", errs)
	}
}

func TestAttachmentName(t *testing.T) {
	for _, name := range []string{"a", "drop-ports", "x1", strings.Repeat("a", 63), `"0"`} {
		in := doc(strings.Replace(xdpAtt, "name: drop", "name: "+name, 1))
		if _, err := Parse(in); err != nil {
			t.Errorf("name %q: %v", name, err)
		}
	}
	for _, name := range []string{"Drop", "drop_ports", "-drop", "drop-", strings.Repeat("a", 64), "a.b", "a/b", `""`, "a b"} {
		in := doc(strings.Replace(xdpAtt, "name: drop", "name: "+name, 1))
		errs := parseErrors(t, in)
		label := strings.Trim(name, `"`)
		if label == "" {
			label = "spec.attachments[0]"
		}
		if !hasError(errs, label, "name", "is not a valid name") {
			t.Errorf("name %q: %v", name, errs)
		}
	}
}

func TestMissingNameLabel(t *testing.T) {
	errs := wantError(t, doc(tcAtt, `
    - package: pktcount@1.0.0
      hook: {type: tc, interface: veth0, direction: sideways}
`), "spec.attachments[1]", "name", "is not a valid name")
	// Other errors of the unnamed attachment carry the same label.
	if !hasError(errs, "spec.attachments[1]", "hook.direction", `got "sideways"`) {
		t.Errorf("hook error not labelled by index: %v", errs)
	}
}

func TestDuplicateNames(t *testing.T) {
	second := strings.Replace(tcAtt, "name: count", "name: drop", 1)
	errs := wantError(t, doc(xdpAtt, second), "drop", "name", "duplicate attachment name")
	if len(errs) != 1 {
		t.Errorf("want exactly one error, got %v", errs)
	}
}

func TestPackageRef(t *testing.T) {
	for _, tc := range []struct {
		ref, name, version string
		ok                 bool
	}{
		{"portfilter@1.0.0", "portfilter", "1.0.0", true},
		{"a@b", "a", "b", true},
		{"portfilter", "", "", false},
		{"portfilter@", "", "", false},
		{"@1.0.0", "", "", false},
		{"@", "", "", false},
		{"", "", "", false},
	} {
		name, version, err := ParseRef(tc.ref)
		if tc.ok != (err == nil) || name != tc.name || version != tc.version {
			t.Errorf("ParseRef(%q) = %q, %q, %v", tc.ref, name, version, err)
		}
		if err != nil && !strings.Contains(err.Error(), "must be name@version") {
			t.Errorf("ParseRef(%q) error %q", tc.ref, err)
		}
	}
	for _, ref := range []string{"portfilter", `"portfilter@"`, `"@1.0.0"`, `""`} {
		wantError(t, doc(strings.Replace(xdpAtt, "portfilter@1.0.0", ref, 1)), "drop", "package", "must be name@version")
	}
}

func TestPriority(t *testing.T) {
	for _, p := range []string{"0", "1000", "50"} {
		if _, err := Parse(doc(strings.Replace(xdpAtt, "params:", "priority: "+p+"\n      params:", 1))); err != nil {
			t.Errorf("priority %s: %v", p, err)
		}
	}
	for _, p := range []string{"-1", "1001"} {
		wantError(t, doc(strings.Replace(xdpAtt, "params:", "priority: "+p+"\n      params:", 1)), "drop", "priority", "must be between 0 and 1000, got "+p)
	}
}

func TestProceedOn(t *testing.T) {
	if _, err := Parse(doc(strings.Replace(xdpAtt, "params:", "proceedOn: [XDP_PASS]\n      params:", 1))); err != nil {
		t.Errorf("proceedOn on xdp: %v", err)
	}
	if _, err := Parse(doc(strings.Replace(tcAtt, "hook:", "proceedOn: [TC_ACT_OK]\n      hook:", 1))); err != nil {
		t.Errorf("proceedOn on tc: %v", err)
	}
	wantError(t, doc(`
    - name: execs
      package: execcount@1.0.0
      proceedOn: [XDP_PASS]
      hook: {type: tracepoint, tracepoint: sched/sched_process_exec}
`), "execs", "proceedOn", "only applies to xdp and tc hooks")
}

// TestHooks checks every hook type's required fields and the fields it
// refuses.
func TestHooks(t *testing.T) {
	type tc struct {
		hook  string // the YAML flow mapping of the hook
		field string // "" when the hook is valid
		msg   string
	}
	for _, c := range []tc{
		// xdp
		{`{type: xdp, interface: eth0}`, "", ""},
		{`{type: xdp, interface: eth0, mode: generic}`, "", ""},
		{`{type: xdp, interface: eth0, mode: native, netns: blue}`, "", ""},
		{`{type: xdp, interface: eth0, netns: /var/run/netns/blue}`, "", ""},
		{`{type: xdp, interface: eth0, netns: /proc/1/ns/net}`, "", ""},
		{`{type: xdp}`, "hook.interface", "is required for xdp hooks"},
		{`{type: xdp, interface: eth0, mode: offload}`, "hook.mode", `must be native or generic, got "offload"`},
		{`{type: xdp, interface: eth0, netns: run/netns/blue}`, "hook.netns", `"run/netns/blue" must be a name or an absolute path`},
		{`{type: xdp, interface: eth0, direction: ingress}`, "hook.direction", "does not apply to xdp hooks (they take: interface, netns, mode, replaceForeign, secure, allowForeign, chainMode)"},
		{`{type: xdp, interface: eth0, tracepoint: a/b}`, "hook.tracepoint", "does not apply to xdp hooks"},
		{`{type: xdp, interface: eth0, pid: 3}`, "hook.pid", "does not apply to xdp hooks"},
		// Interface names and namespaces are checked before any lookup.
		{`{type: xdp, interface: "eth0\0"}`, "hook.interface", `"eth0\x00" holds a NUL or control character`},
		{`{type: xdp, interface: "eth\t0"}`, "hook.interface", "holds a NUL or control character"},
		{`{type: xdp, interface: a-sixteen-bytes!}`, "hook.interface", "is longer than the kernel's 15 bytes for an interface name"},
		{`{type: xdp, interface: "eth0:1"}`, "hook.interface", "is not an interface name"},
		{`{type: xdp, interface: ..}`, "hook.interface", "is not an interface name"},
		{`{type: xdp, interface: eth0, netns: "blue\0"}`, "hook.netns", "holds a NUL or control character"},
		{`{type: xdp, interface: eth0, netns: /var/run/netns/../../etc}`, "hook.netns", "must be a clean absolute path"},
		{`{type: xdp, interface: eth0, netns: ..}`, "hook.netns", "is not a namespace name"},
		{`{type: tracepoint, tracepoint: "sched/a\x01"}`, "hook.tracepoint", "holds a NUL or control character"},
		// tc
		{`{type: tc, interface: eth0, direction: ingress}`, "", ""},
		{`{type: tc, interface: eth0, direction: egress, netns: blue}`, "", ""},
		{`{type: tc, interface: eth0}`, "hook.direction", `must be ingress or egress, got ""`},
		{`{type: tc, interface: eth0, direction: both}`, "hook.direction", `got "both"`},
		{`{type: tc, direction: ingress}`, "hook.interface", "is required for tc hooks"},
		{`{type: tc, interface: eth0, direction: ingress, mode: generic}`, "hook.mode", "does not apply to tc hooks (they take: interface, netns, direction, secure, allowForeign, chainMode)"},
		{`{type: tc, interface: eth0, direction: ingress, cgroup: /sys/fs/cgroup}`, "hook.cgroup", "does not apply to tc hooks"},
		// tracepoint
		{`{type: tracepoint, tracepoint: sched/sched_process_exec}`, "", ""},
		{`{type: tracepoint}`, "hook.tracepoint", `must be group/name, for example sched/sched_process_exec, got ""`},
		{`{type: tracepoint, tracepoint: sched_process_exec}`, "hook.tracepoint", "must be group/name"},
		{`{type: tracepoint, tracepoint: /sched_process_exec}`, "hook.tracepoint", "must be group/name"},
		{`{type: tracepoint, tracepoint: sched/}`, "hook.tracepoint", "must be group/name"},
		{`{type: tracepoint, tracepoint: sched/a/b}`, "hook.tracepoint", "must be group/name"},
		{`{type: tracepoint, tracepoint: ../x}`, "hook.tracepoint", "must be group/name"},
		{`{type: tracepoint, tracepoint: sched/..}`, "hook.tracepoint", "must be group/name"},
		{`{type: tracepoint, tracepoint: a/b, interface: eth0}`, "hook.interface", "does not apply to tracepoint hooks (they take: tracepoint)"},
		{`{type: tracepoint, tracepoint: a/b, function: f}`, "hook.function", "does not apply to tracepoint hooks"},
		// kprobe
		{`{type: kprobe, function: do_sys_openat2}`, "", ""},
		{`{type: kprobe}`, "hook.function", "is required for kprobe hooks"},
		{`{type: kprobe, function: f, binary: /bin/sh}`, "hook.binary", "does not apply to kprobe hooks (they take: function)"},
		// uprobe
		{`{type: uprobe, binary: /bin/bash, function: readline}`, "", ""},
		{`{type: uprobe, binary: /bin/bash, function: readline, pid: 42}`, "", ""},
		{`{type: uprobe, function: readline}`, "hook.binary", `must be an absolute path, got ""`},
		{`{type: uprobe, binary: bash, function: readline}`, "hook.binary", `must be an absolute path, got "bash"`},
		{`{type: uprobe, binary: /bin/bash}`, "hook.function", "is required for uprobe hooks"},
		{`{type: uprobe, binary: /bin/bash, function: f, pid: -1}`, "hook.pid", "must not be negative"},
		{`{type: uprobe, binary: /bin/bash, function: f, netns: x}`, "hook.netns", "does not apply to uprobe hooks (they take: binary, function, pid)"},
		// cgroup_skb
		{`{type: cgroup_skb, cgroup: /sys/fs/cgroup, direction: ingress}`, "", ""},
		{`{type: cgroup_skb, cgroup: /sys/fs/cgroup/x, direction: egress}`, "", ""},
		{`{type: cgroup_skb, cgroup: /sys/fs/cgroup}`, "hook.direction", `must be ingress or egress, got ""`},
		{`{type: cgroup_skb, direction: ingress}`, "hook.cgroup", `must be an absolute path to a cgroup v2 directory, got ""`},
		{`{type: cgroup_skb, cgroup: sys/fs/cgroup, direction: ingress}`, "hook.cgroup", "must be an absolute path"},
		{`{type: cgroup_skb, cgroup: /sys/fs/cgroup, direction: ingress, interface: eth0}`, "hook.interface", "does not apply to cgroup_skb hooks (they take: cgroup, direction)"},
		// secure mode and its allowlist
		{`{type: xdp, interface: eth0, secure: true, allowForeign: [{name: xdp_dispatcher}, {tag: 0123456789abcdef}, {id: 7}]}`, "", ""},
		{`{type: tc, direction: ingress, interface: eth0, secure: true}`, "", ""},
		{`{type: tracepoint, tracepoint: a/b, secure: true}`, "hook.secure", "does not apply to tracepoint hooks"},
		{`{type: xdp, interface: eth0, allowForeign: [{name: a, id: 3}]}`, "hook.allowForeign[0]", "set exactly one of name, tag and id"},
		{`{type: xdp, interface: eth0, allowForeign: [{}]}`, "hook.allowForeign[0]", "set exactly one of name, tag and id"},
		{`{type: xdp, interface: eth0, allowForeign: [{name: ok}, {tag: xyz}]}`, "hook.allowForeign[1]", `tag "xyz" must be 16 hex digits`},
		{`{type: xdp, interface: eth0, allowForeign: [{name: a_name_longer_than_15}]}`, "hook.allowForeign[0]", "longer than the 15 characters"},
		// chain mode
		{`{type: xdp, interface: eth0, chainMode: fused}`, "", ""},
		{`{type: tc, direction: ingress, interface: eth0, chainMode: tailcall}`, "", ""},
		{`{type: xdp, interface: eth0, chainMode: auto}`, "", ""},
		{`{type: xdp, interface: eth0, chainMode: inline}`, "hook.chainMode", `must be auto, fused or tailcall, got "inline"`},
		{`{type: kprobe, function: f, chainMode: fused}`, "hook.chainMode", "does not apply to kprobe hooks"},
		// unknown
		{`{type: lsm}`, "hook.type", `unknown hook type "lsm" (known: cgroup_skb, kprobe, tc, tracepoint, uprobe, xdp)`},
		{`{}`, "hook.type", `unknown hook type ""`},
		{`{type: XDP, interface: eth0}`, "hook.type", `unknown hook type "XDP"`},
	} {
		in := doc("\n    - name: h\n      package: p@1.0.0\n      hook: " + c.hook + "\n")
		st, err := Parse(in)
		if c.field == "" {
			if err != nil {
				t.Errorf("hook %s: %v", c.hook, err)
			} else if st.Spec.Attachments[0].Hook.Type == "" {
				t.Errorf("hook %s: type lost", c.hook)
			}
			continue
		}
		var errs Errors
		if !errors.As(err, &errs) {
			t.Errorf("hook %s: got %v, want desired.Errors", c.hook, err)
			continue
		}
		if !hasError(errs, "h", c.field, c.msg) {
			t.Errorf("hook %s: want field %s containing %q, got %#v", c.hook, c.field, c.msg, errs)
		}
	}
}

// TestHookFieldsForUnknownType checks that an unknown type yields only the
// type error: fields cannot be judged without a type.
func TestHookFieldsForUnknownType(t *testing.T) {
	errs := parseErrors(t, doc("\n    - name: h\n      package: p@1.0.0\n      hook: {type: nope, interface: eth0, tracepoint: a/b}\n"))
	if len(errs) != 1 || errs[0].Field != "hook.type" {
		t.Errorf("errors = %#v, want only hook.type", errs)
	}
}

// TestHookWrongFieldsDeterministic checks that several misplaced fields are
// reported in the same order every time.
func TestHookWrongFieldsDeterministic(t *testing.T) {
	in := doc("\n    - name: h\n      package: p@1.0.0\n      hook: {type: tracepoint, tracepoint: a/b, interface: eth0, netns: x, mode: generic, direction: ingress, function: f, binary: /b, pid: 1, cgroup: /c}\n")
	first := parseErrors(t, in)
	if len(first) != 8 {
		t.Fatalf("want 8 misplaced-field errors, got %d: %v", len(first), first)
	}
	if len(hookFields) != len((&Hook{}).set()) {
		t.Errorf("hookFields %v does not list every field of set()", hookFields)
	}
	var got []string
	for _, e := range first {
		got = append(got, e.Field)
	}
	want := []string{"hook.interface", "hook.netns", "hook.mode", "hook.direction", "hook.function", "hook.binary", "hook.pid", "hook.cgroup"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fields in order %v, want %v", got, want)
	}
	for i := 0; i < 20; i++ {
		again := parseErrors(t, in)
		if again.Error() != first.Error() {
			t.Fatalf("errors differ between runs:\n%v\n%v", first, again)
		}
	}
}

func TestXDPHookShared(t *testing.T) {
	second := `
    - name: drop2
      package: portfilter@1.0.0
      hook: {type: xdp, interface: veth0, mode: generic}
`
	// Programs sharing an XDP hook form a chain, and share its mode.
	wantError(t, doc(xdpAtt, second), "drop2", "hook", "disagree on mode")
	if _, err := Parse(doc(xdpAtt, strings.Replace(second, ", mode: generic", "", 1))); err != nil {
		t.Errorf("two programs on one XDP hook refused: %v", err)
	}

	// The same namespace given as a name and as a path is the same hook.
	a := strings.Replace(xdpAtt, "interface: veth0", "interface: veth0, netns: blue", 1)
	b := strings.Replace(second, "interface: veth0", "interface: veth0, netns: /var/run/netns/blue", 1)
	wantError(t, doc(a, b), "drop2", "hook", "disagree on mode")

	// At most MaxChainLength programs per hook.
	var many []string
	for i := 0; i <= MaxChainLength; i++ {
		many = append(many, strings.Replace(xdpAtt, "name: drop", fmt.Sprintf("name: drop-%d", i), 1))
	}
	wantError(t, doc(many...), fmt.Sprintf("drop-%d", MaxChainLength), "hook", "more than 32 programs")

	// Different interfaces or namespaces are different hooks.
	for _, other := range []string{
		strings.Replace(second, "veth0", "veth1", 1),
		strings.Replace(second, "interface: veth0", "interface: veth0, netns: blue", 1),
	} {
		if _, err := Parse(doc(xdpAtt, other)); err != nil {
			t.Errorf("distinct XDP hooks refused: %v", err)
		}
	}
	// TC hooks may be shared (TCX multi-attach).
	tc2 := strings.Replace(tcAtt, "name: count", "name: count2", 1)
	if _, err := Parse(doc(tcAtt, tc2)); err != nil {
		t.Errorf("two programs on one TC hook refused: %v", err)
	}
}

func TestHookKey(t *testing.T) {
	equal := [][2]Hook{
		{{Type: "xdp", Interface: "eth0", Netns: "blue"}, {Type: "xdp", Interface: "eth0", Netns: "/var/run/netns/blue"}},
		{{Type: "xdp", Interface: "eth0"}, {Type: "xdp", Interface: "eth0", Mode: "generic"}},
		{{Type: "tc", Interface: "eth0", Direction: "ingress", Netns: "blue"}, {Type: "tc", Interface: "eth0", Direction: "ingress", Netns: "/var/run/netns/blue"}},
		{{Type: "tracepoint", Tracepoint: "a/b"}, {Type: "tracepoint", Tracepoint: "a/b"}},
	}
	for _, p := range equal {
		if p[0].Key() != p[1].Key() {
			t.Errorf("Key(%+v) = %q != Key(%+v) = %q", p[0], p[0].Key(), p[1], p[1].Key())
		}
	}
	distinct := []Hook{
		{Type: "xdp", Interface: "eth0"},
		{Type: "xdp", Interface: "eth1"},
		{Type: "xdp", Interface: "eth0", Netns: "blue"},
		{Type: "xdp", Interface: "eth0", Netns: "red"},
		{Type: "tc", Interface: "eth0", Direction: "ingress"},
		{Type: "tc", Interface: "eth0", Direction: "egress"},
		{Type: "tc", Interface: "eth0", Direction: "egress", Netns: "blue"},
		{Type: "tracepoint", Tracepoint: "a/b"},
		{Type: "tracepoint", Tracepoint: "a/c"},
		{Type: "kprobe", Function: "f"},
		{Type: "kprobe", Function: "g"},
		{Type: "uprobe", Binary: "/bin/a", Function: "f"},
		{Type: "uprobe", Binary: "/bin/b", Function: "f"},
		{Type: "uprobe", Binary: "/bin/a", Function: "f", PID: 7},
		{Type: "cgroup_skb", Cgroup: "/sys/fs/cgroup", Direction: "ingress"},
		{Type: "cgroup_skb", Cgroup: "/sys/fs/cgroup", Direction: "egress"},
		{Type: "cgroup_skb", Cgroup: "/sys/fs/cgroup/x", Direction: "egress"},
	}
	seen := map[string]Hook{}
	for _, h := range distinct {
		if other, dup := seen[h.Key()]; dup {
			t.Errorf("%+v and %+v share key %q", h, other, h.Key())
		}
		seen[h.Key()] = h
	}
}

func TestHookHelpers(t *testing.T) {
	for _, tc := range []struct{ netns, path string }{
		{"", ""},
		{"blue", "/var/run/netns/blue"},
		{"/proc/1/ns/net", "/proc/1/ns/net"},
	} {
		h := Hook{Type: "xdp", Netns: tc.netns}
		if got := h.NetnsPath(); got != tc.path {
			t.Errorf("NetnsPath(%q) = %q, want %q", tc.netns, got, tc.path)
		}
	}
	if m := (&Hook{Type: "xdp"}).XDPMode(); m != "native" {
		t.Errorf("default XDP mode = %q", m)
	}
	if m := (&Hook{Type: "xdp", Mode: "generic"}).XDPMode(); m != "generic" {
		t.Errorf("XDP mode = %q", m)
	}
	for _, tc := range []struct {
		h    Hook
		want string
	}{
		{Hook{Type: "xdp", Interface: "eth0"}, "xdp/native eth0"},
		{Hook{Type: "xdp", Interface: "eth0", Mode: "generic", Netns: "blue"}, "xdp/generic eth0 (netns blue)"},
		{Hook{Type: "tc", Interface: "eth0", Direction: "egress"}, "tc/egress eth0"},
		{Hook{Type: "tracepoint", Tracepoint: "a/b"}, "tracepoint a/b"},
		{Hook{Type: "kprobe", Function: "f"}, "kprobe f"},
		{Hook{Type: "uprobe", Binary: "/bin/sh", Function: "main"}, "uprobe /bin/sh:main"},
		{Hook{Type: "cgroup_skb", Cgroup: "/sys/fs/cgroup", Direction: "ingress"}, "cgroup_skb/ingress /sys/fs/cgroup"},
	} {
		if got := tc.h.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

func TestErrorFormatting(t *testing.T) {
	e := Error{Attachment: "drop", Field: "hook.mode", Message: "bad"}
	if got := e.Error(); got != `attachment "drop": hook.mode: bad` {
		t.Errorf("Error() = %q", got)
	}
	if got := (Error{Field: "kind", Message: "bad"}).Error(); got != "kind: bad" {
		t.Errorf("Error() = %q", got)
	}
	if got := (Error{Message: "bad"}).Error(); got != "bad" {
		t.Errorf("Error() = %q", got)
	}
	es := Errors{e, {Message: "other"}}
	if got := es.Error(); got != `attachment "drop": hook.mode: bad; other` {
		t.Errorf("Errors.Error() = %q", got)
	}
	if Errors(nil).Err() != nil {
		t.Error("empty Errors.Err() is not nil")
	}
	if es.Err() == nil {
		t.Error("non-empty Errors.Err() is nil")
	}
	// The JSON form carries attachment and field for API clients.
	data, err := json.Marshal(e)
	if err != nil || string(data) != `{"attachment":"drop","field":"hook.mode","message":"bad"}` {
		t.Errorf("JSON = %s, %v", data, err)
	}
}

func TestCollectsEveryError(t *testing.T) {
	errs := parseErrors(t, []byte(`apiVersion: x
kind: z
spec:
  attachments:
    - name: A
      package: nope
      priority: 2000
      hook: {type: xdp, mode: fast}
    - name: b
      package: p@1
      hook: {type: kprobe}
`))
	for _, want := range [][2]string{
		{"", "apiVersion"}, {"", "kind"},
		{"A", "name"}, {"A", "package"}, {"A", "priority"}, {"A", "hook.interface"}, {"A", "hook.mode"},
		{"b", "hook.function"},
	} {
		if !hasError(errs, want[0], want[1], "") {
			t.Errorf("missing error for attachment %q field %q in %v", want[0], want[1], errs)
		}
	}
}

func TestClone(t *testing.T) {
	data, err := os.ReadFile("../../examples/quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	p := 7
	st.Attachment("drop-ports").Priority = &p
	c := st.Clone()
	if !reflect.DeepEqual(st, c) {
		t.Fatalf("clone differs:\n%+v\n%+v", st, c)
	}
	// Deep: changing the clone leaves the original alone.
	*c.Attachment("drop-ports").Priority = 9
	c.Attachment("drop-ports").Params["ports"].([]any)[0] = json.Number("1")
	c.Attachment("count-egress").Hook.Interface = "other"
	if *st.Attachment("drop-ports").Priority != 7 || st.Attachment("drop-ports").Params["ports"].([]any)[0] != json.Number("8080") || st.Attachment("count-egress").Hook.Interface != "veth-b" {
		t.Errorf("Clone is shallow: original now %+v", st.Spec.Attachments)
	}
}

func TestParsePackageRef(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in   string
		want PackageRef
		ok   bool
	}{
		{"portfilter@1.0.0", PackageRef{Name: "portfilter", Version: "1.0.0"}, true},
		{"portfilter@1.0.0@" + d, PackageRef{Name: "portfilter", Version: "1.0.0", Digest: d}, true},
		{"portfilter@1.0.0@sha256:abc", PackageRef{}, false},
		{"portfilter@1.0.0@md5:" + strings.Repeat("a", 32), PackageRef{}, false},
		{"portfilter", PackageRef{}, false},
		{"@1.0.0", PackageRef{}, false},
		{"a@b@c@d", PackageRef{}, false},
	} {
		got, err := ParsePackageRef(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParsePackageRef(%q) = %+v, %v", tc.in, got, err)
		}
	}
}

func TestProgramMatch(t *testing.T) {
	for _, c := range []struct {
		m    ProgramMatch
		want bool
	}{
		{ProgramMatch{Name: "squatter"}, true},
		{ProgramMatch{Name: "other"}, false},
		{ProgramMatch{Tag: "0123456789ABCDEF"}, true}, // tags compare without case
		{ProgramMatch{Tag: "0123456789abcdee"}, false},
		{ProgramMatch{ID: 42}, true},
		{ProgramMatch{ID: 43}, false},
		{ProgramMatch{}, false},
	} {
		if got := c.m.Matches("squatter", "0123456789abcdef", 42); got != c.want {
			t.Errorf("%+v.Matches = %v, want %v", c.m, got, c.want)
		}
	}
}

// TestChainModeDisagreement: programs of one hook that set chainMode must
// agree; one setting it sets it for the hook.
func TestChainModeDisagreement(t *testing.T) {
	in := doc(`
    - name: a
      package: p@1.0.0
      hook: {type: xdp, interface: eth0, chainMode: fused}
    - name: b
      package: p@1.0.0
      hook: {type: xdp, interface: eth0, chainMode: tailcall}
`)
	_, err := Parse(in)
	var errs Errors
	if !errors.As(err, &errs) || !hasError(errs, "b", "hook.chainMode", "another program on hook xdp/native eth0 says fused") {
		t.Fatalf("got %v, want hook.chainMode disagreement on b", err)
	}
	st, err := Parse(doc(`
    - name: a
      package: p@1.0.0
      hook: {type: xdp, interface: eth0}
    - name: b
      package: p@1.0.0
      hook: {type: xdp, interface: eth0, chainMode: tailcall}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.HookChainModes(); len(got) != 1 || got[st.Spec.Attachments[0].Hook.Key()] != ChainModeTailCall {
		t.Errorf("HookChainModes = %v, want the hook in tailcall mode", got)
	}
}

// TestLimits checks that an oversized document is refused at once, with
// one error of kind limit, and that chain length is configurable.
func TestLimits(t *testing.T) {
	st := Empty()
	for i := 0; i < 10000; i++ {
		st.Spec.Attachments = append(st.Spec.Attachments, Attachment{Name: fmt.Sprintf("a%d", i), Package: "p@1", Hook: Hook{Type: "xdp", Interface: "eth0"}})
	}
	err := st.ValidateWith(Limits{MaxAttachments: 100})
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs.Worst() != KindLimit || !strings.Contains(errs[0].Message, "10000 attachments; this leafd accepts at most 100") {
		t.Fatalf("10 000 attachments: %v", err)
	}
	st.Spec.Attachments = st.Spec.Attachments[:4]
	err = st.ValidateWith(Limits{MaxAttachments: 100, MaxChainLength: 3})
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Field != "hook" || errs[0].Attachment != "a3" || errs.Worst() != KindLimit {
		t.Fatalf("4 on a hook, at most 3: %v", err)
	}
	if err := st.ValidateWith(Limits{MaxAttachments: 4, MaxChainLength: 4}); err != nil {
		t.Fatalf("within the limits: %v", err)
	}
}
