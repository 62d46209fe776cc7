package e2e

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// Executable documentation: every ```sh block of README.md and docs/ is
// a copy-paste an operator will make, so each must be valid POSIX sh
// (checked with dash, which also refuses bash-only syntax such as
// <(printf …)), and each runs in a sandbox (a fresh directory as working
// and home directory, leaf and leafd first on PATH) and must succeed.
// A block that needs what a sandbox cannot give (a registry, a remote
// leafd, the host's /etc) says so on its first line:
//
//	# docs-test: skip: needs a registry
//
// A block that talks to leafd about an interface (README's quickstart on
// a real interface) says so instead; it runs against a leafd of the
// test's (LEAF_SOCKET) with IFACE set to a veth the test made in the
// host's network namespace:
//
//	# docs-test: with leafd: …
//
// Blocks meant to be read, not pasted (with prompts and output), are
// ```console.
const (
	docsSkip  = "# docs-test: skip:"
	docsLeafd = "# docs-test: with leafd:"
)

type shBlock struct {
	file   string
	line   int
	indent string // the fence's indentation (a block inside a list item)
	text   string
}

func shBlocks(t *testing.T) []shBlock {
	files, _ := filepath.Glob("../docs/*.md")
	files = append(files, "../README.md")
	var out []shBlock
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cur *shBlock
		sc := bufio.NewScanner(strings.NewReader(string(data)))
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			switch {
			case cur == nil && strings.TrimSpace(line) == "```sh":
				indent := line[:len(line)-len(strings.TrimLeft(line, " "))]
				cur = &shBlock{file: strings.TrimPrefix(f, "../"), line: n + 1, indent: indent}
			case cur != nil && strings.TrimSpace(line) == "```":
				out = append(out, *cur)
				cur = nil
			case cur != nil:
				cur.text += strings.TrimPrefix(line, cur.indent) + "\n"
			}
		}
	}
	return out
}

func TestDocsShellBlocks(t *testing.T) {
	if _, err := exec.LookPath("dash"); err != nil {
		t.Skip("dash not installed")
	}
	blocks := shBlocks(t)
	if len(blocks) < 5 {
		t.Fatalf("found only %d sh blocks", len(blocks))
	}
	bin := testenv.Binaries(t)
	ran := 0
	for _, b := range blocks {
		name := b.file + ":" + strings.TrimSpace(strings.SplitN(b.text, "\n", 2)[0])
		if out, err := exec.Command("dash", "-n", "-c", b.text).CombinedOutput(); err != nil {
			t.Errorf("%s:%d: not valid POSIX sh: %v\n%s", b.file, b.line, err, out)
			continue
		}
		if strings.HasPrefix(b.text, docsSkip) {
			t.Logf("%s:%d: not run (%s)", b.file, b.line, strings.TrimSpace(strings.TrimPrefix(strings.SplitN(b.text, "\n", 2)[0], docsSkip)))
			continue
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "dash", "-e", "-c", b.text)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "HOME="+dir, "PATH="+bin+":"+os.Getenv("PATH"), "LEAF_CONFIG="+filepath.Join(dir, "leaf.yaml"))
			var d *testenv.Daemon
			var iface string
			if strings.HasPrefix(b.text, docsLeafd) {
				d, iface = withLeafd(t)
				cmd.Env = append(cmd.Env, "LEAF_SOCKET="+d.Socket, "IFACE="+iface)
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s:%d: %v\n%s", b.file, b.line, err, out)
			}
			if d != nil {
				checkAppliedOnIface(t, d, iface)
			}
		})
		ran++
	}
	if ran == 0 {
		t.Error("no sh block ran")
	}
}

// withLeafd starts a leafd for a block and makes a veth pair in the host's
// network namespace (random names, removed at the end): the block gets
// LEAF_SOCKET and IFACE.
func withLeafd(t *testing.T) (*testenv.Daemon, string) {
	t.Helper()
	testenv.RequireKernel(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	iface := fmt.Sprintf("lq%x", rand.Uint32())
	if out, err := exec.Command("ip", "link", "add", iface, "type", "veth", "peer", "name", iface+"p").CombinedOutput(); err != nil {
		t.Fatalf("make veth %s: %v: %s", iface, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", iface).Run() })
	for _, l := range []string{iface, iface + "p"} {
		if out, err := exec.Command("ip", "link", "set", l, "up").CombinedOutput(); err != nil {
			t.Fatalf("set %s up: %v: %s", l, err, out)
		}
	}
	return d, iface
}

// checkAppliedOnIface checks that a block run withLeafd changed programs
// on IFACE: leafd's event log holds applies naming it.
func checkAppliedOnIface(t *testing.T, d *testenv.Daemon, iface string) {
	t.Helper()
	evs, err := d.Client.Events(ctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.Type == v1.EventApply && strings.Contains(e.Hook+" "+e.Message, iface) {
			n++
		}
	}
	if n == 0 {
		t.Errorf("the block applied nothing on %s; events: %+v", iface, evs)
	}
}
