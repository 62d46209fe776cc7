// Package manifest defines a leaf package's manifest (leaf.yaml): what the
// package is, which BPF programs it holds, where they may attach, and which
// parameters it takes. Validation errors name the offending field.
package manifest

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/leaf-ebpf/leaf/internal/yamljson"
)

// APIVersion and Kind identify a package manifest document.
const (
	APIVersion = "leaf.dev/v1alpha1"
	Kind       = "Package"
	// FileName is the manifest's name inside a package directory.
	FileName = "leaf.yaml"
)

// Manifest is the parsed leaf.yaml of a package.
type Manifest struct {
	APIVersion  string    `json:"apiVersion"`
	Kind        string    `json:"kind"`
	Name        string    `json:"name"`
	Version     string    `json:"version"`
	Description string    `json:"description"`
	License     string    `json:"license"`
	Keywords    []string  `json:"keywords,omitempty"`
	Programs    []Program `json:"programs"`
	Params      []Param   `json:"params,omitempty"`
	// Metrics are read from the package's maps at scrape time.
	Metrics []Metric `json:"metrics,omitempty"`
	// Companion is a user-space program leafd runs beside each
	// attachment that asks for it.
	Companion *Companion `json:"companion,omitempty"`
}

// Program is one BPF program in the package.
type Program struct {
	// Name is how desired state refers to the program.
	Name string `json:"name"`
	// Object is the ELF file, relative to the package root.
	Object string `json:"object"`
	// Function is the program's symbol in the ELF object.
	Function string `json:"function"`
	// Section, if set, must match the program's ELF section.
	Section string `json:"section,omitempty"`
	// Type is the BPF program type (see ProgramTypes).
	Type string `json:"type"`
	// Hooks lists the hook types the program may attach to.
	Hooks []string `json:"hooks"`
	// Chain holds the program's defaults as a member of an XDP or TC
	// chain; desired state overrides them.
	Chain *Chain `json:"chain,omitempty"`
}

// Chain describes how a program joins a chain of programs on one hook.
type Chain struct {
	// Priority orders members (lower first); 0..1000.
	Priority *int `json:"priority,omitempty"`
	// ProceedOn lists verdicts on which the next member runs.
	ProceedOn []string `json:"proceedOn,omitempty"`
	// Mode is "rewrite" (default: leaf rewrites the program's exits to
	// tail-call the next member) or "cooperative" (the program tail-calls
	// key 0 of its own PROG_ARRAY, Map, at its end, as L3AF programs do).
	Mode string `json:"mode,omitempty"`
	// Map is the cooperative program's PROG_ARRAY.
	Map string `json:"map,omitempty"`
}

// Chain modes.
const (
	ChainRewrite     = "rewrite"
	ChainCooperative = "cooperative"
)

// Param is a parameter that desired state may set.
type Param struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Type is a scalar type (bool, u8…u64, i8…i64) or list<scalar>.
	Type    string `json:"type"`
	Default any    `json:"default,omitempty"`
	// Values names an enum's values: {NAME: NUMBER}, encoded as u32.
	Values map[string]uint32 `json:"values,omitempty"`
	// Exactly one of Map and Const says where the value goes.
	Map   *MapTarget `json:"map,omitempty"`
	Const string     `json:"const,omitempty"`
}

// MapTarget writes a parameter into a map at apply time, so changing it
// needs no reload.
type MapTarget struct {
	Name string `json:"name"`
	// As is "keys" (a list; the map's keys become exactly its items) or
	// "value" (a scalar stored under Key).
	As  string `json:"as"`
	Key uint32 `json:"key,omitempty"`
}

// Hook types a program may attach to.
const (
	HookXDP        = "xdp"
	HookTC         = "tc"
	HookTracepoint = "tracepoint"
	HookKprobe     = "kprobe"
	HookUprobe     = "uprobe"
	HookCgroupSKB  = "cgroup_skb"
)

// ProgramTypes maps each program type to the hooks it can serve.
var ProgramTypes = map[string][]string{
	"xdp":        {HookXDP},
	"sched_cls":  {HookTC},
	"tracepoint": {HookTracepoint},
	"kprobe":     {HookKprobe, HookUprobe},
	"cgroup_skb": {HookCgroupSKB},
}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	versionRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)
	identRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)
)

// Parse decodes and validates a manifest.
func Parse(data []byte) (*Manifest, error) {
	var m Manifest
	if err := yamljson.Decode(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", FileName, err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", FileName, err)
	}
	return &m, nil
}

// Validate checks every field and returns all problems found, each naming
// its field.
func (m *Manifest) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if m.APIVersion != APIVersion {
		add("apiVersion", "must be %q, got %q", APIVersion, m.APIVersion)
	}
	if m.Kind != Kind {
		add("kind", "must be %q, got %q", Kind, m.Kind)
	}
	if !nameRE.MatchString(m.Name) {
		add("name", "%q is not a valid package name (lower-case letters, digits and '-', at most 63)", m.Name)
	}
	if !versionRE.MatchString(m.Version) {
		add("version", "%q is not a semantic version (MAJOR.MINOR.PATCH)", m.Version)
	}
	if strings.TrimSpace(m.Description) == "" {
		add("description", "is required")
	}
	if strings.TrimSpace(m.License) == "" {
		add("license", "is required")
	}
	if len(m.Programs) == 0 {
		add("programs", "at least one program is required")
	}
	seen := map[string]bool{}
	for i, p := range m.Programs {
		field := fmt.Sprintf("programs[%d]", i)
		if seen[p.Name] {
			add(field+".name", "duplicate program %q", p.Name)
		}
		seen[p.Name] = true
		errs = append(errs, p.validate(field)...)
	}
	seenParam := map[string]bool{}
	for i, p := range m.Params {
		field := fmt.Sprintf("params[%d]", i)
		if seenParam[p.Name] {
			add(field+".name", "duplicate parameter %q", p.Name)
		}
		seenParam[p.Name] = true
		errs = append(errs, p.validate(field)...)
	}
	seenMetric := map[string]bool{}
	for i, mt := range m.Metrics {
		field := fmt.Sprintf("metrics[%d]", i)
		if seenMetric[mt.Name] {
			add(field+".name", "duplicate metric %q", mt.Name)
		}
		seenMetric[mt.Name] = true
		errs = append(errs, mt.validate(field)...)
	}
	if m.Companion != nil {
		errs = append(errs, m.Companion.validate("companion")...)
	}
	return errors.Join(errs...)
}

