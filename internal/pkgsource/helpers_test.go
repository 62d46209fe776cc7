package pkgsource

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/content/oci"

	"github.com/leaf-ebpf/leaf/internal/archive"
	"github.com/leaf-ebpf/leaf/internal/ocipkg"
	"github.com/leaf-ebpf/leaf/internal/signature"
)

var ctx = context.Background()

// pkgFiles reads a built-in package, at the version asked for.
func pkgFiles(t testing.TB, name, version string) archive.Files {
	t.Helper()
	dir := filepath.Join("..", "..", "packages", name)
	files := archive.Files{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = data
	}
	files["leaf.yaml"] = []byte(strings.Replace(string(files["leaf.yaml"]), "version: 1.0.0", "version: "+version, 1))
	return files
}

// push builds a package into target (any OCI store) and tags it.
func push(t testing.TB, target oras.Target, files archive.Files, tag string) ocispec.Descriptor {
	t.Helper()
	desc, _, err := ocipkg.BuildFiles(ctx, files, target)
	if err != nil {
		t.Fatal(err)
	}
	if err := target.Tag(ctx, desc, tag); err != nil {
		t.Fatal(err)
	}
	return desc
}

// sign signs the package desc in store and attaches the bundle.
func sign(t testing.TB, store interface {
	content.Pusher
	content.ReadOnlyGraphStorage
}, desc ocispec.Descriptor, s *signature.Signer, role string) []byte {
	t.Helper()
	raw, err := content.FetchAll(ctx, store, desc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Sign(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ocipkg.AddSignature(ctx, store, desc, b, role); err != nil {
		t.Fatal(err)
	}
	return b
}

type key struct {
	signer  *signature.Signer
	pubFile string
}

func newKey(t testing.TB, name string) key {
	t.Helper()
	priv, pub, err := signature.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signature.ParsePrivateKey(name, priv)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), name+".pub")
	if err := os.WriteFile(f, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return key{s, f}
}

func layout(t testing.TB) (*oci.Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := oci.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func newMem() *memory.Store { return memory.New() }
