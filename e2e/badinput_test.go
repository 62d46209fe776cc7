package e2e

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/client"
	"github.com/leaf-ebpf/leaf/internal/hook"
	"github.com/leaf-ebpf/leaf/internal/netnsutil"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// snapshot is everything a failed apply must leave unchanged.
type snapshot struct {
	Status  map[string]v1.AttachmentStatus
	Pins    []string
	XDP     uint32
	Blocked []string
	TCXOnA  int
}

func takeSnapshot(t *testing.T, d *testenv.Daemon, p *testenv.Pair) snapshot {
	t.Helper()
	s := snapshot{Status: status(t, d), Pins: pinTree(t, d.BPFFS), XDP: xdpProgID(t, p.NsB, p.IfB)}
	dump, err := d.Client.DumpMap(ctx(t), "filter", "blocked_ports")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range dump.Entries {
		s.Blocked = append(s.Blocked, e.Key)
	}
	s.TCXOnA = len(tcxPrograms(t, p.NsA, p.IfA, ebpf.AttachTCXIngress))
	return s
}

// tcxPrograms asks the kernel which TCX programs run on an interface.
func tcxPrograms(t *testing.T, netns, ifname string, attach ebpf.AttachType) []link.AttachedProgram {
	t.Helper()
	var progs []link.AttachedProgram
	err := netnsutil.Do(testenv.NetnsPath(netns), func() error {
		idx, err := netnsutil.Ifindex("", ifname)
		if err != nil {
			return err
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: idx, Attach: attach})
		if err != nil {
			return err
		}
		progs = res.Programs
		return nil
	})
	if err != nil {
		t.Fatalf("query TCX on %s: %v", ifname, err)
	}
	return progs
}

// attachForeignXDP attaches an XDP program leaf does not manage.
func attachForeignXDP(t *testing.T, netns, ifname string) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	err = netnsutil.Do(testenv.NetnsPath(netns), func() error {
		idx, err := netnsutil.Ifindex("", ifname)
		if err != nil {
			return err
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: idx})
		if err != nil {
			return err
		}
		t.Cleanup(func() { l.Close() })
		return nil
	})
	if err != nil {
		t.Fatalf("attach foreign XDP: %v", err)
	}
}

