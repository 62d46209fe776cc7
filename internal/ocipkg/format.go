// Package ocipkg is the leaf package format: a package is an OCI artifact
// whose config is the leaf manifest (leaf.yaml) and whose layers are the
// package's files, BPF objects annotated with the architecture they are
// for. The OCI manifest's digest is the package digest that pins it.
// See docs/package-format.md.
package ocipkg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"github.com/leaf-ebpf/leaf/internal/manifest"
)

// Media and artifact types of a leaf package.
const (
	ArtifactType       = "application/vnd.leaf.package.v1"
	ConfigMediaType    = "application/vnd.leaf.package.manifest.v1+yaml"
	ObjectMediaType    = "application/vnd.leaf.package.bpf.v1+elf"
	ReadmeMediaType    = "application/vnd.leaf.package.readme.v1+markdown"
	CompanionMediaType = "application/vnd.leaf.package.companion.v1"
	FileMediaType      = "application/vnd.leaf.package.file.v1"
)

// Annotations leaf sets on layers and manifests.
const (
	// AnnotationArch on a layer names the GOARCH it is for; absent means
	// any architecture.
	AnnotationArch = "dev.leaf.package.arch"
	// AnnotationName and AnnotationVersion on the manifest repeat the
	// config's name and version so tools can list packages without it.
	AnnotationName    = "dev.leaf.package.name"
	AnnotationVersion = "org.opencontainers.image.version"
)

// Caps on what a package may hold. Registry and archive content is
// untrusted: every size is checked before a byte is fetched.
const (
	MaxManifestSize = 1 << 20
	MaxConfigSize   = 1 << 20
	MaxLayers       = 256
	MaxLayerSize    = 64 << 20
	MaxTotalSize    = 256 << 20
)

// ArchDir holds per-architecture files in a package directory:
// arch/<goarch>/<path> is <path> for that architecture only.
const ArchDir = "arch"

// Build packs a package directory into target and returns the manifest's
// descriptor. The same files always give the same digest: no timestamps,
// layers in name order.
func Build(ctx context.Context, fsys fs.FS, target content.Pusher) (ocispec.Descriptor, *manifest.Manifest, error) {
	files, err := readDir(fsys)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	return BuildFiles(ctx, files, target)
}

// BuildFiles packs files (path → content) into target.
func BuildFiles(ctx context.Context, files map[string][]byte, target content.Pusher) (ocispec.Descriptor, *manifest.Manifest, error) {
	cfgData, ok := files[manifest.FileName]
	if !ok {
		return ocispec.Descriptor{}, nil, fmt.Errorf("no %s", manifest.FileName)
	}
	m, err := manifest.Parse(cfgData)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	cfg := content.NewDescriptorFromBytes(ConfigMediaType, cfgData)
	if err := pushIfAbsent(ctx, target, cfg, cfgData); err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	var layers []ocispec.Descriptor
	for _, name := range sortedNames(files) {
		if name == manifest.FileName {
			continue
		}
		title, arch := splitArch(name)
		if title == "" {
			return ocispec.Descriptor{}, nil, fmt.Errorf("%s: expected %s/<goarch>/<file>", name, ArchDir)
		}
		l := content.NewDescriptorFromBytes(layerMediaType(m, title), files[name])
		l.Annotations = map[string]string{ocispec.AnnotationTitle: title}
		if arch != "" {
			l.Annotations[AnnotationArch] = arch
		}
		if err := pushIfAbsent(ctx, target, l, files[name]); err != nil {
			return ocispec.Descriptor{}, nil, err
		}
		layers = append(layers, l)
	}
	man := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       cfg,
		Layers:       layers,
		Annotations: map[string]string{
			AnnotationName:                m.Name,
			AnnotationVersion:             m.Version,
			ocispec.AnnotationTitle:       m.Name,
			ocispec.AnnotationDescription: m.Description,
			ocispec.AnnotationLicenses:    m.License,
		},
	}
	if err := validateManifest(&man, files[manifest.FileName], m); err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	data, err := json.Marshal(man)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, data)
	desc.ArtifactType = ArtifactType
	desc.Annotations = map[string]string{AnnotationName: m.Name, AnnotationVersion: m.Version}
	if err := pushIfAbsent(ctx, target, desc, data); err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	return desc, m, nil
}

