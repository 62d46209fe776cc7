package desired

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/leaf-ebpf/leaf/internal/manifest"
)

// fieldsFor lists the hook fields each hook type takes; any other field set
// is an error, so that typos do not pass silently.
var fieldsFor = map[string][]string{
	manifest.HookXDP:        {"interface", "netns", "mode", "replaceForeign", "secure", "allowForeign", "chainMode"},
	manifest.HookTC:         {"interface", "netns", "direction", "secure", "allowForeign", "chainMode"},
	manifest.HookTracepoint: {"tracepoint"},
	manifest.HookKprobe:     {"function"},
	manifest.HookUprobe:     {"binary", "function", "pid"},
	manifest.HookCgroupSKB:  {"cgroup", "direction"},
}

// hookFields lists every hook field but type, in document order.
var hookFields = []string{"interface", "netns", "mode", "replaceForeign", "secure", "allowForeign", "chainMode", "direction", "tracepoint", "function", "binary", "pid", "cgroup"}

func (h *Hook) set() map[string]bool {
	return map[string]bool{
		"interface":      h.Interface != "",
		"netns":          h.Netns != "",
		"mode":           h.Mode != "",
		"direction":      h.Direction != "",
		"tracepoint":     h.Tracepoint != "",
		"function":       h.Function != "",
		"binary":         h.Binary != "",
		"pid":            h.PID != 0,
		"cgroup":         h.Cgroup != "",
		"replaceForeign": h.ReplaceForeign,
		"secure":         h.Secure,
		"allowForeign":   len(h.AllowForeign) > 0,
		"chainMode":      h.ChainMode != "",
	}
}

func (h *Hook) validate() Errors {
	var errs Errors
	add := func(field, format string, args ...any) {
		errs = append(errs, Error{Field: "hook." + field, Message: fmt.Sprintf(format, args...)})
	}
	allowed, ok := fieldsFor[h.Type]
	if !ok {
		add("type", "unknown hook type %q (known: cgroup_skb, kprobe, tc, tracepoint, uprobe, xdp)", h.Type)
		return errs
	}
	set := h.set()
	for _, field := range hookFields { // in a fixed order: errors are stable
		if set[field] && !contains(allowed, field) {
			add(field, "does not apply to %s hooks (they take: %s)", h.Type, strings.Join(allowed, ", "))
		}
	}
	for field, v := range map[string]string{"cgroup": h.Cgroup, "tracepoint": h.Tracepoint, "function": h.Function, "binary": h.Binary} {
		if hasControl(v) {
			add(field, "%q holds a NUL or control character", v)
		}
	}
	switch h.Type {
	case manifest.HookXDP, manifest.HookTC:
		if h.Interface == "" {
			add("interface", "is required for %s hooks", h.Type)
		} else if msg := checkIfname(h.Interface); msg != "" {
			add("interface", "%q %s", h.Interface, msg)
		}
		if msg := checkNetns(h.Netns); msg != "" {
			add("netns", "%q %s", h.Netns, msg)
		}
	}
	for i, m := range h.AllowForeign {
		if msg := m.Validate(); msg != "" {
			add(fmt.Sprintf("allowForeign[%d]", i), "%s", msg)
		}
	}
	switch h.ChainMode {
	case "", ChainModeAuto, ChainModeFused, ChainModeTailCall:
	default:
		add("chainMode", "must be auto, fused or tailcall, got %q", h.ChainMode)
	}
	switch h.Type {
	case manifest.HookXDP:
		if h.Mode != "" && h.Mode != "native" && h.Mode != "generic" {
			add("mode", "must be native or generic, got %q", h.Mode)
		}
	case manifest.HookTC, manifest.HookCgroupSKB:
		if h.Direction != "ingress" && h.Direction != "egress" {
			add("direction", "must be ingress or egress, got %q", h.Direction)
		}
		if h.Type == manifest.HookCgroupSKB && !filepath.IsAbs(h.Cgroup) {
			add("cgroup", "must be an absolute path to a cgroup v2 directory, got %q", h.Cgroup)
		}
	case manifest.HookTracepoint:
		group, name, ok := strings.Cut(h.Tracepoint, "/")
		if !ok || group == "" || name == "" || strings.ContainsAny(name, "/.") || strings.Contains(group, ".") {
			add("tracepoint", "must be group/name, for example sched/sched_process_exec, got %q", h.Tracepoint)
		}
	case manifest.HookKprobe:
		if h.Function == "" {
			add("function", "is required for kprobe hooks")
		}
	case manifest.HookUprobe:
		if !filepath.IsAbs(h.Binary) {
			add("binary", "must be an absolute path, got %q", h.Binary)
		}
		if h.Function == "" {
			add("function", "is required for uprobe hooks")
		}
		if h.PID < 0 {
			add("pid", "must not be negative")
		}
	}
	return errs
}

