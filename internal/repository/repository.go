// Package repository finds packages by name and version. A Local
// repository is a directory (or an embedded file system) holding one
// directory per package version; a Set searches several in order.
package repository

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"oras.land/oras-go/v2/content/memory"

	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/ocipkg"
)

// ErrorKind classifies a resolution failure for the API: a package that
// fails its trust policy or pin, one that is not there, a repository that
// did not answer, a program type this kernel cannot load; anything else
// is a problem with the document ("").
func ErrorKind(err error) string {
	switch {
	case errors.Is(err, ErrUntrusted):
		return desired.KindTrust
	case errors.Is(err, ErrNotFound):
		return desired.KindNotFound
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return desired.KindUnavailable
	case errors.Is(err, ebpf.ErrNotSupported):
		return desired.KindFeatureMissing
	}
	return ""
}

// Limits on what a package may hold; packages are untrusted input.
const (
	maxFileSize  = 64 << 20
	maxFiles     = 256
	maxTotalSize = 256 << 20
)

// ErrNotFound means no repository has the package or version asked for.
var ErrNotFound = errors.New("package not found")

// ErrUntrusted marks a package that its repository's trust policy
// refuses, or whose content is not what was pinned or asked for.
var ErrUntrusted = errors.New("package not trusted")

// ErrUnavailable marks a repository that could not be reached or did
// not answer in time: nothing is known about the package.
var ErrUnavailable = errors.New("repository unavailable")

// Mark returns err, unchanged in its message and causes, that also
// matches sentinel (ErrUntrusted, ErrUnavailable) with errors.Is.
func Mark(err error, sentinel error) error {
	if err == nil || sentinel == nil {
		return err
	}
	return &marked{err: err, sentinel: sentinel}
}

type marked struct{ err, sentinel error }

func (m *marked) Error() string        { return m.err.Error() }
func (m *marked) Unwrap() error        { return m.err }
func (m *marked) Is(target error) bool { return target == m.sentinel }

// Package is one version of a package, read from a repository.
type Package struct {
	Manifest *manifest.Manifest
	// Digest is "sha256:<hex>" of the package's OCI manifest (see
	// internal/ocipkg): the same files give the same digest whichever
	// repository serves them.
	Digest string
	// Repository names where the package came from.
	Repository string
	// Raw is the OCI manifest, what signatures sign (nil when unknown).
	Raw []byte
	// Signatures are the bundles the repository holds for the package,
	// not yet verified.
	Signatures []ocipkg.Signature
	// Trust records what was verified; set by a trust-checking
	// repository, nil before.
	Trust *Trust
	files fs.FS
	// specs keeps each parsed object, shared by clones: a package's bytes
	// never change, and parsing ELF and BTF is most of a re-apply.
	specs *specCache
}

type specCache struct {
	mu sync.Mutex
	m  map[string]*ebpf.CollectionSpec
}

// Trust is what verifying a package found.
type Trust struct {
	// Policy is TrustSigned, TrustUnsignedAllowed or TrustBuiltin.
	Policy  string   `json:"policy"`
	Signers []Signer `json:"signers,omitempty"`
}

// What a trust check concluded.
const (
	TrustSigned          = "signed"
	TrustUnsignedAllowed = "unsigned-allowed"
	TrustBuiltin         = "builtin"
)

// Signer is a verified signature's key and role.
type Signer struct {
	// Role is author or repository.
	Role string `json:"role"`
	// Key is the key's name in the policy; KeyID its fingerprint.
	Key   string `json:"key"`
	KeyID string `json:"keyID"`
}

// NewPackage makes a package from files already checked (the OCI reader
// checks digests and caps).
func NewPackage(m *manifest.Manifest, digest, repo string, raw []byte, files fs.FS) *Package {
	return &Package{Manifest: m, Digest: digest, Repository: repo, Raw: raw, files: files, specs: &specCache{}}
}

// Clone returns a shallow copy that can carry its own Trust.
func (p *Package) Clone() *Package {
	c := *p
	return &c
}

// Ref is "name@version".
func (p *Package) Ref() string { return p.Manifest.Name + "@" + p.Manifest.Version }

// ReadFile reads a file of the package.
func (p *Package) ReadFile(name string) ([]byte, error) {
	return readCapped(p.files, name)
}

