// Package packaging holds the leaf .deb/.rpm definition (nfpm.yaml, the
// systemd unit, sysusers, tmpfiles, the default config); its test builds
// the packages and installs the .deb into a throwaway root.
package packaging

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func need(t *testing.T, tools ...string) {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/install-deps.sh installs it)", tool)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDebianPackage builds the packages, installs the .deb with dpkg into
// an empty root (maintainer scripts included, through DPKG_ROOT), checks
// the unit with systemd-analyze, then runs leafd from the installed paths
// in that root (chroot, private mount namespace) with the installed
// config and the token key handed over as systemd would hand a
// credential, and drives it with the installed leaf.
func TestDebianPackage(t *testing.T) {
	testenv.RequireKernel(t)
	need(t, "dpkg", "rpm", "systemd-analyze", "systemd-sysusers", "systemd-tmpfiles", "unshare", "chroot")
	out := t.TempDir()
	cmd := exec.Command("../scripts/package.sh", out)
	cmd.Env = append(os.Environ(), "LEAF_VERSION=0.0.0~test")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/package.sh: %v\n%s", err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "*.deb"))
	rpms, _ := filepath.Glob(filepath.Join(out, "*.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("packages built: %v %v", debs, rpms)
	}
	want := []string{"/usr/sbin/leafd", "/usr/bin/leaf", "/usr/lib/systemd/system/leafd.service", "/usr/lib/sysusers.d/leaf.conf",
		"/usr/lib/tmpfiles.d/leaf.conf", "/etc/leaf/leafd.yaml", "/usr/share/bash-completion/completions/leaf"}
	rpmFiles := run(t, "rpm", "-qlp", rpms[0])
	for _, f := range want {
		if !strings.Contains(rpmFiles, f+"\n") {
			t.Errorf("rpm lacks %s:\n%s", f, rpmFiles)
		}
	}

	root := installDeb(t, debs[0])
	for _, f := range append(want, "/etc/leaf/token.key") {
		if _, err := os.Stat(root + f); err != nil {
			t.Errorf("installed root lacks %s: %v", f, err)
		}
	}
	if fi, err := os.Stat(root + "/etc/leaf/token.key"); err == nil && fi.Mode().Perm() != 0o600 {
		t.Errorf("token key mode %v, want 0600", fi.Mode().Perm())
	}
	if g, _ := os.ReadFile(root + "/etc/group"); !regexp.MustCompile(`(?m)^leaf:x:\d+:`).Match(g) {
		t.Errorf("sysusers did not create group leaf:\n%s", g)
	}
	if fi, err := os.Stat(root + "/run/leaf"); err != nil || !fi.IsDir() {
		t.Errorf("tmpfiles did not create /run/leaf: %v", err)
	}

	checkUnit(t, root)
	runInstalled(t, root)

	run(t, "dpkg", "--root="+root, "--force-script-chrootless", "--log=/dev/null", "-r", "leaf")
	if _, err := os.Stat(root + "/usr/sbin/leafd"); !os.IsNotExist(err) {
		t.Errorf("leafd still installed after dpkg -r: %v", err)
	}
	if _, err := os.Stat(root + "/etc/leaf/leafd.yaml"); err != nil {
		t.Errorf("dpkg -r removed the config (only purge should): %v", err)
	}
}

// installDeb installs the package into an empty dpkg root.
func installDeb(t *testing.T, deb string) string {
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "etc"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		os.WriteFile(filepath.Join(root, f), nil, 0o644)
	}
	t.Log(run(t, "dpkg", "--root="+root, "--force-script-chrootless", "--log=/dev/null", "-i", deb))
	return root
}

