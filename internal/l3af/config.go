package l3af

import (
	"fmt"
	"net/url"
	"path"
	"strings"

	"github.com/leaf-ebpf/leaf/internal/desired"
)

// MaxPrograms bounds the programs of one hook list in a payload.
const MaxPrograms = desired.MaxChainLength

// check validates a payload before anything is fetched: l3afd's checks
// (host, interface) and what leaf cannot carry.
func (s *Service) check(payload Config) error {
	var errs desired.Errors
	for i, h := range payload {
		if err := s.checkHost(h.HostName, h.Iface); err != nil {
			return err
		}
		if h.BPFPrograms == nil {
			errs = append(errs, desired.Error{Field: fmt.Sprintf("[%d].bpf_programs", i), Message: "is required"})
			continue
		}
		for _, l := range h.BPFPrograms.lists() {
			field := fmt.Sprintf("[%d].bpf_programs.%s", i, l.hook)
			if len(*l.progs) > MaxPrograms {
				errs = append(errs, desired.Error{Field: field, Message: fmt.Sprintf("at most %d programs, got %d", MaxPrograms, len(*l.progs))})
				continue
			}
			seen := map[string]bool{}
			for j, p := range *l.progs {
				errs = append(errs, checkProgram(fmt.Sprintf("%s[%d]", field, j), l.hook, p, seen)...)
			}
		}
	}
	return errs.Err()
}

func checkProgram(field, hook string, p *Program, seen map[string]bool) desired.Errors {
	var errs desired.Errors
	add := func(sub, format string, args ...any) {
		errs = append(errs, desired.Error{Field: field + sub, Message: fmt.Sprintf(format, args...)})
	}
	if p == nil {
		add("", "is null")
		return errs
	}
	if hook == HookProbes {
		add("", "probes are not served by leaf's L3AF API; declare tracepoint or uprobe attachments in leaf's desired state")
		return errs
	}
	if p.Name == "" {
		add(".name", "is required")
	}
	if seen[p.Name] {
		add(".name", "program %q is listed twice", p.Name)
	}
	seen[p.Name] = true
	if p.AdminStatus != "" && p.AdminStatus != "enabled" && p.AdminStatus != "disabled" {
		add(".admin_status", "must be enabled or disabled, got %q", p.AdminStatus)
	}
	if p.SeqID < 0 || p.SeqID > 1000 {
		add(".seq_id", "must be between 0 and 1000, got %d", p.SeqID)
	}
	if Roots[p.Name] || p.AdminStatus == "disabled" {
		return errs
	}
	if p.Version == "" {
		add(".version", "is required")
	}
	if p.Artifact == "" {
		add(".artifact", "is required")
	}
	want := map[string]string{HookXDPIngress: "xdp", HookTCIngress: "tc", HookTCEgress: "tc"}[hook]
	if p.ProgType != "" && p.ProgType != want {
		add(".prog_type", "a %s program must have prog_type %s, got %q", hook, want, p.ProgType)
	}
	for i, m := range p.MonitorMaps {
		switch m.Aggregator {
		case AggScalar, AggMaxRate, AggAvg:
		default:
			add(fmt.Sprintf(".monitor_maps[%d].aggregator", i), "must be scalar, max-rate or avg, got %q", m.Aggregator)
		}
		if m.Name == "" || m.Key < 0 {
			add(fmt.Sprintf(".monitor_maps[%d]", i), "needs a map name and a key ≥ 0")
		}
	}
	return errs
}

// checkHost refuses programs for another host or without an interface,
// as l3afd does.
func (s *Service) checkHost(host, iface string) error {
	switch {
	case host != s.opts.HostName:
		return desired.Errors{{Field: "host_name", Message: fmt.Sprintf("provided bpf programs do not belong to this host: %q is not %q", host, s.opts.HostName)}}
	case iface == "" || len(iface) > 15 || strings.ContainsAny(iface, "/ \x00"):
		return desired.Errors{{Field: "iface", Message: fmt.Sprintf("%q is not an interface name", iface)}}
	}
	return nil
}

// merge adds payload's programs to cur: a program of the same interface,
// hook and name is replaced, others are appended.
func merge(cur, payload Config) Config {
	out := append(Config{}, cur...)
	for _, h := range payload {
		i := ifaceIndex(out, h.Iface)
		if i < 0 {
			out = append(out, HostConfig{HostName: h.HostName, Iface: h.Iface, IPv4Address: h.IPv4Address, BPFPrograms: &Programs{}})
			i = len(out) - 1
		}
		if out[i].BPFPrograms == nil {
			out[i].BPFPrograms = &Programs{}
		}
		dst := out[i].BPFPrograms.lists()
		for k, l := range h.BPFPrograms.lists() {
			for _, p := range *l.progs {
				list := dst[k].progs
				if j := progIndex(*list, p.Name); j >= 0 {
					(*list)[j] = p
				} else {
					*list = append(*list, p)
				}
			}
		}
	}
	return out
}

// remove drops the named programs; a name not configured is an error.
func remove(cur Config, names []Names) (Config, error) {
	out := append(Config{}, cur...)
	for _, n := range names {
		i := ifaceIndex(out, n.Iface)
		if n.BPFPrograms == nil {
			continue
		}
		for hook, list := range n.BPFPrograms.lists() {
			for _, name := range list {
				if i < 0 || out[i].BPFPrograms == nil {
					return nil, fmt.Errorf("%w: %s on %s %s", ErrUnknownProgram, name, n.Iface, hook)
				}
				for _, l := range out[i].BPFPrograms.lists() {
					if l.hook != hook {
						continue
					}
					j := progIndex(*l.progs, name)
					if j < 0 {
						return nil, fmt.Errorf("%w: %s on %s %s", ErrUnknownProgram, name, n.Iface, hook)
					}
					*l.progs = append((*l.progs)[:j:j], (*l.progs)[j+1:]...)
				}
			}
		}
	}
	kept := out[:0]
	for _, h := range out {
		if h.BPFPrograms != nil && len(h.BPFPrograms.XDPIngress)+len(h.BPFPrograms.TCIngress)+len(h.BPFPrograms.TCEgress)+len(h.BPFPrograms.Probes) > 0 {
			kept = append(kept, h)
		}
	}
	return kept, nil
}

func ifaceIndex(c Config, iface string) int {
	for i := range c {
		if c[i].Iface == iface {
			return i
		}
	}
	return -1
}

func progIndex(ps []*Program, name string) int {
	for i, p := range ps {
		if p.Name == name {
			return i
		}
	}
	return -1
}

// normURL compares repository URLs: file:///dir and /dir are one, a
// trailing slash does not count.
func normURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme == "file" {
		s = u.Path
	}
	if strings.HasPrefix(s, "/") {
		return path.Clean(s)
	}
	return strings.TrimSuffix(s, "/")
}
