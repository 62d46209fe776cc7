package bench

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/internal/netnsutil"
	"github.com/leaf-ebpf/leaf/packages"
)

// HeavyPackage is the package of the parallel-load rows where loading
// dominates: a firewall instance's maps (262 144 rules, a 2^21-entry
// candidate list, per-CPU hit counters) are tens of megabytes that the
// kernel allocates and zeroes at load, about 100 ms of CPU each, against
// well under one for the portfilter. (Its program verifies in about 1 500
// instructions: no package in packages/ keeps the verifier busy for
// long.)
const HeavyPackage = "firewall@1.0.0"

// FirewallDocument returns a desired-state document with one firewall XDP
// attachment per interface, all in netns.
func FirewallDocument(netns string, ifaces []string) []byte {
	var b strings.Builder
	b.WriteString("apiVersion: leaf.dev/v1alpha1\nkind: HostState\nmetadata: {name: bench}\nspec:\n  attachments:\n")
	for _, ifc := range ifaces {
		fmt.Fprintf(&b, "    - name: fw-%s\n", ifc)
		fmt.Fprintf(&b, "      package: %s\n      program: firewall_xdp\n", HeavyPackage)
		fmt.Fprintf(&b, "      hook: {type: xdp, interface: %s, netns: %s}\n", ifc, netns)
	}
	return []byte(b.String())
}

// XDPLinkPrograms counts the distinct programs XDP links run on the whole
// machine. The kernel's XDP dispatcher calls up to 48 of them directly,
// and attaching or detaching one that changes that set waits for an RCU
// grace period; once 48 are in, further programs are called indirectly
// and attach without that wait. Other work on the machine moves XDP
// attach times by that much, so the report shows it.
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

// DirectProgram loads program of object (a path in packages/) with its
// maps and attaches it with attach to each interface in netns, one interface after another, straight through
// cilium/ebpf and without leafd: the sequential reference. It returns how
// long loading and attaching took and a function that detaches and closes
// everything and, with wait, waits until the kernel has freed it all.
func DirectProgram(object, program string, attach Attacher, netns string, ifaces []string) (time.Duration, func(wait bool) error, error) {
	obj, err := packages.FS.ReadFile(object)
	if err != nil {
		return 0, nil, err
	}
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		return 0, nil, err
	}
	// Only the program attached, as leafd loads it: an object may hold
	// more (the firewall has an XDP and a TC one).
	ps, ok := spec.Programs[program]
	if !ok {
		return 0, nil, fmt.Errorf("%s has no program %s", object, program)
	}
	spec.Programs = map[string]*ebpf.ProgramSpec{program: ps}
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