// checkUnit runs systemd-analyze verify and security on the installed
// unit. verify looks for ExecStart's binary on this host, so it checks a
// copy pointing at the installed one.
func checkUnit(t *testing.T, root string) {
	unit, err := os.ReadFile(root + "/usr/lib/systemd/system/leafd.service")
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "leafd.service")
	os.WriteFile(copyPath, bytes.ReplaceAll(unit, []byte("ExecStart=/usr/sbin/leafd"), []byte("ExecStart="+root+"/usr/sbin/leafd")), 0o644)
	if out, err := exec.Command("systemd-analyze", "verify", copyPath).CombinedOutput(); err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	sec := run(t, "systemd-analyze", "security", "--offline=true", "--root="+root, "leafd.service")
	m := regexp.MustCompile(`Overall exposure level for leafd.service: ([0-9.]+)`).FindStringSubmatch(sec)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", sec)
	}
	score, _ := strconv.ParseFloat(m[1], 64)
	t.Logf("systemd-analyze security: exposure %.1f", score)
	// leafd must keep CAP_SYS_ADMIN, CAP_BPF and friends; everything else
	// systemd offers that still lets it work is on (docs/install.md).
	if score > 5.0 {
		t.Errorf("exposure %.1f, want at most 5.0:\n%s", score, sec)
	}
}

// runInstalled starts the installed leafd in the root and uses it.
func runInstalled(t *testing.T, root string) {
	p := testenv.NewPair(t)
	// systemd's LoadCredential= copies the key into a directory only the
	// service can read and names it in $CREDENTIALS_DIRECTORY.
	creds := filepath.Join(root, "run/credentials/leafd.service")
	os.MkdirAll(creds, 0o700)
	key, err := os.ReadFile(root + "/etc/leaf/token.key")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(creds, "token-key"), key, 0o400)
	for _, d := range []string{"proc", "sys", "dev", "var/run/netns"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	// The mounts live in leafd's private mount namespace and go with it;
	// leafd mounts its own bpffs at /run/leaf/bpf there.
	script := fmt.Sprintf(`set -e
mount --rbind /proc %[1]s/proc
mount --rbind /sys %[1]s/sys
mount --rbind /dev %[1]s/dev
mount --rbind /var/run/netns %[1]s/var/run/netns
exec chroot %[1]s /usr/sbin/leafd --config /etc/leaf/leafd.yaml --bpffs /run/leaf/bpf --metrics-address=`, root)
	var logs bytes.Buffer
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "CREDENTIALS_DIRECTORY=/run/credentials/leafd.service")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Error("installed leafd did not stop on SIGTERM")
		}
		if t.Failed() {
			t.Logf("leafd log:\n%s", logs.String())
		}
	}()
	leaf := func(args ...string) (string, error) {
		out, err := exec.Command(root+"/usr/bin/leaf", append([]string{"--socket", root + "/run/leaf/leafd.sock"}, args...)...).CombinedOutput()
		return string(out), err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := leaf("whoami")
		if err == nil {
			if !strings.Contains(out, "admin") {
				t.Fatalf("leaf whoami as root: %s", out)
			}
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("installed leafd exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("installed leafd does not answer: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The socket belongs to the group the package created.
	if fi, err := os.Stat(root + "/run/leaf/leafd.sock"); err != nil || fi.Sys().(*syscall.Stat_t).Gid == 0 {
		t.Errorf("socket not owned by group leaf: %v", err)
	}
	state := filepath.Join(t.TempDir(), "state.yaml")
	os.WriteFile(state, []byte(fmt.Sprintf(`apiVersion: leaf.dev/v1alpha1
kind: HostState
metadata: {name: pkgtest}
spec:
  attachments:
    - name: filter
      package: portfilter@1.0.0
      hook: {type: xdp, interface: %s, netns: %s}
      params: {ports: [7001]}
`, p.IfB, p.NsB)), 0o600)
	if out, err := leaf("apply", "-f", state); err != nil {
		t.Fatalf("leaf apply: %v\n%s", err, out)
	}
	if out, err := leaf("status"); err != nil || !strings.Contains(out, "attached") {
		t.Errorf("leaf status: %v\n%s", err, out)
	}
	if id := testenv.XDPProgID(t, p.NsB, p.IfB); id == 0 {
		t.Error("no XDP program on the interface after apply")
	}
	// Tokens work: the key came in as a credential.
	if out, err := leaf("token", "issue", "--subject", "pkgtest", "--role", "reader"); err != nil {
		t.Errorf("leaf token issue: %v\n%s", err, out)
	}
}
