package manifest

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// validYAML is a manifest that passes validation; tests break one field.
const validYAML = `apiVersion: leaf.dev/v1alpha1
kind: Package
name: demo
version: 1.2.3
description: A demo package.
license: MIT
programs:
  - name: prog_xdp
    object: demo.bpf.o
    function: prog_xdp
    section: xdp
    type: xdp
    hooks: [xdp]
  - name: prog_probe
    object: demo.bpf.o
    function: prog_probe
    type: kprobe
    hooks: [kprobe, uprobe]
params:
  - name: ports
    type: list<u16>
    default: [80, 443]
    map: {name: blocked_ports, as: keys}
  - name: limit
    type: u32
    default: 7
    map: {name: limits, as: value, key: 3}
  - name: verbose
    type: bool
    default: false
    const: verbose
`

func valid(t *testing.T) *Manifest {
	t.Helper()
	m, err := Parse([]byte(validYAML))
	if err != nil {
		t.Fatalf("valid manifest rejected: %v", err)
	}
	return m
}

func TestParseValid(t *testing.T) {
	m := valid(t)
	if m.Name != "demo" || m.Version != "1.2.3" || len(m.Programs) != 2 || len(m.Params) != 3 {
		t.Fatalf("parsed %+v", m)
	}
	if got := m.Programs[1].Hooks; len(got) != 2 || got[0] != HookKprobe || got[1] != HookUprobe {
		t.Errorf("hooks = %v", got)
	}
	p := m.Param("limit")
	if p == nil || p.Map == nil || p.Map.Name != "limits" || p.Map.As != "value" || p.Map.Key != 3 {
		t.Fatalf("param limit = %+v", p)
	}
	// Numbers keep their JSON form so 64-bit values survive.
	if n, ok := p.Default.(json.Number); !ok || n.String() != "7" {
		t.Errorf("default = %#v, want json.Number 7", p.Default)
	}
	if m.Param("nope") != nil {
		t.Error("Param(nope) should be nil")
	}
}

func TestParseJSON(t *testing.T) {
	doc := `{"apiVersion":"leaf.dev/v1alpha1","kind":"Package","name":"j","version":"0.0.1","description":"d","license":"MIT",
	"programs":[{"name":"p","object":"p.o","function":"p","type":"sched_cls","hooks":["tc"]}]}`
	m, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if m.Programs[0].Type != "sched_cls" {
		t.Errorf("programs = %+v", m.Programs)
	}
}

func TestParseDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "empty"},
		{"malformed", "name: [", "malformed"},
		{"unknown field", validYAML + "bogus: 1\n", `unknown field "bogus"`},
		{"duplicate key", validYAML + "name: other\n", "malformed"},
		{"wrong type", strings.Replace(validYAML, "hooks: [xdp]", "hooks: xdp", 1), "hooks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse([]byte(tc.in))
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", m)
			}
			if !strings.HasPrefix(err.Error(), FileName+": ") {
				t.Errorf("error %q does not name %s", err, FileName)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// TestValidateFields breaks one field at a time and checks that the error
// names exactly that field.
func TestValidateFields(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(m *Manifest)
		field  string // error must start with "field: "
		want   string // and contain this
	}{
		{"apiVersion", func(m *Manifest) { m.APIVersion = "v1" }, "apiVersion", `must be "leaf.dev/v1alpha1", got "v1"`},
		{"apiVersion empty", func(m *Manifest) { m.APIVersion = "" }, "apiVersion", `got ""`},
		{"kind", func(m *Manifest) { m.Kind = "HostState" }, "kind", `got "HostState"`},
		{"name upper", func(m *Manifest) { m.Name = "Demo" }, "name", `"Demo" is not a valid package name`},
		{"name empty", func(m *Manifest) { m.Name = "" }, "name", "not a valid package name"},
		{"name leading dash", func(m *Manifest) { m.Name = "-demo" }, "name", "not a valid package name"},
		{"name trailing dash", func(m *Manifest) { m.Name = "demo-" }, "name", "not a valid package name"},
		{"name too long", func(m *Manifest) { m.Name = strings.Repeat("a", 64) }, "name", "at most 63"},
		{"name slash", func(m *Manifest) { m.Name = "a/b" }, "name", "not a valid package name"},
		{"version two parts", func(m *Manifest) { m.Version = "1.2" }, "version", `"1.2" is not a semantic version`},
		{"version v prefix", func(m *Manifest) { m.Version = "v1.2.3" }, "version", "not a semantic version"},
		{"version empty", func(m *Manifest) { m.Version = "" }, "version", "not a semantic version"},
		{"version bad pre", func(m *Manifest) { m.Version = "1.2.3-" }, "version", "not a semantic version"},
		{"description", func(m *Manifest) { m.Description = "  " }, "description", "is required"},
		{"license", func(m *Manifest) { m.License = "" }, "license", "is required"},
		{"no programs", func(m *Manifest) { m.Programs = nil }, "programs", "at least one program"},
		{"program name", func(m *Manifest) { m.Programs[1].Name = "bad-name" }, "programs[1].name", `"bad-name" is not a valid program name`},
		{"program name empty", func(m *Manifest) { m.Programs[0].Name = "" }, "programs[0].name", "not a valid program name"},
		{"duplicate program", func(m *Manifest) { m.Programs[1].Name = "prog_xdp" }, "programs[1].name", `duplicate program "prog_xdp"`},
		{"object empty", func(m *Manifest) { m.Programs[0].Object = "" }, "programs[0].object", "must be a relative path"},
		{"object absolute", func(m *Manifest) { m.Programs[0].Object = "/etc/passwd" }, "programs[0].object", "must be a relative path"},
		{"object traversal", func(m *Manifest) { m.Programs[0].Object = "../x.o" }, "programs[0].object", "must be a relative path"},
		{"function", func(m *Manifest) { m.Programs[0].Function = "1abc" }, "programs[0].function", `"1abc" is not a valid symbol name`},
		{"function empty", func(m *Manifest) { m.Programs[0].Function = "" }, "programs[0].function", "not a valid symbol name"},
		{"type unknown", func(m *Manifest) { m.Programs[1].Type = "socket_filter" }, "programs[1].type", `unknown program type "socket_filter" (known: cgroup_skb, kprobe, sched_cls, tracepoint, xdp)`},
		{"type empty", func(m *Manifest) { m.Programs[0].Type = "" }, "programs[0].type", "unknown program type"},
		{"no hooks", func(m *Manifest) { m.Programs[0].Hooks = nil }, "programs[0].hooks", "at least one hook type"},
		{"hook does not fit", func(m *Manifest) { m.Programs[0].Hooks = []string{"xdp", "tc"} }, "programs[0].hooks[1]", `program type xdp cannot attach to hook "tc" (it can attach to: xdp)`},
		{"kprobe on tracepoint", func(m *Manifest) { m.Programs[1].Hooks = []string{"tracepoint"} }, "programs[1].hooks[0]", "it can attach to: kprobe, uprobe"},
		{"unknown hook", func(m *Manifest) { m.Programs[0].Hooks = []string{"lsm"} }, "programs[0].hooks[0]", `cannot attach to hook "lsm"`},
		{"param name", func(m *Manifest) { m.Params[0].Name = "my-ports" }, "params[0].name", `"my-ports" is not a valid parameter name`},
		{"duplicate param", func(m *Manifest) { m.Params[2].Name = "ports" }, "params[2].name", `duplicate parameter "ports"`},
		{"param type unknown", func(m *Manifest) { m.Params[1].Type = "u128" }, "params[1].type", `unknown type "u128"`},
		{"param type string", func(m *Manifest) { m.Params[1].Type = "string" }, "params[1].type", `unknown type "string"`},
		{"param type bad list", func(m *Manifest) { m.Params[0].Type = "list<float>" }, "params[0].type", `unknown type "list<float>"`},
		{"param type nested list", func(m *Manifest) { m.Params[0].Type = "list<list<u8>>" }, "params[0].type", "unknown type"},
		{"param type unclosed", func(m *Manifest) { m.Params[0].Type = "list<u8" }, "params[0].type", "unknown type"},
		{"map and const", func(m *Manifest) { m.Params[1].Const = "limit" }, "params[1].map", "set only one of map and const"},
		{"neither map nor const", func(m *Manifest) { m.Params[2].Const = "" }, "params[2].map", "one of map and const is required"},
		{"keys on scalar", func(m *Manifest) { m.Params[1].Map.As = "keys" }, "params[1].map.as", "keys needs a list type, got u32"},
		{"value on list", func(m *Manifest) { m.Params[0].Map.As = "value" }, "params[0].map.as", "value needs a scalar type, got list<u16>"},
		{"as unknown", func(m *Manifest) { m.Params[0].Map.As = "values" }, "params[0].map.as", `must be keys or value, got "values"`},
		{"as empty", func(m *Manifest) { m.Params[1].Map.As = "" }, "params[1].map.as", `got ""`},
		{"map name", func(m *Manifest) { m.Params[0].Map.Name = "blocked-ports" }, "params[0].map.name", `"blocked-ports" is not a valid map name`},
		{"const on list", func(m *Manifest) { m.Params[0].Map = nil; m.Params[0].Const = "ports" }, "params[0].const", "a list parameter cannot be a constant"},
		{"const name", func(m *Manifest) { m.Params[2].Const = "a.b" }, "params[2].const", `"a.b" is not a valid variable name`},
		{"default wrong type bool", func(m *Manifest) { m.Params[2].Default = json.Number("1") }, "params[2].default", "expected bool, got number 1"},
		{"default out of range", func(m *Manifest) { m.Params[1].Default = json.Number("-1") }, "params[1].default", "-1 out of range for u32"},
		{"default string", func(m *Manifest) { m.Params[1].Default = "7" }, "params[1].default", `expected u32, got string "7"`},
		{"default list item", func(m *Manifest) { m.Params[0].Default = []any{json.Number("80"), json.Number("70000")} }, "params[0].default", "item 1: 70000 out of range for u16"},
		{"default scalar for list", func(m *Manifest) { m.Params[0].Default = json.Number("80") }, "params[0].default", "expected a list of u16, got number 80"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := valid(t)
			tc.mutate(m)
			err := m.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			msgs := strings.Split(err.Error(), "\n")
			for _, msg := range msgs {
				if strings.HasPrefix(msg, tc.field+": ") && strings.Contains(msg, tc.want) {
					return
				}
			}
			t.Errorf("no error for field %q containing %q; got:\n%v", tc.field, tc.want, err)
		})
	}
}