// Digest returns the digest a package directory has once built.
func Digest(ctx context.Context, fsys fs.FS) (string, error) {
	desc, _, err := Build(ctx, fsys, memory.New())
	if err != nil {
		return "", err
	}
	return desc.Digest.String(), nil
}

func pushIfAbsent(ctx context.Context, target content.Pusher, desc ocispec.Descriptor, data []byte) error {
	if s, ok := target.(content.ReadOnlyStorage); ok {
		if exists, err := s.Exists(ctx, desc); err == nil && exists {
			return nil
		}
	}
	if err := target.Push(ctx, desc, bytes.NewReader(data)); err != nil && !strings.Contains(err.Error(), "already exists") {
		return fmt.Errorf("store %s: %w", desc.Digest, err)
	}
	return nil
}

// splitArch maps arch/<goarch>/<path> to (<path>, <goarch>) and any other
// path to (path, "").
func splitArch(name string) (title, arch string) {
	rest, ok := strings.CutPrefix(name, ArchDir+"/")
	if !ok {
		return name, ""
	}
	arch, title, ok = strings.Cut(rest, "/")
	if !ok || !archRE(arch) {
		return "", ""
	}
	return title, arch
}

func archRE(s string) bool {
	if s == "" || len(s) > 16 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func layerMediaType(m *manifest.Manifest, title string) string {
	for _, p := range m.Programs {
		if p.Object == title {
			return ObjectMediaType
		}
	}
	switch {
	case m.Companion != nil && title == m.Companion.Path:
		return CompanionMediaType
	case strings.EqualFold(title, "README.md"):
		return ReadmeMediaType
	}
	return FileMediaType
}

func sortedNames(files map[string][]byte) []string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// readDir reads every regular file of a package directory, refusing
// anything else and applying the caps.
func readDir(fsys fs.FS) (map[string][]byte, error) {
	files := map[string][]byte{}
	var total int64
	ignored, err := readIgnore(fsys)
	if err != nil {
		return nil, err
	}
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != "." && ignored(p) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file", p)
		}
		if len(files) >= MaxLayers {
			return fmt.Errorf("more than %d files", MaxLayers)
		}
		data, err := readCapped(fsys, p, MaxLayerSize)
		if err != nil {
			return err
		}
		total += int64(len(data))
		if total > MaxTotalSize {
			return fmt.Errorf("larger than %d bytes", MaxTotalSize)
		}
		files[p] = data
		return nil
	})
	return files, err
}

func readCapped(fsys fs.FS, name string, max int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, max+1)); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(buf.Len()) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, max)
	}
	return buf.Bytes(), nil
}

