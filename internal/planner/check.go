package planner

import (
	"bytes"
	"debug/elf"
	"fmt"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// CheckPackage runs every check apply makes on a package itself, as
// opposed to an attachment's values, for one of its programs (spec is
// that program's object): each parameter's constant or map fits its type
// (with the default value, if any), each declared metric's map is one
// metrics can read, and the companion, if declared, runs on this host.
// Lint calls it so that it refuses first whatever apply would refuse.
func CheckPackage(pkg *repository.Package, spec *ebpf.CollectionSpec) desired.Errors {
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
		if err := checkTarget(p, typ, n, spec); err != nil {
			errs = append(errs, desired.Error{Field: "params." + p.Name, Message: fmt.Sprintf("package %s: %v", pkg.Ref(), err)})
		}
	}
	errs = append(errs, checkMetrics(pkg, spec)...)
	errs = append(errs, checkRecords(pkg, spec)...)
	if pkg.Manifest.Companion != nil {
		errs = append(errs, checkCompanion(pkg, runtime.GOARCH)...)
	}
	return errs
}

// elfMachines maps GOARCH to the ELF machine its executables declare.
var elfMachines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "386": elf.EM_386, "arm64": elf.EM_AARCH64, "arm": elf.EM_ARM,
	"riscv64": elf.EM_RISCV, "ppc64le": elf.EM_PPC64, "ppc64": elf.EM_PPC64, "s390x": elf.EM_S390,
	"loong64": elf.EM_LOONGARCH, "mips64le": elf.EM_MIPS, "mipsle": elf.EM_MIPS,
}

// checkCompanion checks that the package, read for arch, holds its
// companion, and that a native companion is built for arch: leafd would
// otherwise attach the program and then fail to start the companion
// ("exec format error"), again and again.
func checkCompanion(pkg *repository.Package, arch string) desired.Errors {
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

// checkRecords checks the declared record streams against the object: the
// map is a ring buffer or perf event array, the record type a struct in
// its BTF with every formatted field. Records of another object's map are
// skipped, as for metrics.
func checkRecords(pkg *repository.Package, spec *ebpf.CollectionSpec) desired.Errors {
	var errs desired.Errors
	bad := func(i int, sub, format string, args ...any) {
		errs = append(errs, desired.Error{Field: "package", Message: fmt.Sprintf("%s: records[%d].%s: %s", pkg.Ref(), i, sub, fmt.Sprintf(format, args...))})
	}
	for i, r := range pkg.Manifest.Records {
		ms, ok := spec.Maps[r.Map]
		if !ok {
			if !packageHasMap(pkg, r.Map) {
				bad(i, "map", "no object of the package has a map %q", r.Map)
			}
			continue
		}
		if ms.Type != ebpf.RingBuf && ms.Type != ebpf.PerfEventArray {
			bad(i, "map", "map %s is a %s; records come from ring buffers and perf event arrays", r.Map, ms.Type)
			continue
		}
		var st *btf.Struct
		if spec.Types == nil || spec.Types.TypeByName(r.Type, &st) != nil {
			bad(i, "type", "the object's BTF has no struct %s (keep it, for example with a global of the type)", r.Type)
			continue
		}
		for f, fm := range r.Formats {
			if err := checkFormatField(st, f, fm); err != nil {
				bad(i, "formats."+f, "%v", err)
			}
		}
	}
	return errs
}

func checkFormatField(st *btf.Struct, field, format string) error {
	for _, m := range st.Members {
		if m.Name != field {
			continue
		}
		size, err := btf.Sizeof(m.Type)
		if err != nil {
			return err
		}
		if n := manifest.FormatSize(format); n != 0 && n != size {
			return fmt.Errorf("struct %s field %s is %d bytes; %s needs %d", st.Name, field, size, format, n)
		}
		return nil
	}
	return fmt.Errorf("struct %s has no field %s", st.Name, field)
}
