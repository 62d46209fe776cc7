package testenv

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// PeerAnswer is what peerclient got.
type PeerAnswer struct {
	Code  int    `json:"code"`
	Body  string `json:"body"`
	Error string `json:"error"`
}

// AsUser makes one request to leafd's socket from a process running with
// cred, so leafd's SO_PEERCRED sees that uid, gid and groups.
func AsUser(t testing.TB, cred *syscall.Credential, socket, method, path, body, token string) PeerAnswer {
	t.Helper()
	cmd := exec.Command(filepath.Join(Binaries(t), "peerclient"), "-socket", socket, "-method", method, "-path", path, "-body", body, "-token", token)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	// A race-built binary sleeps a second at exit unless told not to.
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("peerclient as uid %d: %v: %s", cred.Uid, err, out)
	}
	var a PeerAnswer
	if err := json.Unmarshal(out, &a); err != nil {
		t.Fatalf("peerclient output %q: %v", out, err)
	}
	return a
}

// SharedDir makes a directory every user may enter (for a socket that
// other uids must reach), removed when the test ends.
func SharedDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "leaf-shared-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
