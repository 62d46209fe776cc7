package ocipkg

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"

	"github.com/leaf-ebpf/leaf/internal/archive"
)

// Export writes packages and their signatures as a tar in OCI image
// layout, each package tagged "name:version". The same packages always
// give the same bytes.
func Export(ctx context.Context, src content.ReadOnlyGraphStorage, pkgs []ocispec.Descriptor, w io.Writer) error {
	files := archive.Files{}
	index := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	add := func(d ocispec.Descriptor) error {
		data, err := content.FetchAll(ctx, src, d)
		if err != nil {
			return fmt.Errorf("export %s: %w", d.Digest, err)
		}
		files["blobs/"+d.Digest.Algorithm().String()+"/"+d.Digest.Encoded()] = data
		return nil
	}
	for _, desc := range pkgs {
		p, err := ReadManifest(ctx, src, desc)
		if err != nil {
			return err
		}
		for _, d := range append([]ocispec.Descriptor{desc, p.OCI.Config}, p.OCI.Layers...) {
			if err := add(d); err != nil {
				return err
			}
		}
		tagged := desc
		tagged.Annotations = map[string]string{ocispec.AnnotationRefName: Ref(p.Manifest.Name, p.Manifest.Version), AnnotationName: p.Manifest.Name, AnnotationVersion: p.Manifest.Version}
		index.Manifests = append(index.Manifests, tagged)
		sigs, err := Signatures(ctx, src, desc)
		if err != nil {
			return err
		}
		for _, s := range sigs {
			man, err := content.FetchAll(ctx, src, s.Desc)
			if err != nil {
				return err
			}
			var m ocispec.Manifest
			if err := json.Unmarshal(man, &m); err != nil {
				return err
			}
			for _, d := range append([]ocispec.Descriptor{s.Desc, m.Config}, m.Layers...) {
				if err := add(d); err != nil {
					return err
				}
			}
			// Untagged, but listed so that readers of the layout find the
			// referrer.
			index.Manifests = append(index.Manifests, ocispec.Descriptor{MediaType: s.Desc.MediaType, Digest: s.Desc.Digest, Size: s.Desc.Size, ArtifactType: BundleMediaType})
		}
	}
	idx, err := json.Marshal(index)
	if err != nil {
		return err
	}
	files[ocispec.ImageIndexFile] = idx
	files[ocispec.ImageLayoutFile] = []byte(`{"imageLayoutVersion":"1.0.0"}`)
	return archive.Write(w, files)
}

// Layout is an OCI image layout read from an archive into memory.
type Layout struct {
	*oci.ReadOnlyStore
	// Packages are the tagged leaf packages, validated.
	Packages []*Package
}

// OpenArchive reads a tar (or tar.gz) in OCI image layout, checking every
// tagged package it holds (digests, caps, manifests).
func OpenArchive(ctx context.Context, r io.Reader) (*Layout, error) {
	files, err := archive.Read(r, archive.DefaultLimits)
	if err != nil {
		return nil, err
	}
	return OpenFiles(ctx, files)
}

// OpenFiles opens an OCI image layout held in memory.
func OpenFiles(ctx context.Context, files archive.Files) (*Layout, error) {
	if _, ok := files[ocispec.ImageLayoutFile]; !ok {
		return nil, fmt.Errorf("not an OCI image layout: no %s", ocispec.ImageLayoutFile)
	}
	if len(files[ocispec.ImageIndexFile]) > MaxManifestSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", ocispec.ImageIndexFile, MaxManifestSize)
	}
	store, err := oci.NewFromFS(ctx, files.FS())
	if err != nil {
		return nil, fmt.Errorf("OCI image layout: %w", ExplainLayout(files.FS(), err))
	}
	l := &Layout{ReadOnlyStore: store}
	var index ocispec.Index
	if err := json.NewDecoder(bytes.NewReader(files[ocispec.ImageIndexFile])).Decode(&index); err != nil {
		return nil, fmt.Errorf("%s: %w", ocispec.ImageIndexFile, err)
	}
	for _, d := range index.Manifests {
		ref := d.Annotations[ocispec.AnnotationRefName]
		if ref == "" || d.ArtifactType == BundleMediaType {
			continue
		}
		p, err := Read(ctx, store, d, "")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		if want := Ref(p.Manifest.Name, p.Manifest.Version); ref != want {
			return nil, fmt.Errorf("tag %q holds %s: a package must be tagged name:version", ref, want)
		}
		l.Packages = append(l.Packages, p)
	}
	return l, nil
}
