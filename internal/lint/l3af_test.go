package lint

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"

	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// TestLintLoadsLikeApply: an L3AF package whose object pins a map by
// name (as L3AF's programs do) passes the verifier check, as it applies;
// loading it with the object's own pinning needs a pin path and fails.
func TestLintLoadsLikeApply(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}
	if err := features.HaveProgramType(ebpf.XDP); err != nil {
		t.Skipf("kernel cannot load XDP programs: %v", err)
	}
	obj, err := os.ReadFile(filepath.Join("..", "..", "testdata", "l3af", "portdrop", "portdrop.bpf.o"))
	if err != nil {
		t.Fatal(err)
	}
	// What leaf derives for it (see pkgsource.DeriveManifest).
	yaml := func(configType string) []byte {
		return []byte(`apiVersion: leaf.dev/v1alpha1
kind: Package
name: portdrop
version: 1.0.0
description: L3AF-style fixture
license: Dual BSD/GPL
programs:
  - {name: _xdp_portdrop, object: portdrop.bpf.o, function: _xdp_portdrop, type: xdp, hooks: [xdp]}
params:
  - {name: portdrop_config, type: ` + configType + `, map: {name: portdrop_config, as: value}}
  - {name: portdrop_ports, type: list<u16>, map: {name: portdrop_ports, as: keys}}
`)
	}
	dir := filepath.Join(t.TempDir(), "portdrop")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, manifest.FileName), yaml("u32"), 0o644)
	os.WriteFile(filepath.Join(dir, "portdrop.bpf.o"), obj, 0o644)
	repo, err := repository.OpenDir(filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := repo.Resolve("portdrop", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if s := Run(pkg, Options{Load: true}); !s.Passed {
		t.Fatalf("lint: %+v", s.Checks)
	}
	spec, _, _ := pkg.LoadSpec("_xdp_portdrop")
	if spec.Maps["portdrop_config"].Pinning != ebpf.PinByName {
		t.Fatal("fixture no longer pins portdrop_config by name: the test proves nothing")
	}
	if _, err := ebpf.NewCollection(spec); err == nil {
		t.Fatal("the object's own pinning loaded without a pin path: the test proves nothing")
	}
	// A parameter whose type does not fit its map is refused as apply
	// refuses it.
	os.WriteFile(filepath.Join(dir, manifest.FileName), yaml("u8"), 0o644)
	repo, _ = repository.OpenDir(filepath.Dir(dir))
	pkg, _ = repo.Resolve("portdrop", "1.0.0")
	if s := Run(pkg, Options{}); s.Passed {
		t.Errorf("a u8 parameter for a map of u32 values passed: %+v", s.Checks)
	}
}
