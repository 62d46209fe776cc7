package ocipkg

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"github.com/leaf-ebpf/leaf/internal/manifest"
)

var ctx = context.Background()

func portfilter(t testing.TB) map[string][]byte {
	t.Helper()
	dir := filepath.Join("..", "..", "packages", "portfilter")
	files := map[string][]byte{}
	for _, f := range []string{"leaf.yaml", "README.md", "portfilter.bpf.c", "portfilter.bpf.o"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		files[f] = data
	}
	return files
}

func TestBuildIsReproducibleAndReadable(t *testing.T) {
	files := portfilter(t)
	s1, s2 := memory.New(), memory.New()
	d1, _, err := BuildFiles(ctx, files, s1)
	if err != nil {
		t.Fatal(err)
	}
	d2, _, _ := BuildFiles(ctx, files, s2)
	if d1.Digest != d2.Digest {
		t.Fatalf("same files, digests %s and %s", d1.Digest, d2.Digest)
	}
	dirDigest, err := Digest(ctx, os.DirFS(filepath.Join("..", "..", "packages", "portfilter")))
	if err != nil || dirDigest != d1.Digest.String() {
		t.Fatalf("directory digest %s (%v), files digest %s", dirDigest, err, d1.Digest)
	}
	p, err := Read(ctx, s1, d1, "")
	if err != nil {
		t.Fatal(err)
	}
	if p.Manifest.Name != "portfilter" || !bytes.Equal(p.Files["portfilter.bpf.o"].Data, files["portfilter.bpf.o"]) {
		t.Fatalf("read back %s with files %v", p.Manifest.Name, p.Files)
	}
	for _, l := range p.OCI.Layers {
		if title := l.Annotations[ocispec.AnnotationTitle]; title == "portfilter.bpf.o" && l.MediaType != ObjectMediaType {
			t.Errorf("object layer has media type %s", l.MediaType)
		}
	}
	// Any change to any file changes the digest.
	files["README.md"] = append(files["README.md"], '\n')
	d3, _, _ := BuildFiles(ctx, files, memory.New())
	if d3.Digest == d1.Digest {
		t.Errorf("README changed, digest did not")
	}
}

func TestPerArchitectureObjects(t *testing.T) {
	files := portfilter(t)
	obj := files["portfilter.bpf.o"]
	files["arch/arm64/portfilter.bpf.o"] = []byte("arm64 object")
	s := memory.New()
	d, _, err := BuildFiles(ctx, files, s)
	if err != nil {
		t.Fatal(err)
	}
	arm, err := Read(ctx, s, d, "arm64")
	if err != nil {
		t.Fatal(err)
	}
	if string(arm.Files["portfilter.bpf.o"].Data) != "arm64 object" {
		t.Errorf("arm64 got the neutral object")
	}
	amd, _ := Read(ctx, s, d, "amd64")
	if !bytes.Equal(amd.Files["portfilter.bpf.o"].Data, obj) {
		t.Errorf("amd64 did not get the neutral object")
	}
	// Only an arm64 object: an amd64 host cannot use the package.
	delete(files, "portfilter.bpf.o")
	d, _, err = BuildFiles(ctx, files, s)
	if err == nil {
		if _, err := Read(ctx, s, d, "amd64"); err == nil || !strings.Contains(err.Error(), "for architecture amd64") {
			t.Errorf("amd64 read of an arm64-only package: %v", err)
		}
	}
}

// pushManifest stores a hand-made manifest (and its config) and returns
// its descriptor.
func pushManifest(t testing.TB, s content.Pusher, man ocispec.Manifest) ocispec.Descriptor {
	t.Helper()
	data, _ := json.Marshal(man)
	d := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, data)
	s.Push(ctx, d, bytes.NewReader(data))
	return d
}

