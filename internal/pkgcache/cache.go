// Package pkgcache keeps packages fetched from remote repositories under
// leafd's state directory: an OCI image layout, so content is addressed
// (and checked) by digest, plus marks recording which digests were
// verified under which trust policy. Concurrent fetches of one digest
// share a single download.
package pkgcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/singleflight"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"

	"github.com/leaf-ebpf/leaf/internal/ocipkg"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// Cache is a package cache directory.
type Cache struct {
	dir   string
	store *oci.Store
	group singleflight.Group
	mu    sync.Mutex // marks
	// Fetches counts downloads actually made (not shared or cached): tests
	// use it to see that concurrent fetches share one.
	fetches int
}

// Open opens (creating) a cache in dir.
func Open(dir string) (*Cache, error) {
	if err := os.MkdirAll(filepath.Join(dir, "verified"), 0o700); err != nil {
		return nil, fmt.Errorf("package cache: %w", err)
	}
	store, err := oci.New(filepath.Join(dir, "oci"))
	if err != nil {
		return nil, fmt.Errorf("package cache: %w", err)
	}
	return &Cache{dir: dir, store: store}, nil
}

// Store is the cache's content, for reading packages.
func (c *Cache) Store() content.ReadOnlyGraphStorage { return c.store }

// Fetches returns how many downloads the cache made.
func (c *Cache) Fetches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetches
}

// Fetch copies the package desc (manifest, config, layers) from src into
// the cache unless it is there already. The manifest is validated before
// any layer is fetched, so a package over the caps costs one small
// request; every blob is checked against its digest and size as it is
// written.
func (c *Cache) Fetch(ctx context.Context, src content.ReadOnlyStorage, desc ocispec.Descriptor) error {
	_, err, _ := c.group.Do(desc.Digest.String(), func() (any, error) {
		if c.has(ctx, desc) {
			return nil, nil
		}
		p, err := ocipkg.ReadManifest(ctx, src, desc)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.fetches++
		c.mu.Unlock()
		if err := oras.CopyGraph(ctx, src, c.store, desc, oras.CopyGraphOptions{MaxMetadataBytes: ocipkg.MaxManifestSize}); err != nil {
			return nil, fmt.Errorf("fetch %s@%s (%s): %w", p.Manifest.Name, p.Manifest.Version, desc.Digest, err)
		}
		// Tagged by digest: the tag keeps it from garbage collection until
		// Prune drops it.
		return nil, c.store.Tag(ctx, desc, tagOf(desc.Digest.String()))
	})
	return err
}

func (c *Cache) has(ctx context.Context, desc ocispec.Descriptor) bool {
	d, err := c.store.Resolve(ctx, tagOf(desc.Digest.String()))
	return err == nil && d.Digest == desc.Digest
}

func tagOf(digest string) string { return strings.Replace(digest, ":", "-", 1) }

// Digests lists the cached packages.
func (c *Cache) Digests(ctx context.Context) ([]string, error) {
	var out []string
	err := c.store.Tags(ctx, "", func(tags []string) error {
		for _, t := range tags {
			out = append(out, strings.Replace(t, "-", ":", 1))
		}
		return nil
	})
	return out, err
}

// Prune removes every cached package whose digest keep does not hold,
// with its verification marks, and returns what it removed.
func (c *Cache) Prune(ctx context.Context, keep map[string]bool) ([]string, error) {
	digests, err := c.Digests(ctx)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, d := range digests {
		if keep[d] {
			continue
		}
		if err := c.store.Untag(ctx, tagOf(d)); err != nil {
			return removed, err
		}
		c.dropMarks(d)
		removed = append(removed, d)
	}
	if len(removed) > 0 {
		if err := c.store.GC(ctx); err != nil {
			return removed, fmt.Errorf("package cache: %w", err)
		}
	}
	return removed, nil
}

func (c *Cache) markPath(digest, policyID string) string {
	return filepath.Join(c.dir, "verified", tagOf(digest)+"."+policyID+".json")
}

// Verified returns what verifying digest under policyID found, if done.
func (c *Cache) Verified(digest, policyID string) (*repository.Trust, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	data, err := os.ReadFile(c.markPath(digest, policyID))
	if err != nil {
		return nil, false
	}
	var t repository.Trust
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, false
	}
	return &t, true
}

// MarkVerified records a verification.
func (c *Cache) MarkVerified(digest, policyID string, t *repository.Trust) error {
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.markPath(digest, policyID)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func (c *Cache) dropMarks(digest string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	matches, _ := filepath.Glob(filepath.Join(c.dir, "verified", tagOf(digest)+".*.json"))
	for _, m := range matches {
		if err := os.Remove(m); err != nil && !errors.Is(err, os.ErrNotExist) {
			continue
		}
	}
}

// Resolve returns the descriptor of the cached package with the given
// digest, or an error wrapping repository.ErrNotFound.
func (c *Cache) Resolve(ctx context.Context, digest string) (ocispec.Descriptor, error) {
	d, err := c.store.Resolve(ctx, tagOf(digest))
	if err != nil || d.Digest.String() != digest {
		return ocispec.Descriptor{}, fmt.Errorf("%w: %s is not in the package cache", repository.ErrNotFound, digest)
	}
	return d, nil
}
