package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/memory"
)

// copyTestGraph copies a manifest with two layers between memory stores,
// reporting progress to p.
func copyTestGraph(t *testing.T, p *progress) {
	t.Helper()
	ctx := context.Background()
	src := memory.New()
	push := func(mediaType string, b []byte) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
		if err := src.Push(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	l1 := push("application/octet-stream", bytes.Repeat([]byte("a"), 3000))
	l2 := push("application/octet-stream", []byte("bb"))
	cfg := push("application/vnd.oci.empty.v1+json", []byte("{}"))
	root, err := oras.PackManifest(ctx, src, oras.PackManifestVersion1_1, "application/x-test",
		oras.PackManifestOptions{Layers: []ocispec.Descriptor{l1, l2}, ConfigDescriptor: &cfg})
	if err != nil {
		t.Fatal(err)
	}
	opts := oras.DefaultCopyGraphOptions
	p.hook(&opts)
	if err := oras.CopyGraph(ctx, src, memory.New(), root, opts); err != nil {
		t.Fatal(err)
	}
	p.finish()
}

func TestProgressOnTerminal(t *testing.T) {
	var out bytes.Buffer
	copyTestGraph(t, newProgress(&out, true, "push x@1"))
	s := out.String()
	// Manifest, config and two layers: the last report counts all four.
	if !strings.HasPrefix(s, "\rpush x@1: ") || !strings.Contains(s, "4/4 blobs") || !strings.HasSuffix(s, "\n") {
		t.Fatalf("progress output %q", s)
	}
	// The last report has every byte: the 3000-byte layer makes it over
	// 2.9 KiB, of as many as were announced.
	last := s[strings.LastIndex(s, "\r"):]
	_, sizes, _ := strings.Cut(last, "blobs, ")
	sent, total, _ := strings.Cut(strings.TrimSpace(sizes), "/")
	if sent != total || !strings.HasPrefix(sent, "3.") || !strings.HasSuffix(sent, "KiB") {
		t.Errorf("last progress report %q: want all of about 3 KiB sent", last)
	}
}

func TestProgressQuietWhenNotTerminal(t *testing.T) {
	var out bytes.Buffer
	copyTestGraph(t, newProgress(&out, false, "push x@1"))
	if out.Len() != 0 {
		t.Fatalf("wrote %q when not on a terminal", out.String())
	}
}