func (p *Program) validate(field string) []error {
	var errs []error
	add := func(sub, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", field, sub, fmt.Sprintf(format, args...)))
	}
	if !identRE.MatchString(p.Name) {
		add("name", "%q is not a valid program name", p.Name)
	}
	if !RelativePath(p.Object) {
		add("object", "%q must be a relative path inside the package", p.Object)
	}
	if !identRE.MatchString(p.Function) {
		add("function", "%q is not a valid symbol name", p.Function)
	}
	hooks, ok := ProgramTypes[p.Type]
	if !ok {
		add("type", "unknown program type %q (known: %s)", p.Type, strings.Join(knownTypes(), ", "))
		return errs
	}
	if len(p.Hooks) == 0 {
		add("hooks", "at least one hook type is required")
	}
	for j, h := range p.Hooks {
		if !contains(hooks, h) {
			add(fmt.Sprintf("hooks[%d]", j), "program type %s cannot attach to hook %q (it can attach to: %s)", p.Type, h, strings.Join(hooks, ", "))
		}
	}
	if c := p.Chain; c != nil {
		if p.Type != "xdp" && p.Type != "sched_cls" {
			add("chain", "only xdp and sched_cls programs join chains")
		}
		if c.Priority != nil && (*c.Priority < 0 || *c.Priority > 1000) {
			add("chain.priority", "must be between 0 and 1000, got %d", *c.Priority)
		}
		switch c.Mode {
		case "", ChainRewrite:
			if c.Map != "" {
				add("chain.map", "only applies to mode cooperative")
			}
		case ChainCooperative:
			if !identRE.MatchString(c.Map) {
				add("chain.map", "cooperative mode needs the name of the program's PROG_ARRAY, got %q", c.Map)
			}
		default:
			add("chain.mode", "must be rewrite or cooperative, got %q", c.Mode)
		}
	}
	return errs
}

func (p *Param) validate(field string) []error {
	var errs []error
	add := func(sub, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", field, sub, fmt.Sprintf(format, args...)))
	}
	if !identRE.MatchString(p.Name) {
		add("name", "%q is not a valid parameter name", p.Name)
	}
	typ, err := p.TypeOf()
	if err != nil {
		add("type", "%v", err)
		return errs
	}
	if typ.Scalar != "enum" && len(p.Values) > 0 {
		add("values", "only an enum has values")
	}
	for name := range p.Values {
		if !identRE.MatchString(name) {
			add("values", "%q is not a valid enum name", name)
		}
	}
	switch {
	case p.Map != nil && p.Const != "":
		add("map", "set only one of map and const")
	case p.Map == nil && p.Const == "":
		add("map", "one of map and const is required")
	case p.Const != "":
		if typ.List {
			add("const", "a list parameter cannot be a constant; use a map with as: keys")
		}
		if !identRE.MatchString(p.Const) {
			add("const", "%q is not a valid variable name", p.Const)
		}
	default:
		switch p.Map.As {
		case "keys":
			if !typ.List {
				add("map.as", "keys needs a list type, got %s", p.Type)
			}
		case "value":
			if typ.List {
				add("map.as", "value needs a scalar type, got %s", p.Type)
			}
		default:
			add("map.as", "must be keys or value, got %q", p.Map.As)
		}
		if !identRE.MatchString(p.Map.Name) {
			add("map.name", "%q is not a valid map name", p.Map.Name)
		}
	}
	if p.Default != nil {
		if _, err := typ.Encode(p.Default); err != nil {
			add("default", "%v", err)
		}
	}
	return errs
}

// RelativePath says whether p names a file inside a package: relative,
// clean, and never leaving the package root.
func RelativePath(p string) bool {
	return p != "" && !strings.HasPrefix(p, "/") && !strings.Contains(p, "..") && !strings.Contains(p, "\\") && path.Clean(p) == p && p != FileName
}

// Program returns the named program, or the only one when name is empty.
func (m *Manifest) Program(name string) (*Program, error) {
	if name == "" {
		if len(m.Programs) == 1 {
			return &m.Programs[0], nil
		}
		return nil, fmt.Errorf("package %s has %d programs; name one of: %s", m.Name, len(m.Programs), strings.Join(m.programNames(), ", "))
	}
	for i := range m.Programs {
		if m.Programs[i].Name == name {
			return &m.Programs[i], nil
		}
	}
	return nil, fmt.Errorf("package %s@%s has no program %q (it has: %s)", m.Name, m.Version, name, strings.Join(m.programNames(), ", "))
}

// Param returns the named parameter or nil.
func (m *Manifest) Param(name string) *Param {
	for i := range m.Params {
		if m.Params[i].Name == name {
			return &m.Params[i]
		}
	}
	return nil
}

func (m *Manifest) programNames() []string {
	var names []string
	for _, p := range m.Programs {
		names = append(names, p.Name)
	}
	return names
}

func knownTypes() []string {
	return []string{"cgroup_skb", "kprobe", "sched_cls", "tracepoint", "xdp"}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