// LoadSpec parses the object holding the named program and checks that the
// ELF agrees with the manifest: the function exists, in the declared
// section, with the declared program type. The spec is the caller's to
// change.
func (p *Package) LoadSpec(program string) (*ebpf.CollectionSpec, *manifest.Program, error) {
	spec, prog, err := p.SharedSpec(program)
	if err != nil {
		return nil, nil, err
	}
	return spec.Copy(), prog, nil
}

// SharedSpec is LoadSpec without the copy: the spec is the one parse of
// the object, shared by every caller, and must not be modified. Copying a
// collection (its BTF above all) costs about as much as the checks a
// re-apply makes with it.
func (p *Package) SharedSpec(program string) (*ebpf.CollectionSpec, *manifest.Program, error) {
	prog, err := p.Manifest.Program(program)
	if err != nil {
		return nil, nil, err
	}
	spec, err := p.objectSpec(prog.Object)
	if err != nil {
		return nil, nil, err
	}
	ps, ok := spec.Programs[prog.Function]
	if !ok {
		return nil, nil, fmt.Errorf("package %s: object %s has no function %q", p.Ref(), prog.Object, prog.Function)
	}
	if prog.Section != "" && ps.SectionName != prog.Section {
		return nil, nil, fmt.Errorf("package %s: function %s is in section %q, manifest says %q", p.Ref(), prog.Function, ps.SectionName, prog.Section)
	}
	if want := programType(prog.Type); ps.Type != want {
		return nil, nil, fmt.Errorf("package %s: function %s has program type %s, manifest says %s", p.Ref(), prog.Function, ps.Type, prog.Type)
	}
	return spec, prog, nil
}

// objectSpec parses an object of the package, once; callers share the
// spec and must not change it.
func (p *Package) objectSpec(object string) (*ebpf.CollectionSpec, error) {
	if p.specs != nil {
		p.specs.mu.Lock()
		defer p.specs.mu.Unlock()
		if spec := p.specs.m[object]; spec != nil {
			return spec, nil
		}
	}
	data, err := p.ReadFile(object)
	if err != nil {
		return nil, fmt.Errorf("package %s: object %s: %w", p.Ref(), object, err)
	}
	spec, err := ParseObject(data)
	if err != nil {
		return nil, fmt.Errorf("package %s: object %s: %w", p.Ref(), object, err)
	}
	if p.specs != nil {
		if p.specs.m == nil {
			p.specs.m = map[string]*ebpf.CollectionSpec{}
		}
		p.specs.m[object] = spec
	}
	return spec, nil
}

// ParseObject parses a BPF ELF object, once per content: repositories
// that read a package afresh on every resolve (OCI, KFaaS), and deriving
// an L3AF package's manifest, parse the same bytes again and again, and
// parsing ELF and BTF is the bulk of it. The spec is shared: callers must
// not modify it (CollectionSpec.Copy gives one to change).
func ParseObject(data []byte) (*ebpf.CollectionSpec, error) {
	key := sha256.Sum256(data)
	parsed.mu.Lock()
	spec := parsed.m[key]
	parsed.mu.Unlock()
	if spec != nil {
		return spec, nil
	}
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	parsed.mu.Lock()
	defer parsed.mu.Unlock()
	if len(parsed.m) >= maxParsed {
		clear(parsed.m) // rare; the packages in use hold their own specs
	}
	parsed.m[key] = spec
	return spec, nil
}

// parsed memoizes ParseObject, by SHA-256 of the object. Bounded: a host
// runs a handful of objects, and a parsed object's BTF can be megabytes.
var parsed = struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]*ebpf.CollectionSpec
}{m: map[[sha256.Size]byte]*ebpf.CollectionSpec{}}

const maxParsed = 16

func programType(t string) ebpf.ProgramType {
	switch t {
	case "xdp":
		return ebpf.XDP
	case "sched_cls":
		return ebpf.SchedCLS
	case "tracepoint":
		return ebpf.TracePoint
	case "kprobe":
		return ebpf.Kprobe
	case "cgroup_skb":
		return ebpf.CGroupSKB
	}
	return ebpf.UnspecifiedProgram
}

// Repository is a source of packages.
type Repository interface {
	Name() string
	// Resolve returns the package version, or an error wrapping ErrNotFound.
	Resolve(name, version string) (*Package, error)
	List() []*Package
}

