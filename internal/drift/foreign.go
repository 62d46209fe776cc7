package drift

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/hook"
	"github.com/leaf-ebpf/leaf/internal/netnsutil"
	"github.com/leaf-ebpf/leaf/internal/observer"
)

// Policy is secure mode's setting: whether foreign programs are removed,
// and which ones stay anyway.
type Policy struct {
	Secure bool
	Allow  []desired.ProgramMatch
}

// Foreign is a program leaf does not own on a hook leaf manages.
type Foreign struct {
	Hook    desired.Hook
	HookKey string
	Program ebpf.ProgramID
	// Link is the bpf_link holding the program, 0 if it was attached
	// without one (netlink XDP, BPF_PROG_ATTACH).
	Link link.ID
	Name string
	Tag  string
	// Secure: the hook (or leafd) is in secure mode.
	Secure bool
	// Allowed: an allowlist names the program; secure mode keeps it.
	Allowed bool
	// RunsBefore: the kernel runs it before leaf's chain (a TCX program
	// ahead of leaf's link).
	RunsBefore bool
}

// Key identifies the foreign program across checks.
func (f Foreign) Key() string { return fmt.Sprintf("%s|%d", f.HookKey, f.Program) }

// Remove reports whether secure mode removes the program.
func (f Foreign) Remove() bool { return f.Secure && !f.Allowed }

// findForeign lists the programs on a managed hook that are not leaf's
// chain: on XDP, a program other than the one leaf's link runs (the hook
// holds one); on TC, every TCX program other than leaf's link.
func findForeign(mh *managedHook, oh *observer.Hook, global Policy, ifs *netnsutil.Interfaces) ([]Foreign, error) {
	progs, err := hook.Programs(mh.hook, ifs)
	if err != nil {
		return nil, err
	}
	var out []Foreign
	// Programs come in the kernel's order: those before leaf's own link
	// run before leaf's chain.
	leafSeen := false
	for _, p := range progs {
		if oh != nil && oh.Attached && (p.Link == oh.LinkID && p.Link != 0 || p.Link == 0 && p.Program == oh.ProgramID) {
			leafSeen = true
			continue // leaf's own link
		}
		f := Foreign{Hook: mh.hook, HookKey: mh.key, Program: p.Program, Link: p.Link, Secure: global.Secure || mh.policy.Secure,
			RunsBefore: !leafSeen}
		if prog, err := ebpf.NewProgramFromID(p.Program); err == nil {
			if info, err := prog.Info(); err == nil {
				f.Name, f.Tag = info.Name, info.Tag
			}
			prog.Close()
		}
		for _, m := range append(append([]desired.ProgramMatch(nil), global.Allow...), mh.policy.Allow...) {
			if m.Matches(f.Name, f.Tag, uint32(f.Program)) {
				f.Allowed = true
			}
		}
		out = append(out, f)
	}
	if !leafSeen { // leaf's link is not there: nothing runs before it
		for i := range out {
			out[i].RunsBefore = false
		}
	}
	return out, nil
}

// RemoveForeign detaches a foreign program from the hook: through its
// link when it has one, else the way it was attached.
func RemoveForeign(f Foreign) error {
	return hook.Detach(f.Hook, f.Program, f.Link)
}