func TestHostileManifests(t *testing.T) {
	files := portfilter(t)
	s := memory.New()
	good, _, err := BuildFiles(ctx, files, s)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := content.FetchAll(ctx, s, good)
	for _, tc := range []struct {
		name string
		edit func(m *ocispec.Manifest)
		want string
	}{
		{"traversal title", func(m *ocispec.Manifest) { m.Layers[0].Annotations[ocispec.AnnotationTitle] = "../../etc/passwd" }, "not a clean relative path"},
		{"absolute title", func(m *ocispec.Manifest) { m.Layers[0].Annotations[ocispec.AnnotationTitle] = "/etc/passwd" }, "not a clean relative path"},
		{"unknown layer type", func(m *ocispec.Manifest) { m.Layers[0].MediaType = "application/x-sh" }, "unknown media type"},
		{"huge layer", func(m *ocispec.Manifest) { m.Layers[0].Size = 1 << 40 }, "more than"},
		{"negative size", func(m *ocispec.Manifest) { m.Layers[0].Size = -1 }, "more than"},
		{"not a leaf package", func(m *ocispec.Manifest) { m.ArtifactType = "application/vnd.oci.image" }, "not a leaf package"},
		{"config type", func(m *ocispec.Manifest) { m.Config.MediaType = "application/json" }, "config media type"},
		{"duplicate", func(m *ocispec.Manifest) { m.Layers = append(m.Layers, m.Layers[0]) }, "appears twice"},
		{"object missing", func(m *ocispec.Manifest) { m.Layers = m.Layers[:1] }, "not in the package"},
		{"name mismatch", func(m *ocispec.Manifest) { m.Annotations[AnnotationName] = "other" }, "manifest annotation names"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m ocispec.Manifest
			json.Unmarshal(raw, &m)
			tc.edit(&m)
			d := pushManifest(t, s, m)
			if _, err := Read(ctx, s, d, ""); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("descriptor lies about the digest", func(t *testing.T) {
		d := good
		d.Digest = digest.FromString("something else")
		if _, err := Read(ctx, s, d, ""); err == nil {
			t.Errorf("accepted")
		}
	})
	t.Run("descriptor lies about the size", func(t *testing.T) {
		d := good
		d.Size--
		if _, err := Read(ctx, s, d, ""); err == nil {
			t.Errorf("accepted")
		}
	})
}

func TestExportImportKeepsSignatures(t *testing.T) {
	s := memory.New()
	d, _, err := BuildFiles(ctx, portfilter(t), s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AttachSignature(ctx, s, d, []byte(`{"fake":"bundle"}`), RoleAuthor); err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if err := Export(ctx, s, []ocispec.Descriptor{d}, &a); err != nil {
		t.Fatal(err)
	}
	Export(ctx, s, []ocispec.Descriptor{d}, &b)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Errorf("export is not reproducible")
	}
	l, err := OpenArchive(ctx, bytes.NewReader(a.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Packages) != 1 || l.Packages[0].Digest() != d.Digest.String() {
		t.Fatalf("imported %v", l.Packages)
	}
	sigs, err := Signatures(ctx, l, d)
	if err != nil || len(sigs) != 1 || string(sigs[0].Bundle) != `{"fake":"bundle"}` || sigs[0].Role != RoleAuthor {
		t.Fatalf("signatures after import: %v %v", sigs, err)
	}
}

// FuzzReadManifest: a registry or archive may hand over any bytes as a
// package manifest; Read never panics, and what it accepts is a valid
// leaf package.
func FuzzReadManifest(f *testing.F) {
	s := memory.New()
	files := portfilter(f)
	good, _, err := BuildFiles(ctx, files, s)
	if err != nil {
		f.Fatal(err)
	}
	raw, _ := content.FetchAll(ctx, s, good)
	f.Add(raw)
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.leaf.package.v1","config":{},"layers":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st := memory.New()
		// Every blob the good package has is available, so mutations of
		// its manifest reach the deeper checks.
		for _, name := range []string{"leaf.yaml", "README.md", "portfilter.bpf.c", "portfilter.bpf.o"} {
			mt := FileMediaType
			if name == manifest.FileName {
				mt = ConfigMediaType
			}
			d := content.NewDescriptorFromBytes(mt, files[name])
			st.Push(ctx, d, bytes.NewReader(files[name]))
		}
		d := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, data)
		if len(data) == 0 {
			return
		}
		st.Push(ctx, d, bytes.NewReader(data))
		p, err := Read(ctx, st, d, "amd64")
		if err != nil {
			return
		}
		if err := p.Manifest.Validate(); err != nil {
			t.Fatalf("accepted an invalid manifest: %v", err)
		}
		for name := range p.Files {
			if !manifest.RelativePath(name) && name != manifest.FileName {
				t.Fatalf("accepted file name %q", name)
			}
		}
	})
}