// NetnsPath is the netns file the hook refers to, or "" for leafd's own.
func (h *Hook) NetnsPath() string {
	if h.Netns == "" || filepath.IsAbs(h.Netns) {
		return h.Netns
	}
	return filepath.Join("/var/run/netns", h.Netns)
}

// XDPMode returns the XDP mode, native by default.
func (h *Hook) XDPMode() string {
	if h.Mode == "" {
		return "native"
	}
	return h.Mode
}

// Key identifies the hook: attachments with equal keys share it.
func (h *Hook) Key() string {
	switch h.Type {
	case manifest.HookXDP:
		return fmt.Sprintf("xdp/%s/%s", h.NetnsPath(), h.Interface)
	case manifest.HookTC:
		return fmt.Sprintf("tc-%s/%s/%s", h.Direction, h.NetnsPath(), h.Interface)
	case manifest.HookTracepoint:
		return "tracepoint/" + h.Tracepoint
	case manifest.HookKprobe:
		return "kprobe/" + h.Function
	case manifest.HookUprobe:
		return fmt.Sprintf("uprobe/%s:%s/%d", h.Binary, h.Function, h.PID)
	case manifest.HookCgroupSKB:
		return fmt.Sprintf("cgroup_skb-%s/%s", h.Direction, h.Cgroup)
	}
	return h.Type
}

// String describes the hook for people.
func (h Hook) String() string {
	switch h.Type {
	case manifest.HookXDP, manifest.HookTC:
		s := h.Type
		if h.Type == manifest.HookTC {
			s += "/" + h.Direction
		} else {
			s += "/" + h.XDPMode()
		}
		s += " " + h.Interface
		if h.Netns != "" {
			s += " (netns " + h.Netns + ")"
		}
		return s
	case manifest.HookTracepoint:
		return "tracepoint " + h.Tracepoint
	case manifest.HookKprobe:
		return "kprobe " + h.Function
	case manifest.HookUprobe:
		return fmt.Sprintf("uprobe %s:%s", h.Binary, h.Function)
	case manifest.HookCgroupSKB:
		return fmt.Sprintf("cgroup_skb/%s %s", h.Direction, h.Cgroup)
	}
	return h.Type
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Chained reports whether programs on this hook form a leaf chain (XDP and
// TC hooks).
func (h *Hook) Chained() bool {
	return h.Type == manifest.HookXDP || h.Type == manifest.HookTC
}

// ifnameMax is the longest interface name the kernel takes (IFNAMSIZ
// less the terminating NUL).
const ifnameMax = 15

// checkIfname says what is wrong with an interface name, or "". The
// kernel refuses these names itself (dev_valid_name); checking here means
// a bad name never reaches a lookup that could truncate it at a NUL.
func checkIfname(n string) string {
	switch {
	case len(n) > ifnameMax:
		return fmt.Sprintf("is longer than the kernel's %d bytes for an interface name", ifnameMax)
	case hasControl(n):
		return "holds a NUL or control character"
	case strings.ContainsAny(n, "/: \t") || n == "." || n == "..":
		return "is not an interface name ('/', ':' and whitespace are not allowed)"
	}
	return ""
}

// checkNetns says what is wrong with a netns field (a name under
// /var/run/netns or an absolute path), or "".
func checkNetns(ns string) string {
	switch {
	case ns == "":
		return ""
	case hasControl(ns):
		return "holds a NUL or control character"
	case len(ns) > 4096:
		return "is longer than a path may be"
	case filepath.IsAbs(ns):
		if filepath.Clean(ns) != ns {
			return "must be a clean absolute path (no '..', '//' or trailing '/')"
		}
	case strings.Contains(ns, "/"):
		return "must be a name or an absolute path"
	case ns == "." || ns == ".." || len(ns) > 255:
		return "is not a namespace name"
	}
	return ""
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}
