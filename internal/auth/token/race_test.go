package token

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// swapperEnv makes the test binary the attacker of TestKeySymlinkRace:
// as an unprivileged user it swaps a link in a directory it owns between
// root's key and its own, as fast as it can, for a bounded number of
// rounds.
const swapperEnv = "LEAF_TEST_KEY_SWAPPER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(swapperEnv); dir != "" {
		os.Exit(swap(dir))
	}
	os.Exit(m.Run())
}

func swap(dir string) int {
	link, tmp := filepath.Join(dir, "token.key"), filepath.Join(dir, ".swap")
	targets := []string{os.Getenv(swapperEnv + "_GOOD"), filepath.Join(dir, "evil.key")}
	for i := 0; i < 200000; i++ {
		os.Remove(tmp)
		if err := os.Symlink(targets[i%2], tmp); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := os.Rename(tmp, link); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// TestKeySymlinkRace is the attack of issue 10: a user who can write the
// key's directory swaps a link between the root-owned key and their own
// while leafd reads. leafd must never load the attacker's key; it refuses
// the key outright because the directory is not safe.
func TestKeySymlinkRace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the attacker runs as uid 65534")
	}
	const nobody = 65534
	base := t.TempDir()
	// t.TempDir's parent is 0700; uid 65534 must reach its directory.
	os.Chmod(filepath.Dir(base), 0o755)
	os.Chmod(base, 0o755)
	// The test binary lives in a directory only root may enter: the
	// attacker runs a copy.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	attacker := filepath.Join(base, "attacker")
	if err := os.WriteFile(attacker, self, 0o755); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(base, "root", "token.key")
	os.Mkdir(filepath.Dir(good), 0o755)
	goodID, err := GenerateKeyFile(good)
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(base, "keys") // the attacker's writable directory
	os.Mkdir(keys, 0o755)
	evil := filepath.Join(keys, "evil.key")
	evilID, err := GenerateKeyFile(evil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{keys, evil} {
		if err := os.Chown(p, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(keys, "token.key")
	if err := os.Symlink(good, path); err != nil {
		t.Fatal(err)
	}
	os.Lchown(path, nobody, nobody)

	cmd := exec.Command(attacker, "-test.run=^$")
	cmd.Env = append(os.Environ(), swapperEnv+"="+keys, swapperEnv+"_GOOD="+good)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})

	const rounds = 3000
	var loaded, evilLoaded, refused int
	var lastErr error
	for i := 0; i < rounds; i++ {
		ks, err := OpenFile(path)
		if err != nil {
			refused++
			lastErr = err
			continue
		}
		k, _ := ks.Current()
		switch k.ID {
		case evilID:
			evilLoaded++
		case goodID:
			loaded++
		}
	}
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("attacker failed: %v: %s", err, stderr.String())
		}
	default:
	}
	t.Logf("%d rounds: %d refused, %d root key, %d attacker key; last error: %v", rounds, refused, loaded, evilLoaded, lastErr)
	if evilLoaded > 0 {
		t.Errorf("loaded the attacker's key %d times in %d rounds", evilLoaded, rounds)
	}
	if refused != rounds {
		t.Errorf("a key behind a directory uid %d can write was used %d times in %d rounds; want it refused every time", nobody, rounds-refused, rounds)
	}
	if lastErr != nil && !strings.Contains(lastErr.Error(), "directory "+keys) {
		t.Errorf("refusal %q does not name the writable directory %s", lastErr, keys)
	}
}
