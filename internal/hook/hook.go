// Package hook attaches programs to the hooks desired state names, always
// through bpf_link so that a pinned link keeps the program attached without
// leafd. It also checks, before anything is attached, that a hook exists on
// this host.
package hook

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/netnsutil"
)

// TracefsRoot is where tracepoints are looked up.
const TracefsRoot = "/sys/kernel/tracing"

// Target is a hook checked against this host and ready to attach to.
type Target struct {
	Hook    desired.Hook
	ifindex int
	exe     *link.Executable
}

// FieldError names the hook field a problem is about.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return "hook." + e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field string, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// Resolve checks that the hook exists here: the interface in its netns,
// the cgroup, the tracepoint, the binary and symbol, kprobe support.
// Interfaces are looked up through ifs, which may be shared by the
// resolutions of one document (nil: a lookup of its own).
func Resolve(h desired.Hook, ifs *netnsutil.Interfaces) (*Target, error) {
	if err := probe(h.Type); err != nil {
		return nil, &FieldError{Field: "type", Err: err}
	}
	t := &Target{Hook: h}
	switch h.Type {
	case manifest.HookXDP, manifest.HookTC:
		if h.Netns != "" {
			if _, err := os.Stat(h.NetnsPath()); err != nil {
				return nil, fieldErr("netns", "network namespace %s: %v", h.NetnsPath(), errors.Unwrap(err))
			}
		}
		if ifs == nil {
			ifs = &netnsutil.Interfaces{}
			defer ifs.Close()
		}
		idx, name, err := ifs.Lookup(h.NetnsPath(), h.Interface)
		if err != nil {
			return nil, &FieldError{Field: "interface", Err: err}
		}
		// Resolved once, to the main name: an altname is the same
		// interface, so it joins the same chain rather than fighting it.
		t.ifindex, t.Hook.Interface = idx, name
	case manifest.HookCgroupSKB:
		st, err := os.Stat(h.Cgroup)
		if err != nil || !st.IsDir() {
			return nil, fieldErr("cgroup", "cgroup %s does not exist", h.Cgroup)
		}
	case manifest.HookTracepoint:
		group, name, _ := strings.Cut(h.Tracepoint, "/")
		if _, err := os.Stat(filepath.Join(TracefsRoot, "events", group, name)); err != nil {
			return nil, fieldErr("tracepoint", "tracepoint %s does not exist on this kernel (no %s)", h.Tracepoint, filepath.Join(TracefsRoot, "events", group, name))
		}
	case manifest.HookKprobe:
		if err := KprobeSupported(); err != nil {
			return nil, &FieldError{Field: "type", Err: err}
		}
	case manifest.HookUprobe:
		exe, err := link.OpenExecutable(h.Binary)
		if err != nil {
			return nil, fieldErr("binary", "%v", err)
		}
		t.exe = exe
	}
	return t, nil
}

// programTypes are the BPF program types each hook type runs.
var programTypes = map[string]ebpf.ProgramType{
	manifest.HookXDP: ebpf.XDP, manifest.HookTC: ebpf.SchedCLS, manifest.HookCgroupSKB: ebpf.CGroupSKB,
	manifest.HookTracepoint: ebpf.TracePoint, manifest.HookKprobe: ebpf.Kprobe, manifest.HookUprobe: ebpf.Kprobe,
}

// probe asks the kernel (cilium/ebpf's features, which cache the answer)
// whether it runs the hook type's programs at all, so that a kernel built
// without them is told apart, as a missing feature wrapping
// ebpf.ErrNotSupported, from a program or hook that is wrong. Only a
// definite "not supported" refuses: a probe that cannot run (no
// privileges) leaves the verdict to the load.
func probe(hookType string) error {
	pt, ok := programTypes[hookType]
	if !ok {
		return nil
	}
	if err := features.HaveProgramType(pt); errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("%s hooks need BPF program type %s, which this kernel does not support: %w", hookType, pt, err)
	}
	return nil
}

// KprobeSupported probes for the kernel's kprobe support: the kprobe PMU or
// tracefs' kprobe_events.
func KprobeSupported() error {
	for _, p := range []string{"/sys/bus/event_source/devices/kprobe/type", filepath.Join(TracefsRoot, "kprobe_events")} {
		if _, err := os.Stat(p); err == nil {
			return nil
		}
	}
	return fmt.Errorf("kprobes are not supported by this kernel (no kprobe PMU and no %s/kprobe_events): %w", TracefsRoot, ebpf.ErrNotSupported)
}

// Attach attaches prog to the hook and returns the link.
func (t *Target) Attach(prog *ebpf.Program) (link.Link, error) {
	h := t.Hook
	switch h.Type {
	case manifest.HookXDP:
		flags := link.XDPDriverMode
		if h.XDPMode() == "generic" {
			flags = link.XDPGenericMode
		}
		return t.inNetns(func() (link.Link, error) {
			l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: t.ifindex, Flags: flags})
			if errors.Is(err, os.ErrExist) || errors.Is(err, errBusy) {
				return nil, fmt.Errorf("interface %s: XDP hook %w: %w", h.Interface, ErrForeign, err)
			}
			return l, err
		})
	case manifest.HookTC:
		attach := ebpf.AttachTCXIngress
		if h.Direction == "egress" {
			attach = ebpf.AttachTCXEgress
		}
		return t.inNetns(func() (link.Link, error) {
			return link.AttachTCX(link.TCXOptions{Program: prog, Interface: t.ifindex, Attach: attach, Anchor: link.Tail()})
		})
	case manifest.HookCgroupSKB:
		attach := ebpf.AttachCGroupInetIngress
		if h.Direction == "egress" {
			attach = ebpf.AttachCGroupInetEgress
		}
		cg, err := os.Open(h.Cgroup)
		if err != nil {
			return nil, err
		}
		defer cg.Close()
		return link.AttachRawLink(link.RawLinkOptions{Target: int(cg.Fd()), Program: prog, Attach: attach})
	case manifest.HookTracepoint:
		group, name, _ := strings.Cut(h.Tracepoint, "/")
		return link.Tracepoint(group, name, prog, nil)
	case manifest.HookKprobe:
		return link.Kprobe(h.Function, prog, nil)
	case manifest.HookUprobe:
		return t.exe.Uprobe(h.Function, prog, &link.UprobeOptions{PID: h.PID})
	}
	return nil, fmt.Errorf("unknown hook type %q", h.Type)
}

func (t *Target) inNetns(fn func() (link.Link, error)) (link.Link, error) {
	var l link.Link
	err := netnsutil.Do(t.Hook.NetnsPath(), func() error {
		var err error
		l, err = fn()
		return err
	})
	return l, err
}
