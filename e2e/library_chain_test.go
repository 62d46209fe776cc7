package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/internal/netnsutil"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// mapValue reads one key of an attachment's array map (per-CPU values
// summed).
func mapValue(t *testing.T, d *testenv.Daemon, att, m string, key uint64) uint64 {
	t.Helper()
	dump, err := d.Client.DumpMap(ctx(t), att, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range dump.Entries {
		if *e.KeyUint == key {
			return *e.ValueUint
		}
	}
	return 0
}

// TestLibraryPackagesChainInAnyOrder chains the packages on one XDP hook
// (firewall, ratelimit, pktcount) and on one TC hook (firewall, connlimit,
// mirror, flowexport, pktcount), in one order and then the reverse, all
// rewritten by leaf at load time. The firewall denies UDP to 7502: members
// before it see those datagrams, members after it do not; everything else
// runs through every member.
func TestLibraryPackagesChainInAnyOrder(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	m0, m1 := "m0"+p.IfB[2:], "m1"+p.IfB[2:]
	if len(m0) > 15 {
		m0, m1 = m0[:15], m1[:15]
	}
	for _, args := range [][]string{
		{"ip", "-n", p.NsB, "link", "add", m0, "type", "veth", "peer", "name", m1},
		{"ip", "netns", "exec", p.NsB, "sysctl", "-qw", "net.ipv6.conf." + m0 + ".disable_ipv6=1", "net.ipv6.conf." + m1 + ".disable_ipv6=1"},
		{"ip", "-n", p.NsB, "link", "set", m0, "up"},
		{"ip", "-n", p.NsB, "link", "set", m1, "up"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	idx, err := netnsutil.Ifindex(testenv.NetnsPath(p.NsB), m0)
	if err != nil {
		t.Fatal(err)
	}
	d := testenv.StartDaemon(t, testenv.DaemonOptions{})
	bin := leafFirewall(t, t.TempDir())
	xdp := fmt.Sprintf("{type: xdp, interface: %s, netns: %s}", p.IfB, p.NsB)
	tc := fmt.Sprintf("{type: tc, direction: ingress, interface: %s, netns: %s}", p.IfB, p.NsB)
	members := []string{
		"name: fw\npackage: firewall@1.0.0\nprogram: firewall_xdp\nhook: " + xdp,
		"name: rl\npackage: ratelimit@1.0.0\nhook: " + xdp + "\nparams: {ports: [7501], rate: 1000000, burst: 1000, syn_only: false}",
		"name: cx\npackage: pktcount@1.0.0\nprogram: count_xdp\nhook: " + xdp,
		"name: fwt\npackage: firewall@1.0.0\nprogram: firewall_tc\nhook: " + tc,
		"name: cl\npackage: connlimit@1.0.0\nhook: " + tc + "\nparams: {ports: [7503], max_connections: 1}",
		fmt.Sprintf("name: mir\npackage: mirror@1.0.0\nhook: %s\nparams: {target_ifindex: %d, protocol: 17, ports: [7501]}", tc, idx),
		"name: fe\npackage: flowexport@1.0.0\nhook: " + tc,
		"name: ct\npackage: pktcount@1.0.0\nprogram: count_tc\nhook: " + tc,
	}
	for round, reverse := range []bool{false, true} {
		var atts []string
		for i, m := range members {
			prio := 10 + i
			if reverse {
				prio = 100 - i
			}
			atts = append(atts, fmt.Sprintf("%s\npriority: %d", m, prio))
		}
		apply(t, d, doc(atts...))
		if round == 0 {
			for _, fw := range []string{"fw", "fwt"} {
				if out, err := exec.Command(bin, "--pins", filepath.Join(d.BPFFS, "attachments", fw, "maps"), "--rule", "deny udp dport 7502").CombinedOutput(); err != nil {
					t.Fatalf("leaf-firewall: %v: %s", err, out)
				}
			}
		}
		for name, st := range status(t, d) {
			if st.State != "attached" {
				t.Fatalf("reverse %v: %s is %s", reverse, name, st.State)
			}
		}
		cx, ct, mirrored := pktCount(t, d, "cx"), pktCount(t, d, "ct"), rxPackets(t, p.NsB, m1)
		rlOther, rlPassed := mapValue(t, d, "rl", "rl_stats", 2), mapValue(t, d, "rl", "rl_stats", 0)
		fe := mapValue(t, d, "fe", "flow_stats", 0)

		if got := p.Delivered(t, 7501, 20, 300*time.Millisecond); got != 20 {
			t.Errorf("reverse %v: %d of 20 to 7501 arrived", reverse, got)
		}
		if got := p.Delivered(t, 7502, 20, 300*time.Millisecond); got != 0 {
			t.Errorf("reverse %v: %d of 20 to 7502 arrived, want 0 (firewall)", reverse, got)
		}
		time.Sleep(100 * time.Millisecond)
		// With the firewall first (XDP), later members see only the 20
		// allowed datagrams; reversed, they see all 40 (±ARP). TC runs
		// only on what XDP passed: 20 either way.
		wantX := uint64(20)
		if reverse {
			wantX = 40
		}
		within := func(what string, got, want uint64) {
			if got < want || got > want+4 {
				t.Errorf("reverse %v: %s = %d, want %d (+ARP)", reverse, what, got, want)
			}
		}
		within("pktcount on XDP", pktCount(t, d, "cx")-cx, wantX)
		within("pktcount on TC", pktCount(t, d, "ct")-ct, 20)
		within("flowexport on TC", mapValue(t, d, "fe", "flow_stats", 0)-fe, 20)
		if got := mapValue(t, d, "rl", "rl_stats", 0) - rlPassed; got != 20 {
			t.Errorf("reverse %v: ratelimit passed %d on its port, want 20", reverse, got)
		}
		within("ratelimit's other traffic", mapValue(t, d, "rl", "rl_stats", 2)-rlOther, wantX-20)
		if got := rxPackets(t, p.NsB, m1) - mirrored; got != 20 {
			t.Errorf("reverse %v: the mirror copied %d, want 20", reverse, got)
		}
	}
	if logs := d.Logs(); strings.Contains(logs, "level=ERROR") {
		t.Errorf("leafd logged errors:\n%s", logs)
	}
}

// TestLibraryPackagesLintClean: every library package passes leaf pkg
// lint, the kernel's verifier included, with no warning.
func TestLibraryPackagesLintClean(t *testing.T) {
	testenv.RequireKernel(t)
	for _, pkg := range []string{"firewall", "ratelimit", "connlimit", "mirror", "flowexport"} {
		out := leafPkg(t, "lint", filepath.Join("..", "packages", pkg))
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(line, "ok  ") {
				t.Errorf("%s: %q", pkg, line)
			}
		}
		if !strings.Contains(out, "ok  verifier:") {
			t.Errorf("%s: the verifier did not run:\n%s", pkg, out)
		}
	}
}