// Local is a repository in a directory: <root>/<dir>/leaf.yaml or
// <root>/<dir>/<dir>/leaf.yaml, each directory one package version.
type Local struct {
	name string
	pkgs map[string]map[string]*Package
}

// OpenDir opens a directory repository.
func OpenDir(dir string) (*Local, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("open repository: %w", err)
	}
	return OpenFS(dir, os.DirFS(dir))
}

// OpenFS reads every package in fsys. A package that does not validate
// makes the whole repository fail to open, naming the package.
func OpenFS(name string, fsys fs.FS) (*Local, error) {
	l := &Local{name: name, pkgs: map[string]map[string]*Package{}}
	dirs, err := packageDirs(fsys)
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", name, err)
	}
	for _, dir := range dirs {
		sub, err := fs.Sub(fsys, dir)
		if err != nil {
			return nil, err
		}
		p, err := readPackage(sub)
		if err != nil {
			return nil, fmt.Errorf("repository %s: package %s: %w", name, dir, err)
		}
		p.Repository = name
		versions := l.pkgs[p.Manifest.Name]
		if versions == nil {
			versions = map[string]*Package{}
			l.pkgs[p.Manifest.Name] = versions
		}
		if _, dup := versions[p.Manifest.Version]; dup {
			return nil, fmt.Errorf("repository %s: %s is defined twice (again in %s)", name, p.Ref(), dir)
		}
		versions[p.Manifest.Version] = p
	}
	return l, nil
}

func packageDirs(fsys fs.FS) ([]string, error) {
	var dirs []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.Count(p, "/") >= 2 {
			return fs.SkipDir
		}
		if !d.IsDir() && d.Name() == manifest.FileName && p != manifest.FileName {
			dirs = append(dirs, path.Dir(p))
		}
		return nil
	})
	return dirs, err
}

func readPackage(fsys fs.FS) (*Package, error) {
	// Check first: it refuses anything that is not a regular file before
	// reading it, so a FIFO or symlink named leaf.yaml is never opened.
	if err := checkFiles(fsys); err != nil {
		return nil, err
	}
	data, err := readCapped(fsys, manifest.FileName)
	if err != nil {
		return nil, err
	}
	m, err := manifest.Parse(data)
	if err != nil {
		return nil, err
	}
	if c := m.Companion; c != nil {
		if st, err := fs.Stat(fsys, c.Path); err != nil || !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: companion.path: %q is not a file of the package", manifest.FileName, c.Path)
		}
	}
	// The package digest is that of the OCI artifact the directory
	// builds into, so a directory and its pushed package agree.
	ctx := context.Background()
	store := memory.New()
	desc, _, err := ocipkg.Build(ctx, fsys, store)
	if err != nil {
		return nil, err
	}
	// The files are read back from the artifact just built, in memory:
	// what loads later is exactly what the digest covers, whatever
	// happens to the directory after this.
	built, err := ocipkg.Read(ctx, store, desc, "")
	if err != nil {
		return nil, err
	}
	return &Package{Manifest: m, Digest: desc.Digest.String(), Raw: built.Raw, files: built.Files, specs: &specCache{}}, nil
}

// checkFiles refuses a package directory holding anything but regular
// files and directories, or more or larger files than the caps, before
// any file of it is opened.
func checkFiles(fsys fs.FS) error {
	var n int
	var total int64
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file", p)
		}
		if n++; n > maxFiles {
			return fmt.Errorf("more than %d files", maxFiles)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Size() > maxFileSize {
			return fmt.Errorf("%s: larger than %d bytes", p, maxFileSize)
		}
		if total += info.Size(); total > maxTotalSize {
			return fmt.Errorf("larger than %d bytes", maxTotalSize)
		}
		return nil
	})
}

func readCapped(fsys fs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxFileSize)
	}
	return data, nil
}

// Name of the repository.
func (l *Local) Name() string { return l.name }

// Resolve finds name@version.
func (l *Local) Resolve(name, version string) (*Package, error) {
	versions, ok := l.pkgs[name]
	if !ok {
		return nil, fmt.Errorf("%w: no package %q in repository %s", ErrNotFound, name, l.name)
	}
	p, ok := versions[version]
	if !ok {
		return nil, fmt.Errorf("%w: package %s has no version %q in repository %s (it has: %s)", ErrNotFound, name, version, l.name, strings.Join(sortedKeys(versions), ", "))
	}
	return p, nil
}

