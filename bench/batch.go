package bench

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/internal/netnsutil"
)

// HeavyPackage is the package of the parallel-load rows where loading
// dominates: a firewall instance's maps (262 144 rules, a 2^21-entry
// candidate list, per-CPU hit counters) are tens of megabytes that the
// kernel allocates and zeroes at load, about 100 ms of CPU each, against
// well under one for the portfilter. (Its program verifies in about 1 500
// instructions: no package in packages/ keeps the verifier busy for
// long.)
const HeavyPackage = "firewall@1.0.0"

// VerifyHeavyPackage is the package of the parallel-load rows where the
// verifier dominates: bench/bpf/verifyheavy.bpf.o, whose loop the
// verifier walks 50 000 times (350 000 instructions, tens of
// milliseconds).
const VerifyHeavyPackage = "verifyheavy@1.0.0"

//go:embed bpf/verifyheavy.bpf.o
var VerifyHeavyObject []byte

const verifyHeavyManifest = `apiVersion: leaf.dev/v1alpha1
kind: Package
name: verifyheavy
version: 1.0.0
description: Counts packets and passes them, after a loop the verifier walks 50 000 times (the parallel-load benchmark).
license: GPL-2.0-only OR BSD-2-Clause
programs:
  - name: heavy
    object: verifyheavy.bpf.o
    function: xdp_verify_heavy
    type: xdp
    hooks: [xdp]
`

// WriteVerifyHeavyRepository writes a package repository holding
// VerifyHeavyPackage into dir (created), for leafd's
// --repository-allow-unsigned flag.
func WriteVerifyHeavyRepository(dir string) error {
	return writePackage(dir, "verifyheavy", verifyHeavyManifest, "verifyheavy.bpf.o", VerifyHeavyObject)
}

// writePackage writes one package (its manifest and its object) into the
// repository directory dir, creating both.
func writePackage(dir, name, manifest, objectName string, object []byte) error {
	pkg := filepath.Join(dir, name)
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		return err
	}
	return errors.Join(
		os.WriteFile(filepath.Join(pkg, "leaf.yaml"), []byte(manifest), 0o644),
		os.WriteFile(filepath.Join(pkg, objectName), object, 0o644),
	)
}

// VerifyHeavyDocument returns a desired-state document with one
// VerifyHeavyPackage XDP attachment per interface, all in netns.
func VerifyHeavyDocument(netns string, ifaces []string) []byte {
	return xdpDocument("vh", VerifyHeavyPackage, "heavy", netns, ifaces)
}

// FirewallDocument returns a desired-state document with one firewall XDP
// attachment per interface, all in netns.
func FirewallDocument(netns string, ifaces []string) []byte {
	return xdpDocument("fw", HeavyPackage, "firewall_xdp", netns, ifaces)
}

// xdpDocument returns a desired-state document with one XDP attachment of
// program of pkg per interface, named prefix-<interface>.
func xdpDocument(prefix, pkg, program, netns string, ifaces []string) []byte {
	var b strings.Builder
	b.WriteString("apiVersion: leaf.dev/v1alpha1\nkind: HostState\nmetadata: {name: bench}\nspec:\n  attachments:\n")
	for _, ifc := range ifaces {
		fmt.Fprintf(&b, "    - name: %s-%s\n", prefix, ifc)
		fmt.Fprintf(&b, "      package: %s\n      program: %s\n", pkg, program)
		fmt.Fprintf(&b, "      hook: {type: xdp, interface: %s, netns: %s}\n", ifc, netns)
	}
	return []byte(b.String())
}

// XDPLinkPrograms counts the distinct programs XDP links run on the whole
// machine. The kernel's XDP dispatcher calls up to 48 of them directly,
// and attaching or detaching one that changes that set waits for an RCU
// grace period; while 48 are in, further programs are called indirectly
// and attach without that wait. Which ones are in depends on the order
// they were attached and detached (a program attached while it was full
// stays out), so this count only hints at it; the report shows it
// because other work on the machine moves XDP attach times that much.
func XDPLinkPrograms() (int, error) {
	progs := map[ebpf.ProgramID]bool{}
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil {
			continue // detached meanwhile
		}
		if info.Type == link.XDPType {
			progs[info.Program] = true
		}
	}
	return len(progs), it.Err()
}

// Attacher attaches a program to the interface with index ifindex.
type Attacher func(prog *ebpf.Program, ifindex int) (link.Link, error)

// XDPNative attaches an XDP link in native (driver) mode.
func XDPNative(prog *ebpf.Program, ifindex int) (link.Link, error) {
	return link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
}

// TCXIngress attaches a TCX ingress link.
func TCXIngress(prog *ebpf.Program, ifindex int) (link.Link, error) {
	return link.AttachTCX(link.TCXOptions{Program: prog, Interface: ifindex, Attach: ebpf.AttachTCXIngress})
}

// DirectProgram loads program of the ELF object obj with its
// maps and attaches it with attach to each interface in netns, one interface after another, straight through
// cilium/ebpf and without leafd: the sequential reference. It returns how
// long loading and attaching took and a function that detaches and closes
// everything and, with wait, waits until the kernel has freed it all.
func DirectProgram(obj []byte, program string, attach Attacher, netns string, ifaces []string) (time.Duration, func(wait bool) error, error) {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		return 0, nil, err
	}
	// Only the program attached, as leafd loads it: an object may hold
	// more (the firewall has an XDP and a TC one).
	ps, ok := spec.Programs[program]
	if !ok {
		return 0, nil, fmt.Errorf("the object has no program %s", program)
	}
	spec.Programs = map[string]*ebpf.ProgramSpec{program: ps}
	noDataMappings(spec)
	path := filepath.Join("/var/run/netns", netns)
	idx := make([]int, len(ifaces))
	for i, ifc := range ifaces {
		if idx[i], err = netnsutil.Ifindex(path, ifc); err != nil {
			return 0, nil, err
		}
	}
	var colls []*ebpf.Collection
	var links []link.Link
	closeAll := func(wait bool) error {
		var ids []ebpf.ProgramID
		for _, c := range colls {
			if info, err := c.Programs[program].Info(); err == nil {
				if id, ok := info.ID(); ok {
					ids = append(ids, id)
				}
			}
		}
		objs, err := ObjectsOf(ids)
		errs := []error{err}
		for _, l := range links {
			errs = append(errs, l.Close())
		}
		for _, c := range colls {
			c.Close()
		}
		if wait {
			_, err := objs.WaitFreed(30 * time.Second)
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	start := time.Now()
	for i := range ifaces {
		coll, err := ebpf.NewCollection(spec)
		if err != nil {
			closeAll(false)
			return 0, nil, fmt.Errorf("load: %w", err)
		}
		colls = append(colls, coll)
		prog := coll.Programs[program]
		err = netnsutil.Do(path, func() error {
			l, err := attach(prog, idx[i])
			if err == nil {
				links = append(links, l)
			}
			return err
		})
		if err != nil {
			closeAll(false)
			return 0, nil, fmt.Errorf("attach to %s: %w", ifaces[i], err)
		}
	}
	return time.Since(start), closeAll, nil
}

// noDataMappings keeps cilium/ebpf from memory-mapping the object's data
// sections (.rodata and the like) at load, as leafd's loads do
// (applier.newCollection): the maps then hold the ELF's initial values
// all the same, nothing is mapped inside the timed load, and nothing is
// left for Go's garbage collector to unmap — and the kernel to free —
// during a later measurement.
func noDataMappings(spec *ebpf.CollectionSpec) {
	spec.Variables = nil
}
