package ocipkg

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"testing/fstest"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/leaf-ebpf/leaf/internal/manifest"
)

// Package is a leaf package read from an OCI store, its digest checked.
type Package struct {
	Desc     ocispec.Descriptor
	Manifest *manifest.Manifest
	// Raw is the OCI manifest; its sha256 is the package digest and it is
	// what signatures sign.
	Raw []byte
	OCI ocispec.Manifest
	// Config is leaf.yaml as stored.
	Config []byte
	// Files holds the files for the architecture read (nil from
	// ReadManifest).
	Files fstest.MapFS
}

// Digest is "sha256:<hex>" of the OCI manifest.
func (p *Package) Digest() string { return p.Desc.Digest.String() }

// ReadManifest fetches and validates the OCI manifest and the leaf
// manifest, but no layer: enough to list or search.
func ReadManifest(ctx context.Context, src content.Fetcher, desc ocispec.Descriptor) (*Package, error) {
	if desc.MediaType != ocispec.MediaTypeImageManifest {
		return nil, fmt.Errorf("%s: media type %q is not an OCI image manifest", desc.Digest, desc.MediaType)
	}
	if desc.Size <= 0 || desc.Size > MaxManifestSize {
		return nil, fmt.Errorf("%s: manifest size %d out of range (at most %d)", desc.Digest, desc.Size, MaxManifestSize)
	}
	if desc.Digest.Algorithm() != digest.SHA256 {
		return nil, fmt.Errorf("%s: only sha256 digests pin packages", desc.Digest)
	}
	// FetchAll checks size and digest: a repository that lies about
	// either is caught here.
	raw, err := content.FetchAll(ctx, src, desc)
	if err != nil {
		return nil, fmt.Errorf("fetch manifest %s: %w", desc.Digest, err)
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(raw, &man); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	if err := validateManifest(&man, nil, nil); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	cfg, err := content.FetchAll(ctx, src, man.Config)
	if err != nil {
		return nil, fmt.Errorf("fetch leaf manifest %s: %w", man.Config.Digest, err)
	}
	m, err := manifest.Parse(cfg)
	if err != nil {
		return nil, fmt.Errorf("package %s: %w", desc.Digest, err)
	}
	if err := validateManifest(&man, cfg, m); err != nil {
		return nil, fmt.Errorf("package %s@%s (%s): %w", m.Name, m.Version, desc.Digest, err)
	}
	return &Package{Desc: desc, Manifest: m, Raw: raw, OCI: man, Config: cfg}, nil
}

// Read fetches a whole package for arch (runtime.GOARCH when empty): a
// layer for arch replaces the architecture-neutral one of the same name.
func Read(ctx context.Context, src content.Fetcher, desc ocispec.Descriptor, arch string) (*Package, error) {
	p, err := ReadManifest(ctx, src, desc)
	if err != nil {
		return nil, err
	}
	if arch == "" {
		arch = runtime.GOARCH
	}
	files := fstest.MapFS{}
	picked := map[string]string{}
	for _, l := range p.OCI.Layers {
		title, la := l.Annotations[ocispec.AnnotationTitle], l.Annotations[AnnotationArch]
		if la != "" && la != arch {
			continue
		}
		if prev, ok := picked[title]; ok && prev != "" {
			continue
		}
		data, err := content.FetchAll(ctx, src, l)
		if err != nil {
			return nil, fmt.Errorf("package %s: fetch %s: %w", p.ref(), title, err)
		}
		files[title] = &fstest.MapFile{Data: data, Mode: 0o444}
		picked[title] = la
	}
	files[manifest.FileName] = &fstest.MapFile{Data: p.Config, Mode: 0o444}
	for _, prog := range p.Manifest.Programs {
		if _, ok := files[prog.Object]; !ok {
			return nil, fmt.Errorf("package %s has no object %s for architecture %s", p.ref(), prog.Object, arch)
		}
	}
	p.Files = files
	return p, nil
}

func (p *Package) ref() string { return p.Manifest.Name + "@" + p.Manifest.Version }
