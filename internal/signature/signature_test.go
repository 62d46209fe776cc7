package signature

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leaf-ebpf/leaf/internal/testenv"
)

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func newSigner(t *testing.T, password []byte) (*Signer, []byte, []byte) {
	t.Helper()
	priv, pub, err := GenerateKey(password)
	if err != nil {
		t.Fatal(err)
	}
	if password != nil {
		t.Setenv(PasswordEnv, string(password))
	}
	s, err := ParsePrivateKey("test.key", priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, priv, pub
}

func TestSignVerify(t *testing.T) {
	s, _, pub := newSigner(t, nil)
	other, _, _ := newSigner(t, nil)
	msg := []byte(`{"schemaVersion":2}`)
	b, err := s.Sign(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ParsePublicKey("test.pub", pub)
	if err != nil {
		t.Fatal(err)
	}
	if pk.ID != s.Public.ID {
		t.Fatalf("public key ID %s, signer's %s", pk.ID, s.Public.ID)
	}
	got, err := Verify(b, digestOf(msg), []*PublicKey{other.Public, pk})
	if err != nil || got != pk {
		t.Fatalf("Verify = %v, %v; want the second key", got, err)
	}
	if _, err := Verify(b, digestOf(msg), []*PublicKey{other.Public}); !errors.Is(err, ErrUntrustedKey) {
		t.Errorf("untrusted key: got %v, want ErrUntrustedKey", err)
	}
	if _, err := Verify(b, digestOf([]byte("another package")), []*PublicKey{pk}); err == nil || !strings.Contains(err.Error(), "not this package") {
		t.Errorf("other digest: got %v", err)
	}
	tampered := []byte(strings.Replace(string(b), `"signature":"M`, `"signature":"N`, 1))
	if bytes.Equal(tampered, b) {
		t.Fatalf("test bundle has no signature to tamper with: %s", b)
	}
	// The bundle names the trusted key: say the signature is bad, not
	// that the key is unknown.
	if _, err := Verify(tampered, digestOf(msg), []*PublicKey{other.Public, pk}); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "does not verify") || strings.Contains(err.Error(), "none of the trusted keys") {
		t.Errorf("tampered signature: got %v, want ErrBadSignature", err)
	}
	if _, err := Verify([]byte(`{"mediaType":"nope"}`), digestOf(msg), []*PublicKey{pk}); err == nil {
		t.Errorf("garbage bundle verified")
	}
}

func TestEncryptedKey(t *testing.T) {
	s, priv, _ := newSigner(t, []byte("secret"))
	if !strings.Contains(string(priv), "ENCRYPTED SIGSTORE PRIVATE KEY") {
		t.Fatalf("want cosign's encrypted format, got %.40s", priv)
	}
	t.Setenv(PasswordEnv, "wrong")
	if _, err := ParsePrivateKey("k", priv); err == nil {
		t.Fatalf("wrong password accepted")
	}
	_ = s
}

// emptyTrustedRoot lets cosign verify a keyed bundle offline: with the
// new bundle format it otherwise fetches the public-good trust root.
const emptyTrustedRoot = `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`

// TestCosignInterop: a bundle leaf makes verifies with cosign, and a
// bundle cosign makes verifies with leaf. Offline both ways.
func TestCosignInterop(t *testing.T) {
	cosign := testenv.Cosign(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(cosign, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	msg := write("manifest.json", []byte(`{"schemaVersion":2,"artifactType":"application/vnd.leaf.package.v1"}`))
	root := write("trusted_root.json", []byte(emptyTrustedRoot))

	// leaf signs, cosign verifies.
	s, _, pub := newSigner(t, nil)
	data, _ := os.ReadFile(msg)
	b, err := s.Sign(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	write("leaf.sigstore.json", b)
	write("leaf.pub", pub)
	if out, err := run(nil, "verify-blob", "--key", "leaf.pub", "--bundle", "leaf.sigstore.json", "--new-bundle-format", "--insecure-ignore-tlog=true", "--trusted-root", root, "manifest.json"); err != nil || !strings.Contains(out, "Verified OK") {
		t.Fatalf("cosign verify-blob of leaf's bundle: %v\n%s", err, out)
	}
	write("other.json", []byte("something else"))
	if out, err := run(nil, "verify-blob", "--key", "leaf.pub", "--bundle", "leaf.sigstore.json", "--new-bundle-format", "--insecure-ignore-tlog=true", "--trusted-root", root, "other.json"); err == nil {
		t.Fatalf("cosign verified leaf's bundle against another blob:\n%s", out)
	}

	// cosign signs, leaf verifies.
	env := []string{"COSIGN_PASSWORD=pw"}
	if out, err := run(env, "generate-key-pair"); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	if out, err := run(env, "sign-blob", "--key", "cosign.key", "--bundle", "cosign.sigstore.json", "--new-bundle-format", "--tlog-upload=false", "--yes", "manifest.json"); err != nil {
		t.Fatalf("cosign sign-blob: %v\n%s", err, out)
	}
	cb, _ := os.ReadFile(filepath.Join(dir, "cosign.sigstore.json"))
	cpub, err := LoadPublicKey(filepath.Join(dir, "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if k, err := Verify(cb, digestOf(data), []*PublicKey{s.Public, cpub}); err != nil || k != cpub {
		t.Fatalf("leaf verify of cosign's bundle: %v, %v", k, err)
	}
	if _, err := Verify(cb, digestOf(data), []*PublicKey{s.Public}); !errors.Is(err, ErrUntrustedKey) {
		t.Fatalf("cosign's bundle verified with leaf's key: %v", err)
	}

	// leaf signs with cosign's encrypted key.
	t.Setenv("COSIGN_PASSWORD", "pw")
	ck, err := LoadPrivateKey(filepath.Join(dir, "cosign.key"))
	if err != nil {
		t.Fatalf("leaf reads cosign.key: %v", err)
	}
	if ck.Public.ID != cpub.ID {
		t.Fatalf("cosign.key public half %s, cosign.pub %s", ck.Public.ID, cpub.ID)
	}
}
