// Package pkgsource reads packages from where they are published: an OCI
// image layout directory, an OCI registry, a static HTTP index of package
// archives, or an L3AF KFaaS tree. Everything a source returns is
// untrusted until internal/trust checks it; remote content goes through
// the package cache, which checks every digest.
package pkgsource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"

	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/ocipkg"
	"github.com/leaf-ebpf/leaf/internal/pkgcache"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// DefaultTimeout bounds one package resolution, download included.
const DefaultTimeout = 2 * time.Minute

// Origin is where one kind of source finds packages.
type Origin interface {
	// Resolve finds name@version: the package manifest's descriptor and
	// the store holding its graph and signatures. A missing package is an
	// error wrapping errdef.ErrNotFound or repository.ErrNotFound.
	Resolve(ctx context.Context, name, version string) (ocispec.Descriptor, content.ReadOnlyGraphStorage, error)
	// Extra returns signatures kept beside the package rather than as
	// OCI referrers (nil when the origin has none).
	Extra(ctx context.Context, name, version string) ([]ocipkg.Signature, error)
	// List returns every package the origin offers.
	List(ctx context.Context) ([]Listed, error)
}

// Listed is a package an origin offers: either its descriptor in a store
// (origins that list what they hold: a layout, a registry), or, for
// origins whose packages are archives (an HTTP index, a KFaaS tree), a
// Summary of what the origin's index or directory names say. Listing
// never downloads or unpacks an archive: that waits for a resolution,
// which is bounded and rate-limited.
type Listed struct {
	Desc    ocispec.Descriptor
	Store   content.ReadOnlyGraphStorage
	Summary *manifest.Manifest
}

// Repo is a repository over an origin.
type Repo struct {
	name   string
	origin Origin
	// cache, when set, holds the downloaded packages.
	cache   *pkgcache.Cache
	Timeout time.Duration
	Log     *slog.Logger
}

// New makes a repository named name over origin; remote origins pass
// a cache.
func New(name string, origin Origin, cache *pkgcache.Cache) *Repo {
	return &Repo{name: name, origin: origin, cache: cache, Timeout: DefaultTimeout}
}

// Name of the repository.
func (r *Repo) Name() string { return r.name }

// Resolve fetches name@version with its signatures.
func (r *Repo) Resolve(name, version string) (*repository.Package, error) {
	return r.ResolveContext(context.Background(), name, version)
}

// ResolveContext is Resolve, given up when ctx is (or after Timeout).
func (r *Repo) ResolveContext(ctx context.Context, name, version string) (*repository.Package, error) {
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	desc, store, err := r.origin.Resolve(ctx, name, version)
	if err != nil {
		if errors.Is(err, errdef.ErrNotFound) || errors.Is(err, repository.ErrNotFound) {
			return nil, fmt.Errorf("%w: no %s@%s in repository %s", repository.ErrNotFound, name, version, r.name)
		}
		return nil, repository.Mark(fmt.Errorf("repository %s: %s@%s: %w", r.name, name, version, err), unavailable(err))
	}
	var src content.Fetcher = store
	if r.cache != nil {
		if err := r.cache.Fetch(ctx, store, desc); err != nil {
			return nil, repository.Mark(fmt.Errorf("repository %s: %w", r.name, err), unavailable(err))
		}
		src = r.cache.Store()
	}
	p, err := ocipkg.Read(ctx, src, desc, "")
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", r.name, err)
	}
	// A repository that serves another package (or an older version)
	// under this name is lying; signatures would not catch it, since the
	// other package may be validly signed.
	if p.Manifest.Name != name || p.Manifest.Version != version {
		return nil, repository.Mark(fmt.Errorf("repository %s serves %s@%s (%s) when asked for %s@%s", r.name, p.Manifest.Name, p.Manifest.Version, desc.Digest, name, version), repository.ErrUntrusted)
	}
	sigs, err := ocipkg.Signatures(ctx, store, desc)
	if err != nil && !errors.Is(err, errdef.ErrUnsupported) {
		return nil, fmt.Errorf("repository %s: %w", r.name, err)
	}
	extra, err := r.origin.Extra(ctx, name, version)
	if err != nil {
		return nil, fmt.Errorf("repository %s: signatures of %s@%s: %w", r.name, name, version, err)
	}
	pkg := repository.NewPackage(p.Manifest, p.Digest(), r.name, p.Raw, p.Files)
	pkg.Signatures = append(sigs, extra...)
	return pkg, nil
}

// List returns the packages the origin offers; an origin that cannot be
// reached lists nothing (and logs why).
func (r *Repo) List() []*repository.Package {
	out, err := r.Packages()
	if err != nil && r.Log != nil {
		r.Log.Warn("list repository", "repository", r.name, "error", err)
	}
	return out
}

// Packages returns the packages the origin offers and the first error
// met: an unreachable origin, or a package that cannot be read (the
// readable ones are returned all the same).
func (r *Repo) Packages() ([]*repository.Package, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.Timeout)
	defer cancel()
	listed, firstErr := r.origin.List(ctx)
	var out []*repository.Package
	for _, l := range listed {
		if l.Summary != nil {
			out = append(out, repository.NewPackage(l.Summary, string(l.Desc.Digest), r.name, nil, nil))
			continue
		}
		p, err := ocipkg.ReadManifest(ctx, l.Store, l.Desc)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", l.Desc.Digest, err)
			}
			continue
		}
		out = append(out, repository.NewPackage(p.Manifest, p.Digest(), r.name, p.Raw, nil))
	}
	return out, firstErr
}

// unavailable tells a repository that did not answer (a network error,
// a timeout) from one that answered with something wrong: only the first
// is marked repository.ErrUnavailable, since trying again may help.
func unavailable(err error) error {
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
	case errors.As(err, &oe): // dialling, reading or writing the connection failed
	case errors.As(err, &ne) && ne.Timeout(): // a TLS handshake or response header timeout
	default:
		return nil // a certificate, a credential, an answer: trying again will not help
	}
	return repository.ErrUnavailable
}
