package pkgsource

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/leaf-ebpf/leaf/internal/archive"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// KFaaSHint is what l3afd's payload says about a package that leaf.yaml
// would otherwise say: where the artifact is and how to read it. Every
// field is optional.
type KFaaSHint struct {
	// Version is the version's path segment (l3afd's version, such as
	// "latest") when it differs from the package version leaf uses.
	Version string
	// Artifact is the archive's file name (l3afd's artifact).
	Artifact string
	// Object and Function are l3afd's object_file and entry_function_name.
	Object, Function string
	// ProgType is l3afd's prog_type: xdp or tc.
	ProgType string
	// ChainMap is l3afd's map_name: the PROG_ARRAY whose key 0 the program
	// tail-calls to run the next one (L3AF's cooperative chaining).
	ChainMap string
	// Companion is l3afd's cmd_start: a user program in the archive.
	Companion string
	// CPU and Memory bound the companion (l3afd's cpu and memory).
	CPU, Memory string
	// Maps are the maps l3afd's map_args set: only these become
	// parameters, so that leaf never rewrites a map nobody configured.
	Maps []string
}

// KFaaSHints gives the hint for a package of a repository, if any. The
// L3AF API (internal/l3af) records them before it asks for a package.
type KFaaSHints interface {
	KFaaSHint(repo, name, version string) (KFaaSHint, bool)
}

// DeriveManifest writes the leaf.yaml an L3AF artifact lacks, from the
// hint and the object itself: the program's type and section from the
// ELF, and one parameter per configuration map (l3afd's map_args), typed
// by the map's BTF key and value types.
func DeriveManifest(name, version string, files archive.Files, h KFaaSHint) (*manifest.Manifest, error) {
	obj, err := pickObject(files, h.Object)
	if err != nil {
		return nil, err
	}
	spec, err := repository.ParseObject(files[obj])
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", obj, err)
	}
	fn, ps, err := pickProgram(spec, obj, h.Function)
	if err != nil {
		return nil, err
	}
	typ, err := derivedType(ps, h.ProgType)
	if err != nil {
		return nil, fmt.Errorf("object %s: function %s: %w", obj, fn, err)
	}
	prog := manifest.Program{Name: fn, Object: obj, Function: fn, Section: ps.SectionName, Type: typ, Hooks: manifest.ProgramTypes[typ]}
	if h.ChainMap != "" {
		ms, ok := spec.Maps[h.ChainMap]
		if !ok || ms.Type != ebpf.ProgramArray {
			return nil, fmt.Errorf("object %s has no PROG_ARRAY map %q (map_name)", obj, h.ChainMap)
		}
		prog.Chain = &manifest.Chain{Mode: manifest.ChainCooperative, Map: h.ChainMap}
	}
	license := ps.License
	if license == "" {
		license = "unknown"
	}
	m := &manifest.Manifest{
		APIVersion: manifest.APIVersion, Kind: manifest.Kind, Name: name, Version: version,
		Description: fmt.Sprintf("L3AF package %s, read from %s (no leaf.yaml)", name, obj),
		License:     license,
		Keywords:    []string{"l3af"},
		Programs:    []manifest.Program{prog},
		Params:      mapParams(spec, h.Maps),
	}
	if h.Companion != "" {
		if _, ok := files[h.Companion]; !ok {
			return nil, fmt.Errorf("artifact has no user program %q (cmd_start)", h.Companion)
		}
		m.Companion = &manifest.Companion{Path: h.Companion, Capabilities: []string{"CAP_BPF"}, Resources: manifest.Resources{CPU: h.CPU, Memory: h.Memory}}
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("derived manifest: %w", err)
	}
	return m, nil
}

// withDerivedManifest returns files with a leaf.yaml: the archive's own,
// or one derived from the hint and the object.
func withDerivedManifest(name, version string, files archive.Files, h KFaaSHint) (archive.Files, error) {
	if _, ok := files[manifest.FileName]; ok {
		return files, nil
	}
	m, err := DeriveManifest(name, version, files, h)
	if err != nil {
		return nil, fmt.Errorf("no %s, and none can be derived: %w", manifest.FileName, err)
	}
	data, err := json.Marshal(m) // JSON is YAML
	if err != nil {
		return nil, err
	}
	out := archive.Files{manifest.FileName: data}
	for p, d := range files {
		out[p] = d
	}
	return out, nil
}

