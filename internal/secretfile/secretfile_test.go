package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func write(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestReadChecksTheDescriptor(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	write(t, key, "secret", 0o600)
	f, err := Read(key, Private)
	if err != nil || string(f.Data) != "secret" {
		t.Fatalf("Read = %q, %v", f.Data, err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o620, 0o644} {
		os.Chmod(key, mode)
		if _, err := Read(key, Private); err == nil || !strings.Contains(err.Error(), "group or others") {
			t.Errorf("private, mode %04o: %v", mode, err)
		}
	}
	os.Chmod(key, 0o644)
	if _, err := Read(key, Public); err != nil {
		t.Errorf("public, mode 0644: %v", err)
	}
	os.Chmod(key, 0o664)
	if _, err := Read(key, Public); err == nil || !strings.Contains(err.Error(), "change it") {
		t.Errorf("public, mode 0664: %v", err)
	}
	os.Chmod(key, 0o600)

	link := filepath.Join(dir, "link")
	os.Symlink(key, link)
	if _, err := Read(link, Private); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("link as the file: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(fifo, Private); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("fifo: %v", err)
	}
	if _, err := Read(dir, Private); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	big := filepath.Join(dir, "big")
	write(t, big, strings.Repeat("x", 100), 0o600)
	if _, err := ReadMax(big, Private, 99); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("over the bound: %v", err)
	}
}

// A link among the directories is resolved once and the real directories
// are checked, so /etc/leaf -> /srv/leaf works when /srv/leaf is safe.
func TestReadThroughLinkedDirectory(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	os.Mkdir(real, 0o700)
	write(t, filepath.Join(real, "key"), "k", 0o600)
	os.Symlink(real, filepath.Join(dir, "alias"))
	if _, err := Read(filepath.Join(dir, "alias", "key"), Private); err != nil {
		t.Fatal(err)
	}
}

func TestReadRefusesWritableDirectories(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	os.Mkdir(keys, 0o755)
	key := filepath.Join(keys, "key")
	write(t, key, "k", 0o600)
	os.Chmod(keys, 0o775)
	if _, err := Read(key, Private); err == nil || !strings.Contains(err.Error(), "directory "+keys) || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("group-writable directory: %v", err)
	}
	// Higher up counts too.
	os.Chmod(keys, 0o700)
	os.Chmod(dir, 0o777)
	if _, err := Read(key, Private); err == nil || !strings.Contains(err.Error(), "directory "+dir+" ") {
		t.Errorf("world-writable grandparent: %v", err)
	}
	os.Chmod(dir, 0o700)
	if os.Geteuid() != 0 {
		t.Skip("owner checks need root to chown")
	}
	os.Chown(keys, 65534, 65534)
	if _, err := Read(key, Private); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Errorf("directory owned by another user: %v", err)
	}
	os.Chown(keys, 0, 0)
	os.Chown(key, 65534, 65534)
	if _, err := Read(key, Private); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Errorf("file owned by another user: %v", err)
	}
}
