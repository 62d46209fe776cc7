package hook

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/internal/manifest"
)

// ErrForeign means a program leaf does not manage holds an XDP hook.
var ErrForeign = errors.New("held by a program leaf does not manage")

// AttachChain attaches the first program of a chain to an XDP or TC hook.
//
// XDP has one program per interface: if another program holds the hook
// AttachChain refuses, unless the hook says replaceForeign, in which case
// it detaches that program first. TC uses TCX, which runs several
// programs in order: leaf's link goes after those already attached, and
// only if the hook's revision did not change in between, so a concurrent
// change by another tool fails cleanly instead of landing out of order.
// Programs other tools attached are never detached or moved.
func (t *Target) AttachChain(prog *ebpf.Program) (link.Link, error) {
	switch t.Hook.Type {
	case manifest.HookXDP:
		// Attach first: the kernel refuses a link on a hook another
		// program holds (EBUSY, or EEXIST for one in the other mode), and
		// only then is it worth asking netlink which program that is.
		l, err := t.Attach(prog)
		if err == nil || !errors.Is(err, os.ErrExist) && !errors.Is(err, errBusy) {
			return l, err
		}
		if err := t.clearForeignXDP(); err != nil {
			return nil, err
		}
		return t.Attach(prog)
	case manifest.HookTC:
		attach := ebpf.AttachTCXIngress
		if t.Hook.Direction == "egress" {
			attach = ebpf.AttachTCXEgress
		}
		return t.inNetns(func() (link.Link, error) {
			q, err := link.QueryPrograms(link.QueryOptions{Target: t.ifindex, Attach: attach})
			if err != nil {
				return nil, fmt.Errorf("query TCX programs on %s: %w", t.Hook.Interface, err)
			}
			return link.AttachTCX(link.TCXOptions{Program: prog, Interface: t.ifindex, Attach: attach, Anchor: link.Tail(), ExpectedRevision: q.Revision})
		})
	}
	return nil, fmt.Errorf("hook type %s does not chain", t.Hook.Type)
}

// clearForeignXDP makes sure no other program holds the interface's XDP
// hook, removing it only when the operator allowed that.
func (t *Target) clearForeignXDP() error {
	ifs, done := own(nil)
	defer done()
	x, _, err := xdpState(t.Hook, ifs)
	if err != nil || x == nil {
		return err
	}
	if !t.Hook.ReplaceForeign {
		return fmt.Errorf("interface %s already has an XDP program that leaf does not manage (program %d): %w; set hook.replaceForeign to replace it", t.Hook.Interface, x.ProgId, ErrForeign)
	}
	if err := Detach(t.Hook, ebpf.ProgramID(x.ProgId), 0); err != nil {
		return fmt.Errorf("remove foreign XDP program %d from %s: %w", x.ProgId, t.Hook.Interface, err)
	}
	return nil
}

func findXDPLink(ifindex int, prog ebpf.ProgramID) link.Link {
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		lk := it.Take()
		info, err := lk.Info()
		if err == nil && info.Program == prog {
			if x := info.XDP(); x != nil && int(x.Ifindex) == ifindex {
				return lk
			}
		}
		lk.Close()
	}
	return nil
}