// List returns every package version, sorted by name and version.
func (l *Local) List() []*Package {
	var out []*Package
	for _, versions := range l.pkgs {
		for _, p := range versions {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref() < out[j].Ref() })
	return out
}

func sortedKeys(m map[string]*Package) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ContextResolver is a repository whose resolution can be cancelled: one
// that reaches the network. Admission resolves with the request's
// context through it, so a client that gives up stops the download.
type ContextResolver interface {
	ResolveContext(ctx context.Context, name, version string) (*Package, error)
}

// ResolveWith asks r, with ctx if it can take one.
func ResolveWith(ctx context.Context, r Repository, name, version string) (*Package, error) {
	if cr, ok := r.(ContextResolver); ok {
		return cr.ResolveContext(ctx, name, version)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return r.Resolve(name, version)
}

// Set searches repositories in order; the first that has a package wins.
type Set []Repository

// Resolve finds name@version in the first repository that has it.
func (s Set) Resolve(name, version string) (*Package, error) {
	return s.ResolveContext(context.Background(), name, version)
}

// ResolveContext is Resolve with a context for repositories that reach
// the network.
func (s Set) ResolveContext(ctx context.Context, name, version string) (*Package, error) {
	var errs []string
	for _, r := range s {
		p, err := ResolveWith(ctx, r, name, version)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		errs = append(errs, strings.TrimPrefix(err.Error(), ErrNotFound.Error()+": "))
	}
	if len(s) == 0 {
		return nil, fmt.Errorf("%w: no repositories configured", ErrNotFound)
	}
	return nil, fmt.Errorf("%w: %s@%s: %s", ErrNotFound, name, version, strings.Join(errs, "; "))
}

// List returns the packages of every repository, in order.
func (s Set) List() []*Package {
	var out []*Package
	for _, r := range s {
		out = append(out, r.List()...)
	}
	return out
}

// Offliner is a repository that reaches the network and can stand in
// for itself from local copies: Offline returns a repository serving
// only the pinned packages (name@version → digest) that it holds
// locally, asking no one.
type Offliner interface {
	Offline(pins map[string]string) Repository
}

// Offline returns s with every repository that reaches the network
// replaced by its local stand-in, serving the packages pinned for it
// (pins: repository name → name@version → digest); the others (local
// directories, the built-in packages) are kept as they are.
func (s Set) Offline(pins map[string]map[string]string) Set {
	out := make(Set, len(s))
	for i, r := range s {
		out[i] = r
		if o, ok := r.(Offliner); ok {
			out[i] = o.Offline(pins[r.Name()])
		}
	}
	return out
}

// Request asks for one package version, optionally from one repository
// and with pinned content.
type Request struct {
	Name, Version string
	// Repository, if set, names the only repository to ask.
	Repository string
	// Digest, if set, is the only content accepted.
	Digest string
}

// ResolveRequest resolves a request: only in the named repository when
// one is given, and refusing any content but the pinned digest. A
// repository that serves other content under a pinned name@version (an
// older version replayed, or an altered package) is reported, not
// skipped.
func (s Set) ResolveRequest(req Request) (*Package, error) {
	return s.ResolveRequestContext(context.Background(), req)
}

// ResolveRequestContext is ResolveRequest with a context.
func (s Set) ResolveRequestContext(ctx context.Context, req Request) (*Package, error) {
	set := s
	if req.Repository != "" {
		set = nil
		var names []string
		for _, r := range s {
			names = append(names, r.Name())
			if r.Name() == req.Repository {
				set = Set{r}
			}
		}
		if set == nil {
			return nil, fmt.Errorf("%w: no repository named %q (configured: %s)", ErrNotFound, req.Repository, strings.Join(names, ", "))
		}
	}
	p, err := set.ResolveContext(ctx, req.Name, req.Version)
	if err != nil {
		return nil, err
	}
	if req.Digest != "" && p.Digest != req.Digest {
		return nil, Mark(fmt.Errorf("repository %s serves %s as %s, but the desired state pins %s: refusing other content under a pinned version", p.Repository, p.Ref(), p.Digest, req.Digest), ErrUntrusted)
	}
	return p, nil
}
