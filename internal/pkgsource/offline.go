package pkgsource

import (
	"context"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/leaf-ebpf/leaf/internal/ocipkg"
	"github.com/leaf-ebpf/leaf/internal/pkgcache"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// Offline is the repository standing in for r from its package cache
// alone: it serves the pinned packages (name@version → digest) that the
// cache holds, and asks no one. A repository with no cache reads local
// content already, and stands in for itself.
func (r *Repo) Offline(pins map[string]string) repository.Repository {
	if r.cache == nil {
		return r
	}
	o := New(r.name, &cacheOrigin{cache: r.cache, pins: pins}, nil)
	o.Timeout, o.Log = r.Timeout, r.Log
	return o
}

// cacheOrigin serves pinned packages from the package cache, where they
// were checked against their digests when fetched.
type cacheOrigin struct {
	cache *pkgcache.Cache
	pins  map[string]string
}

func (c *cacheOrigin) Resolve(ctx context.Context, name, version string) (ocispec.Descriptor, content.ReadOnlyGraphStorage, error) {
	digest := c.pins[name+"@"+version]
	if digest == "" {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%w: %s@%s is not pinned from the package cache", repository.ErrNotFound, name, version)
	}
	desc, err := c.cache.Resolve(ctx, digest)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	return desc, c.cache.Store(), nil
}

// Extra: signatures are not cached; the verification marks are (see
// trust.Marks), so a package verified under the same policy passes.
func (c *cacheOrigin) Extra(context.Context, string, string) ([]ocipkg.Signature, error) {
	return nil, nil
}

func (c *cacheOrigin) List(ctx context.Context) ([]Listed, error) {
	var out []Listed
	for _, digest := range c.pins {
		desc, err := c.cache.Resolve(ctx, digest)
		if err != nil {
			continue
		}
		out = append(out, Listed{Desc: desc, Store: c.cache.Store()})
	}
	return out, nil
}
