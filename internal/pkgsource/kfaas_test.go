package pkgsource

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/leaf-ebpf/leaf/internal/archive"
)

func TestKFaaSBase(t *testing.T) {
	for url, want := range map[string]string{"file:///srv/kfaas/": "/srv/kfaas", "file://localhost/srv": "/srv", "https://kfaas.example/repo": "https://kfaas.example/repo"} {
		if got, err := kfaasBase(&Config{URL: url}); err != nil || got != want {
			t.Errorf("%s: %q %v", url, got, err)
		}
	}
	for _, bad := range []string{"file://srv/kfaas", "file:relative", "ftp://x/y"} {
		if _, err := kfaasBase(&Config{URL: bad}); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestCodename(t *testing.T) {
	f := filepath.Join(t.TempDir(), "os-release")
	os.WriteFile(f, []byte("NAME=\"Ubuntu\"\nVERSION_CODENAME=focal\n"), 0o644)
	if got := codenameFrom(f); got != "focal" {
		t.Errorf("codename %q", got)
	}
	os.WriteFile(f, []byte("NAME=x\n"), 0o644)
	if got := codenameFrom(f); got != "linux" {
		t.Errorf("no codename: %q", got)
	}
}

// TestKFaaSReusesBuild: the same artifact bytes resolve to the package
// built the first time (nothing unpacked or built again); changed bytes
// at the same path build anew.
func TestKFaaSReusesBuild(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "execcount", "1.0.0", "linux")
	os.MkdirAll(dir, 0o755)
	write := func(files archive.Files) {
		var buf bytes.Buffer
		if err := WriteKFaaS(&buf, "execcount", files); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "execcount.tar.gz"), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files := pkgFiles(t, "execcount", "1.0.0")
	write(files)
	k := NewKFaaS(root, "linux", "", nil)
	d1, s1, err := k.Resolve(ctx, "execcount", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	d2, s2, err := k.Resolve(ctx, "execcount", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if d1.Digest != d2.Digest || s1 != s2 {
		t.Errorf("same bytes built again: %s, %s, same store %v", d1.Digest, d2.Digest, s1 == s2)
	}
	files["README.md"] = []byte("changed")
	write(files)
	d3, s3, err := k.Resolve(ctx, "execcount", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if d3.Digest == d1.Digest || s3 == s1 {
		t.Errorf("changed artifact answered with the old build %s", d3.Digest)
	}
	if ok, err := s3.Exists(ctx, d3); err != nil || !ok {
		t.Errorf("new build's manifest not in its store: %v %v", ok, err)
	}
}