// pickObject is the named object, else the archive's only *.o.
func pickObject(files archive.Files, want string) (string, error) {
	if want != "" {
		if _, ok := files[want]; !ok {
			return "", fmt.Errorf("artifact has no object %q (object_file)", want)
		}
		return want, nil
	}
	var objs []string
	for p := range files {
		if path.Ext(p) == ".o" {
			objs = append(objs, p)
		}
	}
	sort.Strings(objs)
	if len(objs) != 1 {
		return "", fmt.Errorf("artifact holds %d objects (%s): name one with object_file", len(objs), strings.Join(objs, ", "))
	}
	return objs[0], nil
}

// pickProgram is the named function, else the object's only program.
func pickProgram(spec *ebpf.CollectionSpec, obj, want string) (string, *ebpf.ProgramSpec, error) {
	if want != "" {
		ps, ok := spec.Programs[want]
		if !ok {
			return "", nil, fmt.Errorf("object %s has no function %q (entry_function_name)", obj, want)
		}
		return want, ps, nil
	}
	if len(spec.Programs) != 1 {
		return "", nil, fmt.Errorf("object %s holds %d programs: name one with entry_function_name", obj, len(spec.Programs))
	}
	for n, ps := range spec.Programs {
		return n, ps, nil
	}
	return "", nil, nil
}

// derivedType is the manifest type of the ELF program, checked against
// l3afd's prog_type.
func derivedType(ps *ebpf.ProgramSpec, progType string) (string, error) {
	var typ string
	switch ps.Type {
	case ebpf.XDP:
		typ = "xdp"
	case ebpf.SchedCLS, ebpf.SchedACT:
		typ = "sched_cls"
	case ebpf.TracePoint:
		typ = "tracepoint"
	case ebpf.Kprobe:
		typ = "kprobe"
	default:
		return "", fmt.Errorf("program type %s (section %q) is not one leaf attaches", ps.Type, ps.SectionName)
	}
	want := map[string]string{"xdp": "xdp", "tc": "sched_cls", "tracepoint": "tracepoint", "kprobe": "kprobe", "kretprobe": "kprobe", "uprobe": "kprobe", "uretprobe": "kprobe"}
	if progType != "" && want[progType] != typ {
		return "", fmt.Errorf("prog_type %q, but the ELF section %q holds a %s program", progType, ps.SectionName, ps.Type)
	}
	return typ, nil
}

// mapParams declares a parameter for each named map l3afd's map_args can
// set: a hash map of integer keys takes a list (its keys become exactly
// the list, as l3afd did with "8080,8081"), an array of integer values
// takes the value of key 0 (l3afd's "rl_config_map": "2"). Other maps
// declare none; setting them is an error at admission.
func mapParams(spec *ebpf.CollectionSpec, names []string) []manifest.Param {
	var out []manifest.Param
	for _, n := range sortedMaps(spec) {
		ms := spec.Maps[n]
		if !slices.Contains(names, n) || len(n) > 64 {
			continue
		}
		switch ms.Type {
		case ebpf.Hash, ebpf.LRUHash:
			if t := intType(ms.Key, ms.KeySize); t != "" {
				out = append(out, manifest.Param{Name: n, Description: "keys of map " + n + " (l3afd map_args)", Type: "list<" + t + ">", Map: &manifest.MapTarget{Name: n, As: "keys"}})
			}
		case ebpf.Array:
			if t := intType(ms.Value, ms.ValueSize); t != "" && ms.KeySize == 4 {
				out = append(out, manifest.Param{Name: n, Description: "value of key 0 of map " + n + " (l3afd map_args)", Type: t, Map: &manifest.MapTarget{Name: n, As: "value"}})
			}
		}
	}
	return out
}

// intType names the integer type of a map key or value: from BTF when the
// object has it (so a signed value parses as one), else unsigned by size.
func intType(t btf.Type, size uint32) string {
	signed := false
	if t != nil {
		i, ok := btf.UnderlyingType(t).(*btf.Int)
		if !ok {
			if _, isEnum := btf.UnderlyingType(t).(*btf.Enum); !isEnum {
				return "" // a struct or array: not a scalar parameter
			}
		} else {
			signed = i.Encoding&btf.Signed != 0
		}
	}
	var bits string
	switch size {
	case 1:
		bits = "8"
	case 2:
		bits = "16"
	case 4:
		bits = "32"
	case 8:
		bits = "64"
	default:
		return ""
	}
	if signed {
		return "i" + bits
	}
	return "u" + bits
}

func sortedMaps(spec *ebpf.CollectionSpec) []string {
	out := make([]string, 0, len(spec.Maps))
	for n := range spec.Maps {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
