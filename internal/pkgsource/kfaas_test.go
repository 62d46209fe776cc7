package pkgsource

import (
	"os"
	"path/filepath"
	"testing"
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