// TestValidateCollectsAll checks that every problem is reported, not just
// the first.
func TestValidateCollectsAll(t *testing.T) {
	m := &Manifest{Programs: []Program{{}}, Params: []Param{{Type: "x"}}}
	err := m.Validate()
	if err == nil {
		t.Fatal("empty manifest accepted")
	}
	for _, field := range []string{"apiVersion", "kind", "name", "version", "description", "license",
		"programs[0].name", "programs[0].object", "programs[0].function", "programs[0].type",
		"params[0].name", "params[0].type"} {
		if !strings.Contains("\n"+err.Error(), "\n"+field+": ") {
			t.Errorf("no error for %s in:\n%v", field, err)
		}
	}
	// An unknown program type stops the hook check for that program: the
	// hooks cannot be judged against an unknown type.
	if strings.Contains(err.Error(), "programs[0].hooks") {
		t.Errorf("hooks judged against an unknown type:\n%v", err)
	}
}

func TestValidateEveryProgramType(t *testing.T) {
	for typ, hooks := range ProgramTypes {
		for _, h := range hooks {
			m := valid(t)
			m.Programs = []Program{{Name: "p", Object: "p.o", Function: "p", Type: typ, Hooks: []string{h}}}
			if err := m.Validate(); err != nil {
				t.Errorf("type %s hook %s: %v", typ, h, err)
			}
		}
	}
	for _, h := range []string{HookXDP, HookTC, HookTracepoint, HookKprobe, HookUprobe, HookCgroupSKB} {
		served := false
		for _, hooks := range ProgramTypes {
			served = served || contains(hooks, h)
		}
		if !served {
			t.Errorf("no program type serves hook %s", h)
		}
	}
	if len(knownTypes()) != len(ProgramTypes) {
		t.Errorf("knownTypes %v does not list every ProgramTypes key", knownTypes())
	}
	for _, k := range knownTypes() {
		if _, ok := ProgramTypes[k]; !ok {
			t.Errorf("knownTypes lists %s, which ProgramTypes lacks", k)
		}
	}
}

