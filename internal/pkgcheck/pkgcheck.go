// Package pkgcheck holds the checks apply makes on a package itself (its
// parameters' targets, declared metrics, companion), apart from any
// attachment or host state, so that leaf pkg lint refuses exactly what
// apply would. It only reads object specs: it builds on every OS the leaf
// CLI runs on.
package pkgcheck

import (
	"bytes"
	"debug/elf"
	"fmt"
	"runtime"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// Package runs every check apply makes on a package itself, as
// opposed to an attachment's values, for one of its programs (spec is
// that program's object): each parameter's constant or map fits its type
// (with the default value, if any), each declared metric's map is one
// metrics can read, and the companion, if declared, runs on this host.
// Lint calls it so that it refuses first whatever apply would refuse.
func Package(pkg *repository.Package, spec *ebpf.CollectionSpec) desired.Errors {
	var errs desired.Errors
	for _, p := range pkg.Manifest.Params {
		typ, err := p.TypeOf()
		if err != nil {
			continue // the manifest check names it
		}
		n := 0
		if p.Default != nil {
			if items, err := typ.Encode(p.Default); err == nil {
				n = len(items)
			}
		}
		if err := Target(p, typ, n, spec); err != nil {
			errs = append(errs, desired.Error{Field: "params." + p.Name, Message: fmt.Sprintf("package %s: %v", pkg.Ref(), err)})
		}
	}
	errs = append(errs, Metrics(pkg, spec)...)
	if pkg.Manifest.Companion != nil {
		errs = append(errs, Companion(pkg, runtime.GOARCH)...)
	}
	return errs
}

// elfMachines maps GOARCH to the ELF machine its executables declare.
var elfMachines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "386": elf.EM_386, "arm64": elf.EM_AARCH64, "arm": elf.EM_ARM,
	"riscv64": elf.EM_RISCV, "ppc64le": elf.EM_PPC64, "ppc64": elf.EM_PPC64, "s390x": elf.EM_S390,
	"loong64": elf.EM_LOONGARCH, "mips64le": elf.EM_MIPS, "mipsle": elf.EM_MIPS,
}

// Companion checks that the package, read for arch, holds its
// companion, and that a native companion is built for arch: leafd would
// otherwise attach the program and then fail to start the companion
// ("exec format error"), again and again.
func Companion(pkg *repository.Package, arch string) desired.Errors {
	c := pkg.Manifest.Companion
	fail := func(format string, args ...any) desired.Errors {
		return desired.Errors{{Field: "companion", Message: fmt.Sprintf("package %s: companion %s: %s", pkg.Ref(), c.Path, fmt.Sprintf(format, args...))}}
	}
	data, err := pkg.ReadFile(c.Path)
	if err != nil {
		return fail("no build for architecture %s (ship it as arch/%s/%s, or architecture-neutral)", arch, arch, c.Path)
	}
	if !bytes.HasPrefix(data, []byte(elf.ELFMAG)) {
		return nil // a script, run by its interpreter
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fail("not a valid ELF executable: %v", err)
	}
	if want, ok := elfMachines[arch]; ok && f.Machine != want {
		return fail("an executable for %s, but this host is %s (ship one per architecture under arch/<goarch>/)", f.Machine, arch)
	}
	return nil
}

// metricMapTypes are the maps metrics read: integer keys to integer
// values, per-CPU ones summed.
var metricMapTypes = map[ebpf.MapType]bool{
	ebpf.Array: true, ebpf.Hash: true, ebpf.LRUHash: true,
	ebpf.PerCPUArray: true, ebpf.PerCPUHash: true, ebpf.LRUCPUHash: true,
}

func perCPUMap(t ebpf.MapType) bool {
	return t == ebpf.PerCPUArray || t == ebpf.PerCPUHash || t == ebpf.LRUCPUHash
}

