package hook

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/netnsutil"
)

// HookProgram is a program the kernel runs on an XDP or TC hook.
type HookProgram struct {
	Program ebpf.ProgramID
	// Link holds the program (TCX), 0 for programs attached without a
	// link, and for XDP, where it is not looked up.
	Link link.ID
	// Filter is set for a classic tc (cls_bpf) filter on the interface's
	// clsact qdisc: a program on the same hook, run after TCX's.
	Filter *netlink.BpfFilter
}

// Programs lists what the kernel runs on an XDP or TC hook: the one XDP
// program (netlink), or every TCX program in order. Interfaces are looked
// up through ifs, which may be shared by the checks of many hooks (nil:
// a lookup of its own).
func Programs(h desired.Hook, ifs *netnsutil.Interfaces) ([]HookProgram, error) {
	ifs, done := own(ifs)
	defer done()
	switch h.Type {
	case manifest.HookXDP:
		x, _, err := xdpState(h, ifs)
		if err != nil || x == nil {
			return nil, err
		}
		// Whether a bpf_link holds it is left to Detach: finding out walks
		// every link on the host, and most checks only need the ID.
		return []HookProgram{{Program: ebpf.ProgramID(x.ProgId)}}, nil
	case manifest.HookTC:
		ifindex, _, err := ifs.Lookup(h.NetnsPath(), h.Interface)
		if err != nil {
			return nil, err
		}
		var out []HookProgram
		err = netnsutil.Do(h.NetnsPath(), func() error {
			q, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: tcxAttach(h)})
			if err != nil {
				return fmt.Errorf("query TCX programs on %s: %w", h.Interface, err)
			}
			for _, p := range q.Programs {
				lid, _ := p.LinkID()
				out = append(out, HookProgram{Program: p.ID, Link: lid})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		filters, err := classicFilters(h, ifs)
		return append(out, filters...), err
	}
	return nil, fmt.Errorf("hook type %s holds no chain", h.Type)
}

// own returns ifs, or a lookup of its own and how to close it.
func own(ifs *netnsutil.Interfaces) (*netnsutil.Interfaces, func()) {
	if ifs != nil {
		return ifs, func() {}
	}
	ifs = &netnsutil.Interfaces{}
	return ifs, ifs.Close
}

// xdpState returns the interface's XDP attachment (nil if none).
func xdpState(h desired.Hook, ifs *netnsutil.Interfaces) (*netlink.LinkXdp, netlink.Link, error) {
	l, err := ifs.Link(h.NetnsPath(), h.Interface)
	if err != nil {
		return nil, nil, err
	}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached || x.ProgId == 0 {
		return nil, l, nil
	}
	return x, l, nil
}

// Detach removes a program from an XDP or TC hook: through its bpf_link
// when it has one, else through netlink (XDP) or BPF_PROG_DETACH (TCX).
func Detach(h desired.Hook, prog ebpf.ProgramID, linkID link.ID) error {
	if linkID != 0 {
		lk, err := link.NewFromID(linkID)
		if err != nil {
			return fmt.Errorf("open link %d: %w", linkID, err)
		}
		defer lk.Close()
		if err := lk.Detach(); err != nil {
			return fmt.Errorf("detach link %d: %w", linkID, err)
		}
		return nil
	}
	switch h.Type {
	case manifest.HookXDP:
		ifs, done := own(nil)
		defer done()
		x, l, err := xdpState(h, ifs)
		if err != nil || x == nil || ebpf.ProgramID(x.ProgId) != prog {
			return err // gone already
		}
		if lk := findXDPLink(l.Attrs().Index, prog); lk != nil {
			defer lk.Close()
			return lk.Detach()
		}
		return netnsutil.Do(h.NetnsPath(), func() error {
			return netlink.LinkSetXdpFdWithFlags(l, -1, int(x.Flags))
		})
	case manifest.HookTC:
		if f := findClassicFilter(h, prog); f != nil {
			nh, err := netnsutil.Handle(h.NetnsPath())
			if err != nil {
				return err
			}
			defer nh.Close()
			if err := nh.FilterDel(f); err != nil {
				return fmt.Errorf("delete tc filter of program %d: %w", prog, err)
			}
			return nil
		}
		p, err := ebpf.NewProgramFromID(prog)
		if err != nil {
			return fmt.Errorf("open program %d: %w", prog, err)
		}
		defer p.Close()
		ifindex, err := netnsutil.Ifindex(h.NetnsPath(), h.Interface)
		if err != nil {
			return err
		}
		return netnsutil.Do(h.NetnsPath(), func() error {
			return link.RawDetachProgram(link.RawDetachProgramOptions{Target: ifindex, Program: p, Attach: tcxAttach(h)})
		})
	}
	return errors.New("only XDP and TC hooks hold foreign programs leaf removes")
}

func tcxAttach(h desired.Hook) ebpf.AttachType {
	if h.Direction == "egress" {
		return ebpf.AttachTCXEgress
	}
	return ebpf.AttachTCXIngress
}

// clsactParent is the clsact qdisc's parent for the hook's direction.
func clsactParent(h desired.Hook) uint32 {
	if h.Direction == "egress" {
		return netlink.HANDLE_MIN_EGRESS
	}
	return netlink.HANDLE_MIN_INGRESS
}

// classicFilters lists the cls_bpf filters tools such as tc(8) attached to
// the hook's clsact qdisc. TCX runs first, but these still see every
// packet leaf's chain passes on, so they are programs on leaf's hook.
func classicFilters(h desired.Hook, ifs *netnsutil.Interfaces) ([]HookProgram, error) {
	nh, err := ifs.Handle(h.NetnsPath())
	if err != nil {
		return nil, err
	}
	// The lookup that resolved the hook has the link already.
	l, err := ifs.Link(h.NetnsPath(), h.Interface)
	if err != nil {
		return nil, err
	}
	filters, err := nh.FilterList(l, clsactParent(h))
	if err != nil {
		// No clsact qdisc: no classic filters.
		return nil, nil
	}
	var out []HookProgram
	for _, f := range filters {
		if bf, ok := f.(*netlink.BpfFilter); ok && bf.Id > 0 {
			out = append(out, HookProgram{Program: ebpf.ProgramID(bf.Id), Filter: bf})
		}
	}
	return out, nil
}

func findClassicFilter(h desired.Hook, prog ebpf.ProgramID) *netlink.BpfFilter {
	ifs, done := own(nil)
	defer done()
	filters, err := classicFilters(h, ifs)
	if err != nil {
		return nil
	}
	for _, f := range filters {
		if f.Program == prog {
			return f.Filter
		}
	}
	return nil
}
