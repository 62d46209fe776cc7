// Package lint is the automated review of a package: the manifest
// validates, every object is a sane BPF ELF with BTF and a license, every
// declared parameter exists in its object, and every program passes the
// kernel verifier (loaded, then closed; nothing is attached).
package lint

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/internal/pkgcheck"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// MaxSeriesWarning is the number of series one metric may export per
// attachment before lint warns: past it a scrape grows large and slow.
const MaxSeriesWarning = 1024

// Summary is the outcome of a lint run.
type Summary struct {
	Passed bool    `json:"passed"`
	Checks []Check `json:"checks"`
}

// Check is one check. A warning passes but says what to look at.
type Check struct {
	Name    string `json:"name"`
	Passed  bool   `json:"passed"`
	Warning bool   `json:"warning,omitempty"`
	Message string `json:"message,omitempty"`
}

// Options select the checks that need privileges.
type Options struct {
	// Load runs the verifier (needs root or CAP_BPF).
	Load bool
}

// Run lints a package (already parsed, so its manifest validated).
func Run(p *repository.Package, opts Options) Summary {
	s := Summary{Passed: true}
	add := func(name string, err error) {
		c := Check{Name: name, Passed: err == nil}
		if err != nil {
			c.Message = err.Error()
			s.Passed = false
		}
		s.Checks = append(s.Checks, c)
	}
	add("manifest", p.Manifest.Validate())
	for _, prog := range p.Manifest.Programs {
		spec, _, err := p.LoadSpec(prog.Name)
		add("elf:"+prog.Name, err)
		if err != nil {
			continue
		}
		add("btf:"+prog.Name, checkBTF(spec))
		add("license:"+prog.Name, checkLicense(spec, prog.Function))
		// Apply's own checks, so lint refuses first what apply would.
		if errs := pkgcheck.Package(p, spec); len(errs) > 0 {
			add("apply:"+prog.Name, errs)
		} else {
			add("apply:"+prog.Name, nil)
		}
		for _, w := range warnings(p, spec) {
			s.Checks = append(s.Checks, Check{Name: "warning:" + prog.Name, Passed: true, Warning: true, Message: w})
		}
		if opts.Load {
			add("verifier:"+prog.Name, load(spec, prog.Function))
		}
	}
	add("params", checkParams(p))
	return s
}

func checkBTF(spec *ebpf.CollectionSpec) error {
	if spec.Types == nil {
		return errors.New("object has no BTF (compile with -g)")
	}
	return nil
}

func checkLicense(spec *ebpf.CollectionSpec, fn string) error {
	ps := spec.Programs[fn]
	if ps == nil || strings.TrimSpace(ps.License) == "" {
		return errors.New(`object has no "license" section`)
	}
	return nil
}

// load loads the program through the verifier and closes it at once,
// the way apply loads it: only this program, and no map pinned by the
// object's own request (leaf pins maps itself; libbpf's pin-by-name
// would otherwise need a pin path and fail).
func load(spec *ebpf.CollectionSpec, fn string) error {
	spec = spec.Copy()
	spec.Programs = map[string]*ebpf.ProgramSpec{fn: spec.Programs[fn]}
	for _, ms := range spec.Maps {
		ms.Pinning = ebpf.PinNone
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{})
	if err != nil {
		return fmt.Errorf("%s: %w", fn, err)
	}
	coll.Close()
	return nil
}

// checkParams checks that every parameter's map or constant exists.
func checkParams(p *repository.Package) error {
	var errs []error
	for _, param := range p.Manifest.Params {
		found := false
		for _, prog := range p.Manifest.Programs {
			spec, _, err := p.LoadSpec(prog.Name)
			if err != nil {
				continue
			}
			if param.Const != "" {
				if v, ok := spec.Variables[param.Const]; ok && v.Constant() {
					found = true
				}
			} else if _, ok := spec.Maps[param.Map.Name]; ok {
				found = true
			}
		}
		if !found {
			what := "constant " + param.Const
			if param.Map != nil {
				what = "map " + param.Map.Name
			}
			errs = append(errs, fmt.Errorf("parameter %s: no object has its %s", param.Name, what))
		}
	}
	return errors.Join(errs...)
}

// warnings are what passes apply but hurts in production: metrics whose
// label sets can explode.
func warnings(p *repository.Package, spec *ebpf.CollectionSpec) []string {
	var out []string
	for i, m := range p.Manifest.Metrics {
		ms, ok := spec.Maps[m.Map]
		if !ok || m.ByKey == "" || ms.MaxEntries <= MaxSeriesWarning {
			continue
		}
		out = append(out, fmt.Sprintf("metrics[%d] (%s): byKey over map %s exports up to %d series per attachment (more than %d); read one key, sum the map, or look keys up with leaf maps", i, m.Name, m.Map, ms.MaxEntries, MaxSeriesWarning))
	}
	return out
}