// TestBadInputChangesNothing applies one bad document after another on
// top of a running state. Each is refused with a 4xx naming the attachment
// and field, and afterwards the kernel, the pins and the maps are exactly
// as before.
func TestBadInputChangesNothing(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	testdata, _ := filepath.Abs(filepath.Join("..", "testdata", "packages"))
	// A second repository requires author signatures, and holds an
	// unsigned package.
	key := filepath.Join(t.TempDir(), "author")
	leafPkg(t, "keygen", "--out", key)
	signedOnly := versionedRepo(t, "3.0.0")
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--repository-allow-unsigned", testdata, "--repository", signedOnly, "--trusted-key", key + ".pub"}})

	filter := portFilter(p, "filter", "1.0.0", 7001)
	counter := `name: counter
package: pktcount@1.0.0
program: count_tc
hook: {type: tc, direction: ingress, interface: ` + p.IfB + `, netns: ` + p.NsB + `}`
	apply(t, d, doc(filter, counter))
	attachForeignXDP(t, p.NsA, p.IfA)
	base := takeSnapshot(t, d, p)

	onA := func(name, pkg, extra string) string {
		return "name: " + name + "\npackage: " + pkg + "\n" + extra + "hook: {type: xdp, interface: " + p.IfA + ", netns: " + p.NsA + "}"
	}
	cases := []struct {
		name       string
		doc        []byte
		code       int
		kind       string
		attachment string
		field      string
		contains   string
	}{
		{"malformed YAML", []byte("apiVersion: leaf.dev/v1alpha1\nspec: [\n"), 400, "bad-request", "", "", "malformed"},
		{"unknown field", doc(filter, counter, "name: extra\npackage: pktcount@1.0.0\nbogus: 1\nhook: {type: tracepoint, tracepoint: sched/sched_process_exec}"), 400, "bad-request", "", "", `unknown field "bogus"`},
		{"wrong kind", []byte(strings.Replace(string(doc(filter)), "kind: HostState", "kind: Pod", 1)), 422, "invalid", "", "kind", "HostState"},
		{"unknown package", doc(filter, counter, onA("extra", "nosuch@1.0.0", "")), 422, "not-found", "extra", "package", `no package "nosuch"`},
		{"unknown version", doc(filter, counter, onA("extra", "pktcount@9.9.9", "program: count_xdp\n")), 422, "not-found", "extra", "package", "1.0.0"},
		{"missing interface", doc(filter, counter, "name: extra\npackage: pktcount@1.0.0\nprogram: count_xdp\nhook: {type: xdp, interface: nosuch0, netns: "+p.NsA+"}"), 422, "invalid", "extra", "hook.interface", `"nosuch0" not found`},
		{"missing netns", doc(filter, counter, "name: extra\npackage: pktcount@1.0.0\nprogram: count_xdp\nhook: {type: xdp, interface: lo, netns: leaf-no-such-netns}"), 422, "invalid", "extra", "hook.netns", "leaf-no-such-netns"},
		{"program type does not fit hook", doc(filter, counter, onA("extra", "pktcount@1.0.0", "program: count_tc\n")), 422, "invalid", "extra", "hook.type", "cannot attach to a xdp hook"},
		{"unknown program", doc(filter, counter, onA("extra", "pktcount@1.0.0", "program: nope\n")), 422, "invalid", "extra", "program", `no program "nope"`},
		{"unsigned package under a signature-required policy", doc(filter, counter, onA("extra", "portfilter@3.0.0", "params: {ports: [7002]}\n")), 422, "trust", "extra", "package", "no signatures found"},
		{"content other than the pinned digest", doc(filter, counter, onA("extra", "pktcount@1.0.0@sha256:"+strings.Repeat("0", 64), "program: count_xdp\n")), 422, "trust", "extra", "package", "refusing other content under a pinned version"},
		{"kprobe on a kernel without kprobes", doc(filter, counter, "name: extra\npackage: callcount@1.0.0\nprogram: count_kprobe\nhook: {type: kprobe, function: do_sys_openat2}"), 422, "feature-missing", "extra", "hook.type", "kprobes are not supported"},
		{"verifier rejects", doc(filter, counter, "name: extra\npackage: badverifier@1.0.0\nhook: {type: xdp, interface: lo, netns: "+p.NsA+"}"), 422, "verifier", "extra", "package", "rejected by the verifier"},
		{"param of wrong type", doc(strings.Replace(filter, "ports: [7001]", `ports: ["http"]`, 1), counter), 422, "invalid", "filter", "params.ports", `got string "http"`},
		{"param out of range", doc(strings.Replace(filter, "ports: [7001]", "ports: [70000]", 1), counter), 422, "invalid", "filter", "params.ports", "out of range for u16"},
		{"unknown param", doc(strings.Replace(filter, "ports: [7001]", "ports: [7001], nope: 1", 1), counter), 422, "invalid", "filter", "params.nope", `no parameter "nope"`},
		{"bool param given a number", doc(strings.Replace(filter, "ports: [7001]", "ports: [7001], filter_udp: 1", 1), counter), 422, "invalid", "filter", "params.filter_udp", "expected bool"},
		// Names are checked before any lookup: a NUL-terminated copy of
		// the chained interface's name must not reach the kernel (where it
		// would name the same interface and replace leaf's own chain).
		{"NUL in interface name", doc(filter, counter, "name: extra\npackage: pktcount@1.0.0\nprogram: count_xdp\nhook: {type: xdp, interface: \""+p.IfB+"\\0\", netns: "+p.NsB+", replaceForeign: true}"), 422, "invalid", "extra", "hook.interface", "NUL or control character"},
		{"control byte in interface name", doc(filter, counter, "name: extra\npackage: pktcount@1.0.0\nprogram: count_xdp\nhook: {type: xdp, interface: \"lo\\x1b\", netns: "+p.NsA+"}"), 422, "invalid", "extra", "hook.interface", "NUL or control character"},
		{"interface name too long", doc(filter, counter, "name: extra\npackage: pktcount@1.0.0\nprogram: count_xdp\nhook: {type: xdp, interface: sixteen-bytes-xx, netns: "+p.NsA+"}"), 422, "invalid", "extra", "hook.interface", "15 bytes"},
		{"control byte in netns", doc(filter, counter, "name: extra\npackage: pktcount@1.0.0\nprogram: count_xdp\nhook: {type: xdp, interface: lo, netns: \""+p.NsA+"\\x01\"}"), 422, "invalid", "extra", "hook.netns", "NUL or control character"},
		{"netns path with ..", doc(filter, counter, "name: extra\npackage: pktcount@1.0.0\nprogram: count_xdp\nhook: {type: xdp, interface: lo, netns: /var/run/netns/../netns/"+p.NsA+"}"), 422, "invalid", "extra", "hook.netns", "clean absolute path"},
		{"body over 4 MiB", append(doc(filter, counter), "\n# "+strings.Repeat("x", 4<<20)...), 413, "limit", "", "", "request body too large"},
		{"more attachments than the limit", oversizeDoc(1001), 413, "limit", "", "spec.attachments", "1001 attachments; this leafd accepts at most 1000"},
		// A change to a running attachment bundled with a bad new one: the
		// whole document is refused, so the ports stay as they were.
		{"good change with a bad attachment", doc(strings.Replace(filter, "7001", "7009", 1), counter, onA("extra", "nosuch@1.0.0", "")), 422, "not-found", "extra", "package", "nosuch"},
		// This one fails only when attaching, after earlier steps of the
		// same apply were carried out: they must be undone. a-count is
		// created on A and filter's ports change before zz-xdp finds A's
		// XDP hook taken by a program leaf does not manage.
		{"attach conflict undoes earlier steps", doc(
			"name: a-count\npackage: pktcount@1.0.0\nprogram: count_tc\nhook: {type: tc, direction: ingress, interface: "+p.IfA+", netns: "+p.NsA+"}",
			strings.Replace(filter, "7001", "7009", 1), counter,
			onA("zz-xdp", "pktcount@1.0.0", "program: count_xdp\n")), 409, "conflict", "zz-xdp", "hook", "does not manage"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.kind == "feature-missing" && hook.KprobeSupported() == nil {
				t.Skip("this kernel has kprobes")
			}
			_, err := d.Client.Apply(ctx(t), tc.doc, false)
			var apiErr *client.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("apply succeeded or failed without an API error: %v", err)
			}
			if apiErr.StatusCode != tc.code || apiErr.Kind() != tc.kind {
				t.Errorf("status %d kind %q, want %d %q: %v", apiErr.StatusCode, apiErr.Kind(), tc.code, tc.kind, err)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not contain %q", err, tc.contains)
			}
			if tc.attachment != "" || tc.field != "" {
				found := false
				for _, det := range apiErr.Body.Details {
					if det.Attachment == tc.attachment && det.Field == tc.field && det.Kind == tc.kind {
						found = true
					}
				}
				if !found {
					t.Errorf("no error detail for attachment %q field %q in %+v", tc.attachment, tc.field, apiErr.Body.Details)
				}
			}
			if now := takeSnapshot(t, d, p); !reflect.DeepEqual(now, base) {
				t.Fatalf("state changed after a refused apply:\nbefore %+v\nafter  %+v", base, now)
			}
		})
	}

	// The verifier's own words reach the operator.
	_, err := d.Client.Apply(ctx(t), doc(filter, counter, "name: extra\npackage: badverifier@1.0.0\nhook: {type: xdp, interface: lo, netns: "+p.NsA+"}"), false)
	if err == nil || !strings.Contains(err.Error(), "invalid access to packet") {
		t.Errorf("verifier log not surfaced: %v", err)
	}
	// ... and, apart, for programs: the end of the log, bounded.
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || len(apiErr.Body.Details) != 1 {
		t.Fatalf("verifier refusal: %v", err)
	}
	if vl := apiErr.Body.Details[0].VerifierLog; len(vl) == 0 || len(vl) > 13 || !strings.Contains(strings.Join(vl, "\n"), "invalid access to packet") {
		t.Errorf("verifierLog %q: want the log's end, at most 13 lines, naming the refusal", vl)
	}
	// The event log says the same.
	evs, err := d.Client.Events(ctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	if last := evs[len(evs)-1]; last.Type != v1.EventApplyFailed || last.Kind != "verifier" {
		t.Errorf("last event %+v, want apply-failed of kind verifier", last)
	}
}

