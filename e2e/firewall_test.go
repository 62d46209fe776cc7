package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// pktCount reads pktcount's packet counter of an attachment.
func pktCount(t *testing.T, d *testenv.Daemon, name string) uint64 {
	t.Helper()
	dump, err := d.Client.DumpMap(ctx(t), name, "counters")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range dump.Entries {
		if *e.KeyUint == 0 {
			return *e.ValueUint
		}
	}
	return 0
}

// leafFirewall builds cmd/leaf-firewall once per test.
func leafFirewall(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "leaf-firewall")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/leaf-firewall").CombinedOutput(); err != nil {
		t.Fatalf("build leaf-firewall: %v: %s", err, out)
	}
	return bin
}

// TestFirewallInChains runs the built-in firewall package through leafd on
// XDP and TC, before and after pktcount in a chain, with its rules written
// into leafd's pins by leaf-firewall: denied packets never reach a later
// member, allowed ones do, and a member placed first sees everything.
func TestFirewallInChains(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	bin := leafFirewall(t, t.TempDir())
	for _, hook := range []struct{ typ, fw, count string }{
		{"xdp", "firewall_xdp", "count_xdp"},
		{"tc", "firewall_tc", "count_tc"},
	} {
		for _, counterFirst := range []bool{false, true} {
			h := fmt.Sprintf("{type: xdp, interface: %s, netns: %s}", p.IfB, p.NsB)
			if hook.typ == "tc" {
				h = fmt.Sprintf("{type: tc, direction: ingress, interface: %s, netns: %s}", p.IfB, p.NsB)
			}
			countPrio := 20
			if counterFirst {
				countPrio = 5
			}
			apply(t, d, doc(
				fmt.Sprintf("name: fw\npackage: firewall@1.0.0\nprogram: %s\npriority: 10\nhook: %s", hook.fw, h),
				fmt.Sprintf("name: count\npackage: pktcount@1.0.0\nprogram: %s\npriority: %d\nhook: %s", hook.count, countPrio, h),
			))
			pins := filepath.Join(d.BPFFS, "attachments", "fw", "maps")
			if out, err := exec.Command(bin, "--pins", pins, "--rule", "deny udp dport 7002").CombinedOutput(); err != nil {
				t.Fatalf("leaf-firewall: %v: %s", err, out)
			}
			before := pktCount(t, d, "count")
			got1, got2 := p.Delivered(t, 7001, 30, 300*time.Millisecond), p.Delivered(t, 7002, 30, 300*time.Millisecond)
			if got1 != 30 || got2 != 0 {
				t.Errorf("%s, counter first %v: %d of 30 to 7001 and %d of 30 to 7002 arrived, want 30 and 0", hook.typ, counterFirst, got1, got2)
			}
			seen := pktCount(t, d, "count") - before
			want := uint64(30)
			if counterFirst {
				want = 60
			}
			// ARP may add a few frames; denied datagrams must not reach a
			// later member.
			if seen < want || seen > want+4 {
				t.Errorf("%s, counter first %v: pktcount saw %d packets, want %d (+ARP)", hook.typ, counterFirst, seen, want)
			}
			out, err := exec.Command(bin, "--pins", pins, "--hits").CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "0\t30\n") {
				t.Errorf("%s: hits: %v: %q, want rule 0 with 30", hook.typ, err, out)
			}
			apply(t, d, doc())
		}
	}
}

// builtinWithCompanion is a repository holding the built-in package pkg
// with the command cmd/<bin> built into it as its companion (CAP_BPF).
func builtinWithCompanion(t *testing.T, pkg, bin string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), pkg)
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	for _, f := range []string{pkg + ".bpf.o", pkg + ".bpf.c", "README.md", "leaf.yaml"} {
		data, err := os.ReadFile(filepath.Join("..", "packages", pkg, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "leaf.yaml" {
			data = append(data, "companion:\n  path: bin/"+bin+"\n  capabilities: [CAP_BPF]\n"...)
		}
		os.WriteFile(filepath.Join(dir, f), data, 0o644)
	}
	if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "bin", bin), "../cmd/"+bin).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v: %s", bin, err, out)
	}
	return filepath.Dir(dir)
}

// TestFirewallRulesFromDesiredState: the rules are companion arguments in
// the desired state; changing them replaces the rule set without loading
// the program again.
func TestFirewallRulesFromDesiredState(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--repository-allow-unsigned", builtinWithCompanion(t, "firewall", "leaf-firewall"), "--companion-dir", companionDir(t)}})
	att := func(port int) []byte {
		return doc(fmt.Sprintf("name: fw\npackage: firewall@1.0.0\nprogram: firewall_xdp\nhook: {type: xdp, interface: %s, netns: %s}\ncompanion: {args: [--rule, 'default allow', --rule, 'deny udp dport %d']}", p.IfB, p.NsB, port))
	}
	apply(t, d, att(7001))
	waitUntil(t, "the companion installs the rules", func() bool { return p.Delivered(t, 7001, 5, 100*time.Millisecond) == 0 })
	if got := p.Delivered(t, 7002, 20, 300*time.Millisecond); got != 20 {
		t.Fatalf("%d of 20 to 7002 arrived, want all", got)
	}
	prog := status(t, d)["fw"].ProgramID

	apply(t, d, att(7002))
	waitUntil(t, "the new rule set replaces the old", func() bool { return p.Delivered(t, 7002, 5, 100*time.Millisecond) == 0 })
	if got := p.Delivered(t, 7001, 20, 300*time.Millisecond); got != 20 {
		t.Fatalf("after the change %d of 20 to 7001 arrived, want all", got)
	}
	if now := status(t, d)["fw"].ProgramID; now != prog {
		t.Fatalf("the program was reloaded (%d → %d); a rule change must not reload it", prog, now)
	}
}
