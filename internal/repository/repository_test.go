package repository

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/packages"
)

var builtin = []string{"callcount@1.0.0", "connlimit@1.0.0", "execcount@1.0.0", "firewall@1.0.0", "flowexport@1.0.0", "mirror@1.0.0", "pktcount@1.0.0", "portfilter@1.0.0", "ratelimit@1.0.0"}

// copyPackage copies the built-in package dir src (under packages/) to dst.
func copyPackage(t *testing.T, src, dst string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join("../../packages", src))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("../../packages", src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// editManifest replaces old with new in dir's leaf.yaml, failing when old
// is not there.
func editManifest(t *testing.T, dir, old, new string) {
	t.Helper()
	p := filepath.Join(dir, "leaf.yaml")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%s has no %q", p, old)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func refs(pkgs []*Package) []string {
	var out []string
	for _, p := range pkgs {
		out = append(out, p.Ref())
	}
	return out
}

func openBuiltin(t *testing.T) *Local {
	t.Helper()
	l, err := OpenFS("builtin", packages.FS)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func TestOpenFSBuiltin(t *testing.T) {
	l := openBuiltin(t)
	if l.Name() != "builtin" {
		t.Errorf("Name() = %q", l.Name())
	}
	got := refs(l.List())
	if strings.Join(got, " ") != strings.Join(builtin, " ") {
		t.Fatalf("List() = %v, want %v", got, builtin)
	}
	digests := map[string]bool{}
	for _, p := range l.List() {
		if !digestRE.MatchString(p.Digest) {
			t.Errorf("%s digest %q", p.Ref(), p.Digest)
		}
		if digests[p.Digest] {
			t.Errorf("%s shares its digest with another package", p.Ref())
		}
		digests[p.Digest] = true
		if p.Repository != "builtin" {
			t.Errorf("%s repository %q", p.Ref(), p.Repository)
		}
		if _, err := p.ReadFile("README.md"); err != nil {
			t.Errorf("%s: %v", p.Ref(), err)
		}
		for _, prog := range p.Manifest.Programs {
			if _, _, err := p.LoadSpec(prog.Name); err != nil {
				t.Errorf("%s: LoadSpec(%s): %v", p.Ref(), prog.Name, err)
			}
		}
	}
	p, err := l.Resolve("portfilter", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if p.Manifest.Name != "portfilter" || p.Ref() != "portfilter@1.0.0" {
		t.Errorf("Resolve returned %s", p.Ref())
	}
}

func TestResolveNotFound(t *testing.T) {
	l := openBuiltin(t)
	_, err := l.Resolve("nope", "1.0.0")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `no package "nope" in repository builtin`) {
		t.Errorf("unknown name: %v", err)
	}
	_, err = l.Resolve("portfilter", "9.9.9")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `package portfilter has no version "9.9.9" in repository builtin (it has: 1.0.0)`) {
		t.Errorf("unknown version: %v", err)
	}
	_, err = l.Resolve("", "")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("empty ref: %v", err)
	}
}

func TestResolveListsVersions(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"1.0.0", "1.10.0", "0.9.0"} {
		dir := filepath.Join(root, "portfilter", v)
		copyPackage(t, "portfilter", dir)
		editManifest(t, dir, "version: 1.0.0", "version: "+v)
	}
	l, err := OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Resolve("portfilter", "2.0.0")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "(it has: 0.9.0, 1.0.0, 1.10.0)") {
		t.Errorf("error %v does not list versions sorted", err)
	}
	for _, v := range []string{"0.9.0", "1.0.0", "1.10.0"} {
		p, err := l.Resolve("portfilter", v)
		if err != nil || p.Manifest.Version != v {
			t.Errorf("Resolve(%s) = %v, %v", v, p, err)
		}
	}
	if got := refs(l.List()); strings.Join(got, " ") != "portfilter@0.9.0 portfilter@1.0.0 portfilter@1.10.0" {
		t.Errorf("List() = %v", got)
	}
}