// oversizeDoc is a document of n tracepoint attachments.
func oversizeDoc(n int) []byte {
	atts := make([]string, n)
	for i := range atts {
		atts[i] = fmt.Sprintf("name: many-%d\npackage: execcount@1.0.0\nhook: {type: tracepoint, tracepoint: sched/sched_process_exec}", i)
	}
	return doc(atts...)
}

// TestAltnameIsTheSameInterface chains two programs on one interface, one
// named by the interface's main name and one by an altname: they share
// one chain (one XDP program on the interface, the chain of two), rather
// than the second finding the hook taken.
func TestAltnameIsTheSameInterface(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	alt := "leafalt" + p.IfB[len(p.IfB)-4:]
	if out, err := exec.Command("ip", "-n", p.NsB, "link", "property", "add", "dev", p.IfB, "altname", alt).CombinedOutput(); err != nil {
		t.Skipf("cannot add an altname: %v: %s", err, out)
	}
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: fixtureRepos(t)})
	byAlt := fmt.Sprintf("name: m2\npackage: seqcount@1.0.0\nprogram: seq_xdp\npriority: 2\nhook: {type: xdp, interface: %s, netns: %s}", alt, p.NsB)
	apply(t, d, doc(member{name: "m1", priority: 1}.yaml(p), byAlt))
	st := status(t, d)
	if st["m1"].Chain == nil || st["m1"].Chain.Length != 2 || st["m2"].Chain == nil || st["m2"].Chain.Position != 2 {
		t.Fatalf("m1 %+v, m2 %+v: want one chain of two", st["m1"].Chain, st["m2"].Chain)
	}
	if got := xdpProgID(t, p.NsB, p.IfB); got != st["m1"].ProgramID {
		t.Fatalf("the interface runs program %d, the chain's first member is %d", got, st["m1"].ProgramID)
	}
	// Applying the same document again changes nothing.
	if res := apply(t, d, doc(member{name: "m1", priority: 1}.yaml(p), byAlt)); res.Changed {
		t.Fatalf("re-apply changed %+v", res.Actions)
	}
}