func TestValidateAccepts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(m *Manifest)
	}{
		{"prerelease", func(m *Manifest) { m.Version = "1.0.0-rc.1" }},
		{"max name", func(m *Manifest) { m.Name = strings.Repeat("a", 63) }},
		{"one-char name", func(m *Manifest) { m.Name = "a" }},
		{"no params", func(m *Manifest) { m.Params = nil }},
		{"no default", func(m *Manifest) { m.Params[1].Default = nil }},
		{"empty list default", func(m *Manifest) { m.Params[0].Default = []any{} }},
		{"object in subdir", func(m *Manifest) { m.Programs[0].Object = "bpf/demo.bpf.o" }},
		{"u64 max default", func(m *Manifest) { m.Params[1].Type = "u64"; m.Params[1].Default = json.Number("18446744073709551615") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := valid(t)
			tc.mutate(m)
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestProgramLookup(t *testing.T) {
	m := valid(t)
	p, err := m.Program("prog_probe")
	if err != nil || p.Function != "prog_probe" {
		t.Fatalf("Program(prog_probe) = %+v, %v", p, err)
	}
	// The returned pointer refers into the manifest.
	if p != &m.Programs[1] {
		t.Error("Program returned a copy")
	}
	_, err = m.Program("")
	if err == nil || !strings.Contains(err.Error(), "has 2 programs; name one of: prog_xdp, prog_probe") {
		t.Errorf("Program(\"\") with two programs: %v", err)
	}
	_, err = m.Program("nope")
	if err == nil || !strings.Contains(err.Error(), `demo@1.2.3 has no program "nope" (it has: prog_xdp, prog_probe)`) {
		t.Errorf("Program(nope): %v", err)
	}
	m.Programs = m.Programs[:1]
	p, err = m.Program("")
	if err != nil || p.Name != "prog_xdp" {
		t.Errorf("Program(\"\") with one program = %+v, %v", p, err)
	}
}

// TestParseBuiltinPackages parses every leaf.yaml shipped in packages/.
func TestParseBuiltinPackages(t *testing.T) {
	files, err := filepath.Glob("../../packages/*/" + FileName)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("found %d built-in manifests, want at least 4", len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if want := filepath.Base(filepath.Dir(f)); m.Name != want {
			t.Errorf("%s: name %q, directory %q", f, m.Name, want)
		}
		for _, p := range m.Params {
			if p.Default == nil {
				continue
			}
			typ, err := ParseType(p.Type)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := typ.Encode(p.Default); err != nil {
				t.Errorf("%s: param %s default: %v", f, p.Name, err)
			}
		}
	}
}

func TestValidateErrorIsJoined(t *testing.T) {
	m := valid(t)
	m.Kind, m.Name = "", ""
	err := m.Validate()
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 2 {
		t.Fatalf("want two joined errors, got %v", err)
	}
}
