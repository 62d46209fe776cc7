package pkgsource

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content/oci"

	"github.com/leaf-ebpf/leaf/internal/lint"
	"github.com/leaf-ebpf/leaf/internal/ocipkg"
	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/internal/trust"
)

// Publish writes a layout's packages as a static HTTP repository into
// out: one export .tar per package (signatures inside) and
// leaf-index.json listing them with both digests, the signers policy
// verified, and lint results when lintFn is given.
func Publish(ctx context.Context, layout, out string, policy *trust.Policy, lintFn func(*repository.Package) *lint.Summary) (*Index, error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	s, err := oci.New(layout)
	if err != nil {
		return nil, err
	}
	listed, err := (&Layout{Dir: layout}).List(ctx)
	if err != nil {
		return nil, err
	}
	idx := &Index{APIVersion: IndexAPIVersion, Kind: IndexKind, Packages: []IndexEntry{}}
	for _, l := range listed {
		e, data, err := publishOne(ctx, s, l.Desc, layout, policy, lintFn)
		if err != nil {
			return nil, err
		}
		if err := writeAtomic(filepath.Join(out, e.Archive), data); err != nil {
			return nil, err
		}
		idx.Packages = append(idx.Packages, e)
	}
	sort.Slice(idx.Packages, func(i, j int) bool {
		a, b := idx.Packages[i], idx.Packages[j]
		return a.Name < b.Name || a.Name == b.Name && a.Version < b.Version
	})
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return nil, err
	}
	return idx, writeAtomic(filepath.Join(out, IndexFile), append(data, '\n'))
}

func publishOne(ctx context.Context, s *oci.Store, desc ocispec.Descriptor, layout string, policy *trust.Policy, lintFn func(*repository.Package) *lint.Summary) (IndexEntry, []byte, error) {
	p, err := ocipkg.Read(ctx, s, desc, "")
	if err != nil {
		return IndexEntry{}, nil, err
	}
	sigs, err := ocipkg.Signatures(ctx, s, desc)
	if err != nil {
		return IndexEntry{}, nil, err
	}
	rp := repository.NewPackage(p.Manifest, p.Digest(), layout, p.Raw, p.Files)
	if rp.Trust, err = policy.Check(p.Digest(), sigs); err != nil {
		return IndexEntry{}, nil, err
	}
	e := EntryFor(rp)
	if lintFn != nil {
		e.Lint = lintFn(rp)
	}
	var buf bytes.Buffer
	if err := ocipkg.Export(ctx, s, []ocispec.Descriptor{desc}, &buf); err != nil {
		return IndexEntry{}, nil, err
	}
	sum := sha256.Sum256(buf.Bytes())
	e.Archive = p.Manifest.Name + "-" + p.Manifest.Version + ".tar"
	e.ArchiveDigest, e.ArchiveSize = "sha256:"+hex.EncodeToString(sum[:]), int64(buf.Len())
	return e, buf.Bytes(), nil
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
