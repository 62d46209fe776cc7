package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/internal/archive"
	"github.com/leaf-ebpf/leaf/internal/netnsutil"
	"github.com/leaf-ebpf/leaf/internal/pkgsource"
)

// PortdropObject is the L3AF-style fixture the L3AF rows deploy.
const PortdropObject = "testdata/l3af/portdrop/portdrop.bpf.o"

// WriteL3AFTree writes a KFaaS tree under root holding the portdrop
// fixture as L3AF's build packages it: portdrop/latest/<codename>/
// l3af_portdrop.tar.gz, a .tar.gz of a portdrop/ folder.
func WriteL3AFTree(root, object string) error {
	obj, err := os.ReadFile(object)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := archive.WriteGzip(&buf, archive.Files{"portdrop/portdrop.bpf.o": obj}); err != nil {
		return err
	}
	dir := filepath.Join(root, "portdrop", "latest", pkgsource.HostCodename())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "l3af_portdrop.tar.gz"), buf.Bytes(), 0o644)
}

// L3AFPayload is l3afd's documented add payload for portdrop on iface.
func L3AFPayload(host, iface string) []byte {
	return []byte(fmt.Sprintf(`[{"host_name": %q, "iface": %q, "bpf_programs": {"xdp_ingress": [{
  "name": "portdrop", "seq_id": 1, "artifact": "l3af_portdrop.tar.gz", "map_name": "xdp_portdrop_next",
  "version": "latest", "admin_status": "enabled", "prog_type": "xdp", "cfg_version": 1,
  "map_args": {"portdrop_ports": "7001,7002", "portdrop_config": "1"},
  "monitor_maps": [{"name": "portdrop_drop_count", "key": 0, "aggregator": "scalar"}],
  "object_file": "portdrop.bpf.o", "entry_function_name": "_xdp_portdrop"}]}}]`, host, iface))
}

// DirectPortdrop is what l3afd does for that payload, without a daemon:
// load the object, write map_args, create the monitored key, attach in
// native mode. It returns how long that took and how to undo it.
func DirectPortdrop(object, netns, iface string) (time.Duration, func(wait bool) error, error) {
	path := filepath.Join("/var/run/netns", netns)
	idx, err := netnsutil.Ifindex(path, iface)
	if err != nil {
		return 0, nil, err
	}
	start := time.Now()
	spec, err := ebpf.LoadCollectionSpec(object)
	if err != nil {
		return 0, nil, err
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	noDataMappings(spec)
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return 0, nil, fmt.Errorf("load: %w", err)
	}
	var l link.Link
	closeAll := func(wait bool) error {
		var ids []ebpf.ProgramID
		if info, err := coll.Programs["_xdp_portdrop"].Info(); err == nil {
			if id, ok := info.ID(); ok {
				ids = append(ids, id)
			}
		}
		objs, err := ObjectsOf(ids)
		if l != nil {
			l.Close()
		}
		coll.Close()
		if wait && err == nil {
			_, err = objs.WaitFreed(30 * time.Second)
		}
		return err
	}
	one, zero := make([]byte, 1), make([]byte, 8)
	one[0] = 1
	port := make([]byte, 2)
	for _, p := range []uint16{7001, 7002} {
		binary.NativeEndian.PutUint16(port, p)
		if err := coll.Maps["portdrop_ports"].Put(port, one); err != nil {
			closeAll(false)
			return 0, nil, err
		}
	}
	if err := coll.Maps["portdrop_config"].Put(uint32(0), uint32(1)); err != nil {
		closeAll(false)
		return 0, nil, err
	}
	if err := coll.Maps["portdrop_drop_count"].Update(uint32(0), zero, ebpf.UpdateNoExist); err != nil {
		closeAll(false)
		return 0, nil, err
	}
	err = netnsutil.Do(path, func() error {
		var err error
		l, err = link.AttachXDP(link.XDPOptions{Program: coll.Programs["_xdp_portdrop"], Interface: idx, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		closeAll(false)
		return 0, nil, fmt.Errorf("attach to %s: %w", iface, err)
	}
	return time.Since(start), closeAll, nil
}