// validateManifest checks an OCI manifest against the leaf package rules
// before any layer is fetched: types, sizes, counts, and layer titles that
// are clean relative paths, unique per architecture.
func validateManifest(man *ocispec.Manifest, cfgData []byte, m *manifest.Manifest) error {
	if man.MediaType != ocispec.MediaTypeImageManifest {
		return fmt.Errorf("manifest media type %q, want %q", man.MediaType, ocispec.MediaTypeImageManifest)
	}
	if man.ArtifactType != ArtifactType {
		return fmt.Errorf("artifact type %q is not a leaf package (%s)", man.ArtifactType, ArtifactType)
	}
	if man.Config.MediaType != ConfigMediaType {
		return fmt.Errorf("config media type %q, want %q", man.Config.MediaType, ConfigMediaType)
	}
	if man.Config.Size < 0 || man.Config.Size > MaxConfigSize {
		return fmt.Errorf("config is %d bytes, more than %d", man.Config.Size, MaxConfigSize)
	}
	if len(man.Layers) > MaxLayers {
		return fmt.Errorf("%d layers, more than %d", len(man.Layers), MaxLayers)
	}
	seen := map[string]bool{}
	var total int64
	for i, l := range man.Layers {
		title := l.Annotations[ocispec.AnnotationTitle]
		arch := l.Annotations[AnnotationArch]
		switch l.MediaType {
		case ObjectMediaType, ReadmeMediaType, CompanionMediaType, FileMediaType:
		default:
			return fmt.Errorf("layer %d (%s): unknown media type %q", i, title, l.MediaType)
		}
		if !manifest.RelativePath(title) {
			return fmt.Errorf("layer %d: title %q is not a clean relative path inside the package", i, title)
		}
		if arch != "" && !archRE(arch) {
			return fmt.Errorf("layer %d (%s): architecture %q is not a GOARCH", i, title, arch)
		}
		if seen[arch+"/"+title] {
			return fmt.Errorf("layer %d: %s appears twice for architecture %q", i, title, arch)
		}
		seen[arch+"/"+title] = true
		if l.Size < 0 || l.Size > MaxLayerSize {
			return fmt.Errorf("layer %d (%s) is %d bytes, more than %d", i, title, l.Size, MaxLayerSize)
		}
		if err := l.Digest.Validate(); err != nil || l.Digest.Algorithm() != digest.SHA256 {
			return fmt.Errorf("layer %d (%s): digest %q is not a sha256 digest", i, title, l.Digest)
		}
		total += l.Size
		if total > MaxTotalSize {
			return fmt.Errorf("layers add up to more than %d bytes", MaxTotalSize)
		}
	}
	if m == nil {
		return nil
	}
	if got := man.Annotations[AnnotationName]; got != "" && got != m.Name {
		return fmt.Errorf("manifest annotation names %q, the leaf manifest %q", got, m.Name)
	}
	if got := man.Annotations[AnnotationVersion]; got != "" && got != m.Version {
		return fmt.Errorf("manifest annotation says version %q, the leaf manifest %q", got, m.Version)
	}
	for _, p := range m.Programs {
		if !hasLayer(man, p.Object) {
			return fmt.Errorf("program %s: object %s is not in the package", p.Name, p.Object)
		}
	}
	if m.Companion != nil && !hasLayer(man, m.Companion.Path) {
		return fmt.Errorf("companion %s is not in the package", m.Companion.Path)
	}
	return nil
}

func hasLayer(man *ocispec.Manifest, title string) bool {
	for _, l := range man.Layers {
		if l.Annotations[ocispec.AnnotationTitle] == title {
			return true
		}
	}
	return false
}

// Ref is how a package is tagged in an OCI layout: "name:version".
func Ref(name, version string) string { return name + ":" + version }

// ParseLayoutRef splits an OCI layout tag "name:version".
func ParseLayoutRef(ref string) (name, version string, ok bool) {
	name, version, ok = strings.Cut(ref, ":")
	return name, version, ok && path.Base(name) == name
}

// IgnoreFile lists, one pattern a line (path.Match syntax, # comments),
// the files of a package directory that are not part of the package:
// build inputs such as vmlinux.h, editor files. A pattern without a
// slash matches a name at any depth; with one, the path from the package
// root. The file itself is never part of the package.
const IgnoreFile = ".leafignore"

// maxIgnorePatterns bounds the ignore file, which is input like any other.
const maxIgnorePatterns = 256

func readIgnore(fsys fs.FS) (func(string) bool, error) {
	data, err := readCapped(fsys, IgnoreFile, 64<<10)
	if errors.Is(err, fs.ErrNotExist) {
		return func(string) bool { return false }, nil
	}
	if err != nil {
		return nil, err
	}
	var patterns []string
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimSuffix(strings.TrimPrefix(line, "/"), "/")
		if _, err := path.Match(line, ""); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", IgnoreFile, i+1, err)
		}
		if patterns = append(patterns, line); len(patterns) > maxIgnorePatterns {
			return nil, fmt.Errorf("%s: more than %d patterns", IgnoreFile, maxIgnorePatterns)
		}
	}
	return func(p string) bool {
		if p == IgnoreFile {
			return true
		}
		for _, pat := range patterns {
			target := p
			if !strings.Contains(pat, "/") {
				target = path.Base(p)
			}
			if ok, _ := path.Match(pat, target); ok {
				return true
			}
		}
		return false
	}, nil
}
