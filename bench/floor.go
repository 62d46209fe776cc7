package bench

import (
	"time"

	"github.com/leaf-ebpf/leaf/packages"
)

// Direct loads the portfilter program with its maps and attaches it with
// an XDP bpf_link (native mode) to each interface in netns, straight
// through cilium/ebpf and without leafd: nothing validated, resolved,
// pinned or recorded (DirectProgram). It is the kernel's share of an
// apply, the floor leafd's figures compare with.
func Direct(netns string, ifaces []string) (time.Duration, func(wait bool) error, error) {
	obj, err := packages.FS.ReadFile("portfilter/portfilter.bpf.o")
	if err != nil {
		return 0, nil, err
	}
	return DirectProgram(obj, "xdp_port_filter", XDPNative, netns, ifaces)
}