// TestDigest checks that the digest depends on every file's name and
// content, and on nothing else (not the file system it is read from).
func TestDigest(t *testing.T) {
	embedded := openBuiltin(t)
	want, err := embedded.Resolve("portfilter", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	digestOf := func(dir string) string {
		t.Helper()
		l, err := OpenDir(filepath.Dir(dir))
		if err != nil {
			t.Fatal(err)
		}
		p, err := l.Resolve("portfilter", "1.0.0")
		if err != nil {
			t.Fatal(err)
		}
		return p.Digest
	}
	newCopy := func() string {
		dir := filepath.Join(t.TempDir(), "portfilter")
		copyPackage(t, "portfilter", dir)
		return dir
	}
	dir := newCopy()
	if got := digestOf(dir); got != want.Digest {
		t.Fatalf("same files, different digest: dir %s, embedded %s", got, want.Digest)
	}
	if got := digestOf(dir); got != want.Digest {
		t.Fatalf("digest not stable across opens: %s then %s", want.Digest, got)
	}
	// Modes and times are not content.
	if err := os.Chmod(filepath.Join(dir, "README.md"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(dir, "README.md"), time.Unix(1, 0), time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	if got := digestOf(dir); got != want.Digest {
		t.Errorf("digest changed with mode/time: %s", got)
	}

	seen := map[string]string{want.Digest: "original"}
	for _, tc := range []struct {
		name   string
		change func(dir string)
	}{
		{"manifest", func(dir string) { editManifest(t, dir, "Drops TCP", "Drops  TCP") }},
		{"readme", func(dir string) { appendFile(t, filepath.Join(dir, "README.md"), "\n") }},
		{"source", func(dir string) { appendFile(t, filepath.Join(dir, "portfilter.bpf.c"), " ") }},
		{"object", func(dir string) { appendFile(t, filepath.Join(dir, "portfilter.bpf.o"), "\x00") }},
		{"new file", func(dir string) { writeFile(t, filepath.Join(dir, "NOTICE"), "") }},
		{"new file in subdir", func(dir string) { writeFile(t, filepath.Join(dir, "docs", "x.md"), "x") }},
		{"renamed file", func(dir string) {
			if err := os.Rename(filepath.Join(dir, "README.md"), filepath.Join(dir, "README")); err != nil {
				t.Fatal(err)
			}
		}},
		{"removed file", func(dir string) {
			if err := os.Remove(filepath.Join(dir, "portfilter.bpf.c")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		dir := newCopy()
		tc.change(dir)
		got := digestOf(dir)
		if prev, dup := seen[got]; dup {
			t.Errorf("%s: digest %s unchanged (same as %s)", tc.name, got, prev)
		}
		seen[got] = tc.name
	}
}

func appendFile(t *testing.T, p, s string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLayouts(t *testing.T) {
	root := t.TempDir()
	copyPackage(t, "portfilter", filepath.Join(root, "portfilter"))                // <root>/<dir>/leaf.yaml
	copyPackage(t, "pktcount", filepath.Join(root, "pktcount", "1.0.0"))           // <root>/<dir>/<dir>/leaf.yaml
	copyPackage(t, "execcount", filepath.Join(root, "deep", "er", "execcount"))    // too deep: ignored
	writeFile(t, filepath.Join(root, "leaf.yaml"), "not: a package at the root\n") // the root is no package
	writeFile(t, filepath.Join(root, "README.md"), "repository readme")
	l, err := OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if got := refs(l.List()); strings.Join(got, " ") != "pktcount@1.0.0 portfilter@1.0.0" {
		t.Errorf("List() = %v", got)
	}
	if l.Name() != root {
		t.Errorf("Name() = %q, want %q", l.Name(), root)
	}
}

func TestOpenDirErrors(t *testing.T) {
	if _, err := OpenDir(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "open repository") {
		t.Errorf("missing dir: %v", err)
	}
	l, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatalf("empty dir: %v", err)
	}
	if len(l.List()) != 0 {
		t.Errorf("empty dir lists %v", refs(l.List()))
	}
}

func TestInvalidManifestNamesPackage(t *testing.T) {
	root := t.TempDir()
	copyPackage(t, "portfilter", filepath.Join(root, "pf"))
	editManifest(t, filepath.Join(root, "pf"), "type: xdp\n", "type: sched_cls\n")
	_, err := OpenDir(root)
	if err == nil || !strings.Contains(err.Error(), "package pf: leaf.yaml: programs[0].hooks[0]: program type sched_cls cannot attach to hook \"xdp\"") {
		t.Errorf("got %v", err)
	}
}

func TestDuplicateRefused(t *testing.T) {
	root := t.TempDir()
	copyPackage(t, "portfilter", filepath.Join(root, "a"))
	copyPackage(t, "portfilter", filepath.Join(root, "b"))
	_, err := OpenDir(root)
	if err == nil || !strings.Contains(err.Error(), "portfilter@1.0.0 is defined twice (again in b)") {
		t.Errorf("got %v", err)
	}
	// Same name, other version: fine.
	editManifest(t, filepath.Join(root, "b"), "version: 1.0.0", "version: 1.0.1")
	if _, err := OpenDir(root); err != nil {
		t.Errorf("two versions refused: %v", err)
	}
}

func TestNonRegularFilesRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(t *testing.T, dir string)
	}{
		{"symlink to file", func(t *testing.T, dir string) {
			if err := os.Symlink("/etc/hostname", filepath.Join(dir, "extra")); err != nil {
				t.Fatal(err)
			}
		}},
		{"symlink to dir", func(t *testing.T, dir string) {
			if err := os.Symlink("/etc", filepath.Join(dir, "etc")); err != nil {
				t.Fatal(err)
			}
		}},
		{"dangling symlink", func(t *testing.T, dir string) {
			if err := os.Symlink("nowhere", filepath.Join(dir, "x")); err != nil {
				t.Fatal(err)
			}
		}},
		{"object is a symlink", func(t *testing.T, dir string) {
			obj := filepath.Join(dir, "portfilter.bpf.o")
			if err := os.Rename(obj, filepath.Join(dir, "real.o")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("real.o", obj); err != nil {
				t.Fatal(err)
			}
		}},
		{"manifest is a symlink", func(t *testing.T, dir string) {
			m := filepath.Join(dir, "leaf.yaml")
			if err := os.Rename(m, filepath.Join(dir, "real.yaml")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("real.yaml", m); err != nil {
				t.Fatal(err)
			}
		}},
		{"fifo", func(t *testing.T, dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o600); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
		}},
		{"manifest is a fifo", func(t *testing.T, dir string) {
			m := filepath.Join(dir, "leaf.yaml")
			if err := os.Remove(m); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mkfifo(m, 0o600); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "portfilter")
			copyPackage(t, "portfilter", dir)
			tc.make(t, dir)
			done := make(chan error, 1)
			go func() {
				_, err := OpenDir(root)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "not a regular file") || !strings.Contains(err.Error(), "package portfilter") {
					t.Errorf("got %v, want a not-a-regular-file error naming the package", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("OpenDir hangs")
			}
		})
	}
}

func TestLimits(t *testing.T) {
	t.Run("file size", func(t *testing.T) {
		root := t.TempDir()
		dir := filepath.Join(root, "portfilter")
		copyPackage(t, "portfilter", dir)
		f, err := os.Create(filepath.Join(dir, "big"))
		if err != nil {
			t.Fatal(err)
		}
		// Sparse: no disk is used.
		if err := f.Truncate(maxFileSize + 1); err != nil {
			t.Fatal(err)
		}
		f.Close()
		_, err = OpenDir(root)
		if err == nil || !strings.Contains(err.Error(), "big: larger than") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("file count", func(t *testing.T) {
		root := t.TempDir()
		dir := filepath.Join(root, "portfilter")
		copyPackage(t, "portfilter", dir)
		for i := 0; i < maxFiles; i++ {
			writeFile(t, filepath.Join(dir, "many", strings.Repeat("f", 1+i%50)+string(rune('a'+i/50))), "")
		}
		_, err := OpenDir(root)
		if err == nil || !strings.Contains(err.Error(), "more than 256 files") {
			t.Errorf("got %v", err)
		}
	})
}

func TestReadFileStaysInside(t *testing.T) {
	p, err := openBuiltin(t).Resolve("portfilter", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"../execcount/leaf.yaml", "/etc/passwd", "missing"} {
		if data, err := p.ReadFile(name); err == nil {
			t.Errorf("ReadFile(%q) read %d bytes", name, len(data))
		}
	}
	data, err := p.ReadFile("leaf.yaml")
	if err != nil || !strings.Contains(string(data), "name: portfilter") {
		t.Errorf("ReadFile(leaf.yaml) = %q, %v", data, err)
	}
}

func TestLoadSpec(t *testing.T) {
	l := openBuiltin(t)
	pf, _ := l.Resolve("portfilter", "1.0.0")
	spec, prog, err := pf.LoadSpec("")
	if err != nil {
		t.Fatal(err)
	}
	if prog.Name != "port_filter" {
		t.Errorf("program %q", prog.Name)
	}
	ps := spec.Programs["xdp_port_filter"]
	if ps == nil || ps.Type != ebpf.XDP || ps.SectionName != "xdp" {
		t.Errorf("program spec %+v", ps)
	}
	if _, ok := spec.Maps["blocked_ports"]; !ok {
		t.Error("no blocked_ports map in spec")
	}
	pc, _ := l.Resolve("pktcount", "1.0.0")
	if _, _, err := pc.LoadSpec(""); err == nil || !strings.Contains(err.Error(), "has 3 programs") {
		t.Errorf("LoadSpec(\"\") on 3 programs: %v", err)
	}
	if _, _, err := pc.LoadSpec("nope"); err == nil || !strings.Contains(err.Error(), `no program "nope"`) {
		t.Errorf("LoadSpec(nope): %v", err)
	}
	for _, name := range []string{"count_xdp", "count_tc", "count_cgroup_skb"} {
		_, prog, err := pc.LoadSpec(name)
		if err != nil || prog.Name != name {
			t.Errorf("LoadSpec(%s) = %v, %v", name, prog, err)
		}
	}
}

// TestLoadSpecMismatch edits a copied package's manifest so that it no
// longer agrees with its ELF object.
func TestLoadSpecMismatch(t *testing.T) {
	t.Run("missing object", func(t *testing.T) {
		root := t.TempDir()
		dir := filepath.Join(root, "portfilter")
		copyPackage(t, "portfilter", dir)
		editManifest(t, dir, "object: portfilter.bpf.o", "object: other.bpf.o")
		if _, err := OpenDir(root); err == nil || !strings.Contains(err.Error(), "object other.bpf.o is not in the package") {
			t.Errorf("got %v, want the missing object named", err)
		}
	})
	for _, tc := range []struct {
		name     string
		pkg      string
		old, new string
		program  string
		want     string
	}{
		{"function", "portfilter", "function: xdp_port_filter", "function: xdp_other", "", `object portfilter.bpf.o has no function "xdp_other"`},
		{"section", "portfilter", "section: xdp\n", "section: xdp.frags\n", "", `function xdp_port_filter is in section "xdp", manifest says "xdp.frags"`},
		{"tracepoint section", "execcount", "section: tracepoint/sched/sched_process_exec", "section: tracepoint/sched/sched_process_fork", "", `is in section "tracepoint/sched/sched_process_exec"`},
		{"type", "pktcount", "type: xdp\n    hooks: [xdp]", "type: sched_cls\n    hooks: [tc]", "count_xdp", "function count_xdp has program type XDP, manifest says sched_cls"},
		{"type kprobe", "execcount", "type: tracepoint\n    hooks: [tracepoint]", "type: kprobe\n    hooks: [kprobe]", "", "has program type TracePoint, manifest says kprobe"},
		{"not an ELF", "portfilter", "object: portfilter.bpf.o", "object: README.md", "", "object README.md"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, tc.pkg)
			copyPackage(t, tc.pkg, dir)
			editManifest(t, dir, tc.old, tc.new)
			l, err := OpenDir(root)
			if err != nil {
				t.Fatal(err)
			}
			p, err := l.Resolve(tc.pkg, "1.0.0")
			if err != nil {
				t.Fatal(err)
			}
			spec, prog, err := p.LoadSpec(tc.program)
			if err == nil {
				t.Fatalf("LoadSpec accepted it: %v %v", spec, prog)
			}
			if !strings.Contains(err.Error(), "package "+tc.pkg+"@1.0.0") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want the package and %q", err, tc.want)
			}
		})
	}
}

func TestSet(t *testing.T) {
	embedded := openBuiltin(t)
	root := t.TempDir()
	dir := filepath.Join(root, "portfilter")
	copyPackage(t, "portfilter", dir)
	editManifest(t, dir, "Drops TCP", "Local copy, drops TCP")
	dir2 := filepath.Join(root, "portfilter2")
	copyPackage(t, "portfilter", dir2)
	editManifest(t, dir2, "version: 1.0.0", "version: 2.0.0")
	local, err := OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}

	// First repository wins.
	p, err := Set{local, embedded}.Resolve("portfilter", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if p.Repository != root || !strings.HasPrefix(p.Manifest.Description, "Local copy") {
		t.Errorf("got %s from %s", p.Ref(), p.Repository)
	}
	p, err = Set{embedded, local}.Resolve("portfilter", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if p.Repository != "builtin" {
		t.Errorf("got %s from %s, want builtin", p.Ref(), p.Repository)
	}
	// Later repositories are searched when earlier ones lack it.
	p, err = Set{embedded, local}.Resolve("portfilter", "2.0.0")
	if err != nil || p.Repository != root {
		t.Errorf("portfilter@2.0.0: %v, %v", p, err)
	}
	p, err = Set{local, embedded}.Resolve("execcount", "1.0.0")
	if err != nil || p.Repository != "builtin" {
		t.Errorf("execcount@1.0.0: %v, %v", p, err)
	}
	// Not found anywhere: every repository says why.
	_, err = Set{local, embedded}.Resolve("portfilter", "3.0.0")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	for _, want := range []string{"portfilter@3.0.0", "repository " + root + " (it has: 1.0.0, 2.0.0)", "repository builtin (it has: 1.0.0)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Count(err.Error(), ErrNotFound.Error()) != 1 {
		t.Errorf("error repeats %q: %v", ErrNotFound, err)
	}
	_, err = Set{}.Resolve("portfilter", "1.0.0")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no repositories configured") {
		t.Errorf("empty set: %v", err)
	}
	if got := refs(Set{local, embedded}.List()); strings.Join(got, " ") != "portfilter@1.0.0 portfilter@2.0.0 "+strings.Join(builtin, " ") {
		t.Errorf("List() = %v", got)
	}
}

// brokenRepo fails with an error that is not ErrNotFound, as a remote
// repository would when it cannot be reached. No repository kind in this
// package fails that way yet.
type brokenRepo struct{}

func (brokenRepo) Name() string     { return "broken" }
func (brokenRepo) List() []*Package { return nil }
func (brokenRepo) Resolve(string, string) (*Package, error) {
	return nil, fs.ErrPermission
}

func TestSetStopsOnOtherErrors(t *testing.T) {
	_, err := Set{brokenRepo{}, openBuiltin(t)}.Resolve("portfilter", "1.0.0")
	if !errors.Is(err, fs.ErrPermission) || errors.Is(err, ErrNotFound) {
		t.Errorf("got %v, want the repository's own error", err)
	}
}

// TestParseObjectOncePerContent: the same bytes parse once, whoever reads
// them (two packages, two reads); other bytes parse on their own; and a
// package's LoadSpec still hands out a copy its caller may change.
func TestParseObjectOncePerContent(t *testing.T) {
	pf, err := fs.ReadFile(packages.FS, "portfilter/portfilter.bpf.o")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := fs.ReadFile(packages.FS, "pktcount/pktcount.bpf.o")
	if err != nil {
		t.Fatal(err)
	}
	a, err := ParseObject(pf)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseObject(append([]byte(nil), pf...))
	if err != nil || b != a {
		t.Errorf("the same object parsed twice (%v)", err)
	}
	if c, err := ParseObject(pc); err != nil || c == a {
		t.Errorf("another object got the first one's spec (%v)", err)
	}
	if _, err := ParseObject([]byte("not an ELF object")); err == nil {
		t.Error("garbage parsed")
	}
	l, err := OpenFS("builtin", packages.FS)
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.Resolve("portfilter", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	shared, _, err := p.SharedSpec("")
	if err != nil || shared != a {
		t.Errorf("the package's shared spec is not the one parse of its object (%v)", err)
	}
	own, _, err := p.LoadSpec("")
	if err != nil || own == a {
		t.Fatalf("LoadSpec handed out the shared spec (%v)", err)
	}
	delete(own.Maps, "blocked_ports")
	if a.Maps["blocked_ports"] == nil {
		t.Error("changing LoadSpec's copy changed the shared spec")
	}
}
