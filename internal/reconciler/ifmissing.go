package reconciler

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/vishvananda/netlink"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/netnsutil"
)

// interfaceMissing reports an XDP or TC attachment whose interface (or
// network namespace) is gone as "interface-missing" rather than detached:
// nothing is wrong with leaf's programs, and leafd attaches them again as
// soon as the interface comes back. Only checked when the attachment is
// not attached, so a healthy status costs no netlink call.
func interfaceMissing(s *v1.AttachmentStatus, h desired.Hook) {
	if s.State == v1.StateAttached || h.Interface == "" {
		return
	}
	nh, err := netnsutil.Handle(h.NetnsPath())
	if err != nil {
		if h.Netns != "" && errors.Is(err, fs.ErrNotExist) {
			s.State, s.Problem = v1.StateInterfaceMissing, fmt.Sprintf("network namespace %s does not exist", h.Netns)
		}
		return
	}
	defer nh.Close()
	var notFound netlink.LinkNotFoundError
	if _, err := nh.LinkByName(h.Interface); errors.As(err, &notFound) {
		s.State, s.Problem = v1.StateInterfaceMissing, fmt.Sprintf("interface %s does not exist", h.Interface)
	}
}
