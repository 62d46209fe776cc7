package pkgsource

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"

	"github.com/leaf-ebpf/leaf/internal/ocipkg"
)

// Layout is a directory in OCI image layout, packages tagged
// "name:version". It is read afresh on every call, so packages pushed
// into it later are seen.
type Layout struct {
	Dir string
}

// IsLayout says whether dir is an OCI image layout.
func IsLayout(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, ocispec.ImageLayoutFile))
	return err == nil
}

func (l *Layout) open(ctx context.Context) (*oci.ReadOnlyStore, error) {
	fsys := os.DirFS(l.Dir)
	s, err := oci.NewFromFS(ctx, fsys)
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", l.Dir, ocipkg.ExplainLayout(fsys, err))
	}
	return s, nil
}

// Resolve finds the tag name:version.
func (l *Layout) Resolve(ctx context.Context, name, version string) (ocispec.Descriptor, content.ReadOnlyGraphStorage, error) {
	s, err := l.open(ctx)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	desc, err := s.Resolve(ctx, ocipkg.Ref(name, version))
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	return desc, s, nil
}

// Extra: a layout keeps signatures as referrers only.
func (l *Layout) Extra(context.Context, string, string) ([]ocipkg.Signature, error) { return nil, nil }

// List returns every tagged package.
func (l *Layout) List(ctx context.Context) ([]Listed, error) {
	s, err := l.open(ctx)
	if err != nil {
		return nil, err
	}
	var out []Listed
	err = s.Tags(ctx, "", func(tags []string) error {
		for _, t := range tags {
			if _, _, ok := ocipkg.ParseLayoutRef(t); !ok {
				continue
			}
			d, err := s.Resolve(ctx, t)
			if err != nil {
				return err
			}
			out = append(out, Listed{Desc: d, Store: s})
		}
		return nil
	})
	return out, err
}
