package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"

	"github.com/leaf-ebpf/leaf/internal/ocipkg"
	"github.com/leaf-ebpf/leaf/internal/signature"
)

// TestSigningToolsRefuseTampering is issue 10's signing-tool findings:
// `leaf pkg sign --attach-bundle` checks a bundle before attaching it;
// `leaf pkg verify` on a tampered signature by a trusted key says the
// signature does not verify (not that the key is unknown); and a manifest
// blob that does not match its digest is named with both digests, not
// reported as an "invalid OCI Image Index".
func TestSigningToolsRefuseTampering(t *testing.T) {
	work := t.TempDir()
	layout := filepath.Join(work, "layout")
	leafPkg(t, "build", "--no-compile", "--layout", layout, pkgDir(t, "3.0.0"))
	leafPkg(t, "build", "--no-compile", "--layout", layout, pkgDir(t, "3.1.0"))
	author := filepath.Join(work, "author")
	leafPkg(t, "keygen", "--out", author)
	good := filepath.Join(work, "good.sigstore.json")
	leafPkg(t, "sign", "portfilter@3.0.0", "--layout", layout, "--key", author+".key", "--bundle", good)
	data, _ := os.ReadFile(good)
	tampered := []byte(strings.Replace(string(data), `"signature":"M`, `"signature":"N`, 1))
	if string(tampered) == string(data) {
		t.Fatalf("bundle has no signature to tamper with: %s", data)
	}
	bad := filepath.Join(work, "bad.sigstore.json")
	os.WriteFile(bad, tampered, 0o644)

	// Attaching: refused without a key to check with, and when it does
	// not verify; accepted when it does.
	r := runCLI(t, "/nonexistent.sock", nil, "pkg", "sign", "portfilter@3.0.0", "--layout", layout, "--role", "repository", "--attach-bundle", bad)
	if r.Code == 0 || !strings.Contains(r.Stderr, "--public-key") {
		t.Errorf("attach without --public-key: exit %d %q", r.Code, r.Stderr)
	}
	r = runCLI(t, "/nonexistent.sock", nil, "pkg", "sign", "portfilter@3.0.0", "--layout", layout, "--role", "repository", "--attach-bundle", bad, "--public-key", author+".pub")
	if r.Code == 0 || !strings.Contains(r.Stderr, "does not verify") || !strings.Contains(r.Stderr, "nothing attached") || strings.Contains(r.Stdout, "signed") {
		t.Errorf("attach of a tampered bundle: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	// The untampered one attaches.
	if out := leafPkg(t, "sign", "portfilter@3.0.0", "--layout", layout, "--role", "repository", "--attach-bundle", good, "--public-key", author+".pub"); !strings.Contains(out, "verified with") {
		t.Errorf("attach of a good bundle: %q", out)
	}

	// Verifying a tampered signature that names the trusted key.
	ctx := context.Background()
	store, err := oci.New(layout)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := store.Resolve(ctx, ocipkg.Ref("portfilter", "3.1.0"))
	if err != nil {
		t.Fatal(err)
	}
	// A real signature of 3.1.0 by the trusted key, tampered and attached
	// behind leaf's back.
	raw, err := content.FetchAll(ctx, store, desc)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := signature.LoadPrivateKey(author + ".key")
	if err != nil {
		t.Fatal(err)
	}
	b, err := signer.Sign(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), `"signature":"M`, `"signature":"N`, 1))
	if _, err := ocipkg.AddSignature(ctx, store, desc, b, ocipkg.RoleAuthor); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, "/nonexistent.sock", nil, "pkg", "verify", "portfilter@3.1.0", "--layout", layout, "--key", author+".pub")
	if r.Code == 0 || !strings.Contains(r.Stderr, "does not verify") || strings.Contains(r.Stderr, "none of the trusted keys") {
		t.Errorf("verify of a tampered signature: exit %d %q", r.Code, r.Stderr)
	}

	// A manifest blob altered on disk: named, with both digests.
	blob := filepath.Join(layout, "blobs", "sha256", desc.Digest.Encoded())
	altered := append([]byte(nil), raw...)
	altered[len(altered)-2] ^= ' ' ^ '\t' // same size, other bytes
	if err := os.WriteFile(blob, altered, 0o644); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, "/nonexistent.sock", nil, "pkg", "verify", "portfilter@3.0.0", "--layout", layout, "--key", author+".pub")
	if r.Code == 0 || !strings.Contains(r.Stderr, "manifest blob "+desc.Digest.String()) || !strings.Contains(r.Stderr, "has digest sha256:") {
		t.Errorf("verify with an altered manifest blob: exit %d %q", r.Code, r.Stderr)
	}
}
