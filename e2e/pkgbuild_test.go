package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// TestPkgBuildReproducible builds portfilter from its sources in two
// directories of different depth: the objects carry no build path (it is
// mapped to . and DWARF stripped, BTF kept), so both give one digest; a
// .leafignore'd file stays out, and a build flag from leaf.yaml reaches
// clang.
func TestPkgBuildReproducible(t *testing.T) {
	var digests []string
	for _, dir := range []string{filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "deeper", "still", "b")} {
		portfilterSources(t, dir)
		out := leafPkg(t, "build", dir, "--layout", filepath.Join(t.TempDir(), "layout"))
		digests = append(digests, strings.Fields(out)[1])
		obj, err := os.ReadFile(filepath.Join(dir, "portfilter.bpf.o"))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(obj, []byte(dir)) || bytes.Contains(obj, []byte(".debug_info")) || !bytes.Contains(obj, []byte(".BTF")) {
			t.Errorf("%s: the object holds the build path or DWARF, or lacks BTF", dir)
		}
	}
	if digests[0] != digests[1] {
		t.Errorf("the same sources in two directories built %s and %s", digests[0], digests[1])
	}
	// The ignored file is not in the package.
	layout := filepath.Join(t.TempDir(), "layout")
	dir := filepath.Join(t.TempDir(), "c")
	portfilterSources(t, dir)
	leafPkg(t, "build", dir, "--layout", layout)
	var insp struct {
		Layers []struct{ Title string }
	}
	if err := json.Unmarshal([]byte(leafPkg(t, "inspect", "portfilter@1.0.0", "--layout", layout)), &insp); err != nil {
		t.Fatal(err)
	}
	for _, l := range insp.Layers {
		if l.Title == "notes.txt" || l.Title == ".leafignore" {
			t.Errorf("%s is in the package", l.Title)
		}
	}
	// A flag from the command line reaches clang (an undefined macro
	// used as an #error guard would fail otherwise).
	src, _ := os.ReadFile(filepath.Join(dir, "portfilter.bpf.c"))
	os.WriteFile(filepath.Join(dir, "portfilter.bpf.c"), append([]byte("#ifndef LEAF_TEST_FLAG\n#error want -DLEAF_TEST_FLAG\n#endif\n"), src...), 0o644)
	if r := runCLI(t, "/nonexistent.sock", nil, "pkg", "build", dir, "--layout", layout, "--force"); r.Code == 0 || !strings.Contains(r.Stderr, "want -DLEAF_TEST_FLAG") {
		t.Fatalf("build without the flag: exit %d, %s", r.Code, r.Stderr)
	}
	leafPkg(t, "build", dir, "--layout", layout, "--force", "--cflag", "-DLEAF_TEST_FLAG")
	if r := runCLI(t, "/nonexistent.sock", nil, "pkg", "build", dir, "--layout", layout, "--force", "--cflag", "-fplugin=/tmp/x.so"); r.Code == 0 || !strings.Contains(r.Stderr, "not a flag leaf passes") {
		t.Errorf("a plugin flag: exit %d, %s", r.Code, r.Stderr)
	}
}

// TestPkgInitBuildLintDeploy scaffolds a package with leaf pkg init
// (vmlinux.h from this kernel's BTF), builds, lints and deploys it with
// leafd, and sees it count packets with the step its parameter sets.
func TestPkgInitBuildLintDeploy(t *testing.T) {
	testenv.RequireKernel(t)
	dir := filepath.Join(t.TempDir(), "hello-xdp")
	leafPkg(t, "init", "hello-xdp", dir)
	for _, f := range []string{"leaf.yaml", "hello-xdp.bpf.c", "README.md", ".leafignore", "vmlinux.h"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("init did not write %s: %v", f, err)
		}
	}
	layout := filepath.Join(t.TempDir(), "layout")
	digest := strings.Fields(leafPkg(t, "build", dir, "--layout", layout))[1]
	lint := leafPkg(t, "lint", dir)
	for _, check := range []string{"btf:count_hello_xdp", "verifier:count_hello_xdp", "apply:count_hello_xdp"} {
		if !strings.Contains(lint, check) {
			t.Errorf("lint did not run %s:\n%s", check, lint)
		}
	}
	if strings.Contains(lint, "FAIL") {
		t.Errorf("lint failed:\n%s", lint)
	}
	insp := leafPkg(t, "inspect", "hello-xdp@0.1.0", "--layout", layout)
	if strings.Contains(insp, "vmlinux.h") {
		t.Error("vmlinux.h went into the package")
	}

	p := testenv.NewPair(t)
	cfg := cliFile(t, "leafd.yaml", []byte(fmt.Sprintf("apiVersion: leaf.dev/v1alpha1\nkind: DaemonConfig\nrepositories:\n  - {name: mine, path: %s, trust: {allowUnsigned: true}}\n", layout)))
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--config", cfg}})
	apply(t, d, doc(fmt.Sprintf("name: hello\npackage: hello-xdp@0.1.0@%s\nhook: {type: xdp, interface: %s, netns: %s}\nparams: {step: 3}", digest, p.IfB, p.NsB)))
	if n := p.Delivered(t, 7601, 5, 2*time.Second); n != 5 {
		t.Fatalf("%d of 5 arrived", n)
	}
	rows := cliTable(t, mustCLI(t, d.Socket, "maps", "hello", "counters"), "KEY", "VALUE")
	if !cliAtLeast(rows["0"]["VALUE"], 15) {
		t.Errorf("counters: %v, want at least 5 packets × step 3", rows)
	}
}

// portfilterSources writes portfilter's sources (no object) into dir, and
// the shared headers it includes into dir/../include as in packages/, with
// a scratch file .leafignore leaves out.
func portfilterSources(t *testing.T, dir string) {
	t.Helper()
	include := filepath.Join(dir, "..", "include")
	os.MkdirAll(dir, 0o755)
	os.MkdirAll(include, 0o755)
	headers, _ := filepath.Glob(filepath.Join("..", "packages", "include", "*.h"))
	files := map[string]string{}
	for _, f := range []string{"leaf.yaml", "README.md", "portfilter.bpf.c"} {
		files[filepath.Join("..", "packages", "portfilter", f)] = dir
	}
	for _, h := range headers {
		files[h] = include
	}
	for src, to := range files {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(to, filepath.Base(src)), data, 0o644)
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("scratch "+dir), 0o644)
	os.WriteFile(filepath.Join(dir, ".leafignore"), []byte("# scratch\nnotes.txt\n"), 0o644)
}