// Target verifies that the parameter's map or variable exists in the
// object with a matching size, and that a key list fits the map.
func Target(p manifest.Param, typ manifest.Type, n int, spec *ebpf.CollectionSpec) error {
	if p.Const != "" {
		v, ok := spec.Variables[p.Const]
		if !ok {
			return fmt.Errorf("object has no variable %q", p.Const)
		}
		if !v.Constant() {
			return fmt.Errorf("variable %q is not a load-time constant (declare it volatile const)", p.Const)
		}
		if int(v.Size()) != typ.Size() {
			return fmt.Errorf("variable %q is %d bytes, parameter type %s is %d", p.Const, v.Size(), p.Type, typ.Size())
		}
		return nil
	}
	ms, ok := spec.Maps[p.Map.Name]
	if !ok {
		return fmt.Errorf("object has no map %q", p.Map.Name)
	}
	if perCPUMap(ms.Type) {
		return fmt.Errorf("map %q is per-CPU (%s); a parameter writes one value for all CPUs: use a plain array or hash", p.Map.Name, ms.Type)
	}
	if !metricMapTypes[ms.Type] && ms.Type != ebpf.LPMTrie {
		return fmt.Errorf("map %q is a %s; parameters go into array, hash and LPM trie maps", p.Map.Name, ms.Type)
	}
	switch p.Map.As {
	case "keys":
		if int(ms.KeySize) != typ.Size() {
			return fmt.Errorf("map %q has %d-byte keys, parameter type %s has %d-byte items", p.Map.Name, ms.KeySize, p.Type, typ.Size())
		}
		if uint32(n) > ms.MaxEntries {
			return fmt.Errorf("%d items do not fit map %q (max %d entries)", n, p.Map.Name, ms.MaxEntries)
		}
	case "value":
		if int(ms.ValueSize) != typ.Size() {
			return fmt.Errorf("map %q has %d-byte values, parameter type %s is %d bytes", p.Map.Name, ms.ValueSize, p.Type, typ.Size())
		}
		if ms.KeySize != 4 {
			return fmt.Errorf("map %q must have u32 keys to hold a value parameter", p.Map.Name)
		}
	}
	return nil
}

// Metrics checks the package's declared metrics against the maps of
// the attachment's program: a metric names a map the object has, with
// integer keys and values leaf can read. Metrics naming a map of another
// object of the package are not the program's and are skipped.
func Metrics(pkg *repository.Package, spec *ebpf.CollectionSpec) desired.Errors {
	var errs desired.Errors
	bad := func(i int, sub, format string, args ...any) {
		errs = append(errs, desired.Error{Field: "package", Message: fmt.Sprintf("%s: metrics[%d].%s: %s", pkg.Ref(), i, sub, fmt.Sprintf(format, args...))})
	}
	for i, m := range pkg.Manifest.Metrics {
		ms, ok := spec.Maps[m.Map]
		if !ok {
			if !packageHasMap(pkg, m.Map) {
				bad(i, "map", "no object of the package has a map %q", m.Map)
			}
			continue
		}
		if !metricMapTypes[ms.Type] {
			bad(i, "map", "map %s is a %s; metrics read integer values from array and hash maps (stream ring and perf buffers with leaf tail)", m.Map, ms.Type)
			continue
		}
		if !intSize(ms.KeySize) {
			bad(i, "map", "map %s has %d-byte keys; metrics read integer keys of 1, 2, 4 or 8 bytes", m.Map, ms.KeySize)
		}
		if !intSize(ms.ValueSize) {
			bad(i, "map", "map %s has %d-byte values; metrics read integer values of 1, 2, 4 or 8 bytes", m.Map, ms.ValueSize)
		}
		if m.Key != nil && ms.KeySize < 8 && *m.Key >= 1<<(8*ms.KeySize) {
			bad(i, "key", "%d does not fit map %s's %d-byte key", *m.Key, m.Map, ms.KeySize)
		}
		if m.Type == manifest.MetricHistogram && ms.MaxEntries < uint32(len(m.Buckets)) {
			bad(i, "buckets", "%d buckets but map %s holds only %d entries", len(m.Buckets), m.Map, ms.MaxEntries)
		}
	}
	return errs
}

func intSize(n uint32) bool { return n == 1 || n == 2 || n == 4 || n == 8 }

// packageHasMap reports whether any object of the package defines the map.
func packageHasMap(pkg *repository.Package, name string) bool {
	for _, p := range pkg.Manifest.Programs {
		spec, _, err := pkg.LoadSpec(p.Name)
		if err == nil {
			if _, ok := spec.Maps[name]; ok {
				return true
			}
		}
	}
	return false
}
