package pkgsource

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/leaf-ebpf/leaf/internal/lint"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/ocipkg"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// IndexFile is the marketplace index a repository publishes (and the
// whole catalogue of an HTTP repository). See docs/package-format.md.
const IndexFile = "leaf-index.json"

// Index identity.
const (
	IndexAPIVersion = "leaf.dev/v1alpha1"
	IndexKind       = "PackageIndex"
	maxIndexSize    = 8 << 20
	maxArchiveSize  = 300 << 20
)

// Index lists a repository's packages for search and for a web page.
type Index struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Packages   []IndexEntry `json:"packages"`
}

// IndexEntry is one package version.
type IndexEntry struct {
	Name        string   `json:"name"`
	Version     string   `json:"version"`
	Description string   `json:"description"`
	License     string   `json:"license"`
	Keywords    []string `json:"keywords,omitempty"`
	// Digest pins the package (its OCI manifest).
	Digest string `json:"digest"`
	// Archive is the package's export (.tar in OCI image layout),
	// relative to the index; ArchiveDigest is its sha256.
	Archive       string         `json:"archive,omitempty"`
	ArchiveDigest string         `json:"archiveDigest,omitempty"`
	ArchiveSize   int64          `json:"archiveSize,omitempty"`
	Programs      []IndexProgram `json:"programs"`
	// Signers are the keys whose signatures the publisher checked (a
	// client verifies for itself; this is for display).
	Signers []IndexSigner `json:"signers,omitempty"`
	// Lint is the automated review's outcome, when the publisher ran it.
	Lint *lint.Summary `json:"lint,omitempty"`
}

// IndexProgram is a program of a listed package.
type IndexProgram struct {
	Name  string   `json:"name"`
	Type  string   `json:"type"`
	Hooks []string `json:"hooks"`
}

// IndexSigner names a signature's role and key fingerprint.
type IndexSigner struct {
	Role  string `json:"role"`
	KeyID string `json:"keyID"`
}

// ParseIndex decodes and checks an index.
func ParseIndex(data []byte) (*Index, error) {
	var idx Index
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&idx); err != nil {
		return nil, fmt.Errorf("%s: %w", IndexFile, err)
	}
	if idx.APIVersion != IndexAPIVersion || idx.Kind != IndexKind {
		return nil, fmt.Errorf("%s: want apiVersion %s, kind %s", IndexFile, IndexAPIVersion, IndexKind)
	}
	return &idx, nil
}

// Find returns the entry for name@version.
func (idx *Index) Find(name, version string) *IndexEntry {
	for i := range idx.Packages {
		if idx.Packages[i].Name == name && idx.Packages[i].Version == version {
			return &idx.Packages[i]
		}
	}
	return nil
}

// EntryFor describes a package for an index.
func EntryFor(p *repository.Package) IndexEntry {
	m := p.Manifest
	e := IndexEntry{Name: m.Name, Version: m.Version, Description: m.Description, License: m.License, Keywords: m.Keywords, Digest: p.Digest}
	for _, prog := range m.Programs {
		e.Programs = append(e.Programs, IndexProgram{Name: prog.Name, Type: prog.Type, Hooks: prog.Hooks})
	}
	if p.Trust != nil {
		for _, s := range p.Trust.Signers {
			e.Signers = append(e.Signers, IndexSigner{Role: s.Role, KeyID: s.KeyID})
		}
	}
	return e
}

// Matches says whether the entry matches a search term (name,
// description or keyword, case-insensitive).
func (e *IndexEntry) Matches(term string) bool {
	term = strings.ToLower(term)
	if strings.Contains(e.Name, term) || strings.Contains(strings.ToLower(e.Description), term) {
		return true
	}
	for _, k := range e.Keywords {
		if strings.Contains(strings.ToLower(k), term) {
			return true
		}
	}
	return false
}

// HTTPIndex is a static HTTP(S) repository: leaf-index.json naming
// package archives (OCI layout tars, with their signatures inside), each
// with its sha256.
type HTTPIndex struct {
	g getter
}

// NewHTTPIndex makes an origin for the index at base (a URL or a local
// directory).
func NewHTTPIndex(base string, client *http.Client) *HTTPIndex {
	return &HTTPIndex{g: getter{base: strings.TrimSuffix(base, "/"), client: client}}
}

// Index fetches and parses the index.
func (h *HTTPIndex) Index(ctx context.Context) (*Index, error) {
	data, err := h.g.get(ctx, h.g.join(IndexFile), maxIndexSize)
	if err != nil {
		return nil, err
	}
	return ParseIndex(data)
}

// Resolve downloads the archive the index names and checks it against
// both digests the index gives.
func (h *HTTPIndex) Resolve(ctx context.Context, name, version string) (ocispec.Descriptor, content.ReadOnlyGraphStorage, error) {
	idx, err := h.Index(ctx)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	e := idx.Find(name, version)
	if e == nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%w: %s@%s is not in %s", repository.ErrNotFound, name, version, IndexFile)
	}
	loc, err := h.g.resolveRef(e.Archive)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	data, err := h.g.get(ctx, loc, maxArchiveSize)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	sum := sha256.Sum256(data)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != e.ArchiveDigest {
		return ocispec.Descriptor{}, nil, fmt.Errorf("archive %s has digest %s, the index says %s", e.Archive, got, e.ArchiveDigest)
	}
	layout, err := ocipkg.OpenArchive(ctx, bytes.NewReader(data))
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("archive %s: %w", e.Archive, err)
	}
	desc, err := layout.Resolve(ctx, ocipkg.Ref(name, version))
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("archive %s: %w", e.Archive, err)
	}
	if desc.Digest.String() != e.Digest {
		return ocispec.Descriptor{}, nil, fmt.Errorf("archive %s holds %s@%s as %s, the index says %s", e.Archive, name, version, desc.Digest, e.Digest)
	}
	return desc, layout, nil
}

// Extra: archives carry their signatures as referrers.
func (h *HTTPIndex) Extra(context.Context, string, string) ([]ocipkg.Signature, error) {
	return nil, nil
}

// List lists the index's entries as they are: downloading and unpacking
// every archive to list them would let any reader make leafd fetch and
// decompress the whole repository (issue 10).
func (h *HTTPIndex) List(ctx context.Context) ([]Listed, error) {
	idx, err := h.Index(ctx)
	if err != nil {
		return nil, err
	}
	var out []Listed
	for _, e := range idx.Packages {
		m := &manifest.Manifest{Name: e.Name, Version: e.Version, Description: e.Description, License: e.License, Keywords: e.Keywords}
		for _, p := range e.Programs {
			m.Programs = append(m.Programs, manifest.Program{Name: p.Name, Type: p.Type, Hooks: p.Hooks})
		}
		out = append(out, Listed{Desc: ocispec.Descriptor{Digest: digest.Digest(e.Digest)}, Summary: m})
	}
	return out, nil
}
