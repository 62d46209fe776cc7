package planner

import (
	"bytes"
	"debug/elf"
	"fmt"
	"runtime"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/internal/desired"
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
