package lint

import (
	"context"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"oras.land/oras-go/v2/content/memory"

	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/ocipkg"
	"github.com/leaf-ebpf/leaf/internal/planner"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// lintcases reads testdata/packages/lintcases with extra manifest lines
// and extra files, built and read back as leafd reads a package.
func lintcases(t *testing.T, extraYAML string, extraFiles map[string][]byte) *repository.Package {
	t.Helper()
	dir := filepath.Join("..", "..", "testdata", "packages", "lintcases")
	files := map[string][]byte{}
	for _, f := range []string{"leaf.yaml", "lintcases.bpf.o", "README.md"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		files[f] = data
	}
	files["leaf.yaml"] = append(files["leaf.yaml"], extraYAML...)
	for name, data := range extraFiles {
		files[name] = data
	}
	ctx := context.Background()
	mem := memory.New()
	desc, _, err := ocipkg.BuildFiles(ctx, files, mem)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ocipkg.Read(ctx, mem, desc, "")
	if err != nil {
		t.Fatal(err)
	}
	return repository.NewPackage(p.Manifest, p.Digest(), "test", p.Raw, p.Files)
}

// oneRepo serves one package.
type oneRepo struct{ p *repository.Package }

func (r oneRepo) Name() string { return "test" }
func (r oneRepo) Resolve(name, version string) (*repository.Package, error) {
	if name != r.p.Manifest.Name || version != r.p.Manifest.Version {
		return nil, fmt.Errorf("%w: %s@%s", repository.ErrNotFound, name, version)
	}
	return r.p, nil
}
func (r oneRepo) List() []*repository.Package { return []*repository.Package{r.p} }

// applyVerdict resolves an attachment of the package as apply does
// (admission: planner.Resolve), the companion asked for.
func applyVerdict(t *testing.T, p *repository.Package) error {
	t.Helper()
	st, err := desired.Parse([]byte(`apiVersion: leaf.dev/v1alpha1
kind: HostState
spec:
  attachments:
    - name: lint
      package: lintcases@1.0.0
      hook: {type: xdp, interface: lo}
` + func() string {
		if p.Manifest.Companion != nil {
			return "      companion: {}\n"
		}
		return ""
	}()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = planner.Resolve(st, repository.Set{oneRepo{p}}, planner.Options{})
	return err
}

// elfFor is a minimal ELF64 executable header for machine.
func elfFor(machine elf.Machine) []byte {
	h := make([]byte, 64)
	copy(h, elf.ELFMAG)
	h[elf.EI_CLASS], h[elf.EI_DATA], h[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	binary.LittleEndian.PutUint16(h[16:], uint16(elf.ET_EXEC))
	binary.LittleEndian.PutUint16(h[18:], uint16(machine))
	binary.LittleEndian.PutUint32(h[20:], uint32(elf.EV_CURRENT))
	binary.LittleEndian.PutUint16(h[52:], 64) // e_ehsize
	return h
}

// TestLintRefusesWhatApplyRefuses: each broken package below is refused
// by apply (the planner's admission) and by lint, with the same reason;
// the well-formed ones pass both.
func TestLintRefusesWhatApplyRefuses(t *testing.T) {
	host := elf.EM_X86_64
	other, otherArch := elf.EM_AARCH64, "arm64"
	if runtime.GOARCH == "arm64" {
		host, other, otherArch = elf.EM_AARCH64, elf.EM_X86_64, "amd64"
	} else if runtime.GOARCH != "amd64" {
		t.Skipf("the companion cases know amd64 and arm64, not %s", runtime.GOARCH)
	}
	for _, tc := range []struct {
		name  string
		yaml  string
		files map[string][]byte
		want  string // "" = both accept
	}{
		{"fine", `params:
  - {name: limit, type: u32, default: 5, const: limit}
  - {name: allowed, type: list<u32>, default: [1, 2], map: {name: allow, as: keys}}
metrics:
  - {name: hits_total, help: Hits., type: counter, map: big, key: 0}
  - {name: pcpu_total, help: Per-CPU counts summed., type: counter, map: pcpu}
`, nil, ""},
		{"metric names a missing map", `metrics:
  - {name: hits_total, help: Hits., type: counter, map: nothere}
`, nil, `no object of the package has a map "nothere"`},
		{"metric on a ring buffer", `metrics:
  - {name: events_total, help: Events., type: counter, map: events}
`, nil, "map events is a RingBuf; metrics read integer values from array and hash maps"},
		{"constant size differs", `params:
  - {name: limit, type: u64, default: 5, const: limit}
`, nil, `variable "limit" is 4 bytes, parameter type u64 is 8`},
		{"map key size differs", `params:
  - {name: allowed, type: list<u16>, map: {name: allow, as: keys}}
`, nil, `map "allow" has 4-byte keys, parameter type list<u16> has 2-byte items`},
		{"map value size differs", `params:
  - {name: hits, type: u32, default: 1, map: {name: big, as: value}}
`, nil, `map "big" has 8-byte values, parameter type u32 is 4 bytes`},
		{"parameter into per-CPU values", `params:
  - {name: base, type: u64, default: 1, map: {name: pcpu, as: value}}
`, nil, `map "pcpu" is per-CPU (PerCPUArray)`},
		{"parameter into a ring buffer", `params:
  - {name: base, type: list<u32>, map: {name: events, as: keys}}
`, nil, `map "events" is a RingBuf; parameters go into array, hash and LPM trie maps`},
		{"default list larger than the map", `params:
  - {name: allowed, type: list<u32>, default: [` + strings.TrimSuffix(strings.Repeat("1, ", 65), ", ") + `], map: {name: allow, as: keys}}
`, nil, `65 items do not fit map "allow" (max 64 entries)`},
		{"companion for another architecture", "companion: {path: bin/mon}\n",
			map[string][]byte{"bin/mon": elfFor(other)}, "companion bin/mon: an executable for " + other.String()},
		{"companion only for another architecture", "companion: {path: bin/mon}\n",
			map[string][]byte{"arch/" + otherArch + "/bin/mon": elfFor(other)}, "companion bin/mon: no build for architecture " + runtime.GOARCH},
		{"companion for this architecture", "companion: {path: bin/mon}\n",
			map[string][]byte{"arch/" + runtime.GOARCH + "/bin/mon": elfFor(host), "arch/" + otherArch + "/bin/mon": elfFor(other)}, ""},
		{"companion script", "companion: {path: bin/mon}\n",
			map[string][]byte{"bin/mon": []byte("#!/bin/sh\nexit 0\n")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := lintcases(t, tc.yaml, tc.files)
			applyErr := applyVerdict(t, p)
			s := Run(p, Options{})
			var failed []string
			for _, c := range s.Checks {
				if !c.Passed {
					failed = append(failed, c.Name+": "+c.Message)
				}
			}
			if tc.want == "" {
				if applyErr != nil || !s.Passed {
					t.Fatalf("apply: %v; lint failed: %q; want both to accept", applyErr, failed)
				}
				return
			}
			if applyErr == nil || !strings.Contains(applyErr.Error(), tc.want) {
				t.Errorf("apply: %v; want a refusal saying %q", applyErr, tc.want)
			}
			if s.Passed || len(failed) != 1 || !strings.HasPrefix(failed[0], "apply:lint_xdp: ") || !strings.Contains(failed[0], tc.want) {
				t.Errorf("lint failed checks %q; want apply:lint_xdp saying %q", failed, tc.want)
			}
		})
	}
}

// TestLintWarnsOnExplodingLabels: byKey over a 65 536-entry array passes
// (apply accepts it) with a warning naming the series count.
func TestLintWarnsOnExplodingLabels(t *testing.T) {
	p := lintcases(t, `metrics:
  - {name: hits_total, help: Hits per slot., type: counter, map: big, byKey: slot}
  - {name: allowed, help: Allowed keys., type: gauge, map: allow, byKey: key}
`, nil)
	if err := applyVerdict(t, p); err != nil {
		t.Fatalf("apply refuses: %v", err)
	}
	s := Run(p, Options{})
	var warns []string
	for _, c := range s.Checks {
		if c.Warning {
			warns = append(warns, c.Message)
		}
	}
	if !s.Passed || len(warns) != 1 || !strings.Contains(warns[0], "byKey over map big exports up to 65536 series per attachment") {
		t.Errorf("passed %t, warnings %q; want a pass with one warning for map big", s.Passed, warns)
	}
}
