package bench

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/internal/netnsutil"
	"github.com/leaf-ebpf/leaf/packages"
)

// Direct loads the portfilter program with its maps and attaches it with
// an XDP bpf_link (native mode) to each interface in netns, straight
// through cilium/ebpf and without leafd: nothing validated, resolved,
// pinned or recorded. It is the kernel's share of an apply, the floor
// leafd's figures compare with. It returns how long loading and attaching
// took and a function that detaches and closes everything and, with
// wait, waits until the kernel has freed it all.
func Direct(netns string, ifaces []string) (time.Duration, func(wait bool) error, error) {
	obj, err := packages.FS.ReadFile("portfilter/portfilter.bpf.o")
	if err != nil {
		return 0, nil, err
	}
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		return 0, nil, err
	}
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
			if info, err := c.Programs["xdp_port_filter"].Info(); err == nil {
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
		prog := coll.Programs["xdp_port_filter"]
		err = netnsutil.Do(path, func() error {
			l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: idx[i], Flags: link.XDPDriverMode})
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
