package pkgsource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"github.com/leaf-ebpf/leaf/internal/archive"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/ocipkg"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// KFaaS is L3AF's repository layout:
// <root>/<name>/<version>/<platform>/<artifact>, the artifact a .tar.gz
// whose files sit in one top-level directory. leaf reads leaf.yaml and
// the objects from it and builds the package the same way `leaf pkg
// build` would, so its digest (and what signs it) is the same. An
// archive without leaf.yaml (as L3AF's build makes them) gets one derived
// from its object and the package's hint (see DeriveManifest).
// Signatures sit beside the artifact as <artifact>.author.sigstore.json
// and <artifact>.repository.sigstore.json.
type KFaaS struct {
	g        getter
	platform string
	artifact string
	// repo and hints give l3afd's per-package artifact names, version
	// path segments and object details (nil: none).
	repo  string
	hints KFaaSHints
}

// NewKFaaS makes a KFaaS origin at root (URL or directory). artifact may
// use {name} and {version}. The platform segment defaults to the host's
// distribution codename, as l3afd takes it.
func NewKFaaS(root, platform, artifact string, client *http.Client) *KFaaS {
	if platform == "" {
		platform = HostCodename()
	}
	if artifact == "" {
		artifact = "{name}.tar.gz"
	}
	return &KFaaS{g: getter{base: strings.TrimSuffix(root, "/"), client: client}, platform: platform, artifact: artifact}
}

// hint is the package's hint, or none.
func (k *KFaaS) hint(name, version string) KFaaSHint {
	if k.hints == nil {
		return KFaaSHint{}
	}
	h, _ := k.hints.KFaaSHint(k.repo, name, version)
	return h
}

func (k *KFaaS) path(name, version string) (string, error) {
	h := k.hint(name, version)
	segment, artifact := version, k.artifact
	if h.Version != "" {
		segment = h.Version
	}
	if h.Artifact != "" {
		artifact = h.Artifact
	}
	// Names and versions come from desired state, but check here too:
	// they become path components.
	if !safeComponent(name) || !safeComponent(segment) {
		return "", fmt.Errorf("%s@%s cannot name a KFaaS path", name, segment)
	}
	a := strings.NewReplacer("{name}", name, "{version}", segment).Replace(artifact)
	if !safeComponent(a) {
		return "", fmt.Errorf("artifact %q cannot name a KFaaS file", a)
	}
	return k.g.join(name, segment, k.platform, a), nil
}

func regularFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

func safeComponent(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00")
}

// Resolve downloads the artifact and builds the package from it.
func (k *KFaaS) Resolve(ctx context.Context, name, version string) (ocispec.Descriptor, content.ReadOnlyGraphStorage, error) {
	loc, err := k.path(name, version)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	data, err := k.g.get(ctx, loc, maxArchiveSize)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	files, err := archive.Read(bytes.NewReader(data), archive.DefaultLimits)
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%s: %w", loc, err)
	}
	files, err = archive.StripTop(files)
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%s: %w", loc, err)
	}
	if files, err = withDerivedManifest(name, version, files, k.hint(name, version)); err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%s: %w", loc, err)
	}
	store := memory.New()
	desc, _, err := ocipkg.BuildFiles(ctx, files, store)
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%s: %w", loc, err)
	}
	return desc, store, nil
}

// Extra reads the signatures beside the artifact.
func (k *KFaaS) Extra(ctx context.Context, name, version string) ([]ocipkg.Signature, error) {
	loc, err := k.path(name, version)
	if err != nil {
		return nil, err
	}
	var out []ocipkg.Signature
	for _, role := range []string{ocipkg.RoleAuthor, ocipkg.RoleRepository} {
		b, err := k.g.get(ctx, loc+"."+role+".sigstore.json", ocipkg.MaxBundleSize)
		if errors.Is(err, repository.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ocipkg.Signature{Role: role, Bundle: b})
	}
	return out, nil
}

// List walks a KFaaS tree on disk by its directory names; over HTTP there
// is no listing. It never unpacks an archive (issue 10): what a package
// holds is known once it is resolved.
func (k *KFaaS) List(ctx context.Context) ([]Listed, error) {
	if !k.g.local() {
		return nil, nil
	}
	names, err := os.ReadDir(k.g.base)
	if err != nil {
		return nil, err
	}
	var out []Listed
	for _, n := range names {
		versions, _ := os.ReadDir(filepath.Join(k.g.base, n.Name()))
		for _, v := range versions {
			if p, err := k.path(n.Name(), v.Name()); err != nil || !regularFile(p) {
				continue
			}
			out = append(out, Listed{Summary: &manifest.Manifest{Name: n.Name(), Version: v.Name()}})
		}
	}
	return out, nil
}

// WriteKFaaS writes files (a package directory) as a KFaaS artifact:
// a .tar.gz with the top-level directory name.
func WriteKFaaS(w *bytes.Buffer, name string, files archive.Files) error {
	if _, ok := files[manifest.FileName]; !ok {
		return fmt.Errorf("no %s", manifest.FileName)
	}
	prefixed := archive.Files{}
	for p, d := range files {
		prefixed[name+"/"+p] = d
	}
	return archive.WriteGzip(w, prefixed)
}

// HostCodename is the distribution codename from /etc/os-release
// (VERSION_CODENAME, as l3afd reads it), or "linux" when there is none.
func HostCodename() string {
	return codenameFrom("/etc/os-release")
}

func codenameFrom(file string) string {
	data, err := os.ReadFile(file)
	if err != nil {
		return "linux"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "VERSION_CODENAME="); ok {
			if v = strings.Trim(v, `"'`); safeComponent(v) {
				return v
			}
		}
	}
	return "linux"
}
