// Package planner turns desired state into a plan: it resolves every
// attachment against the repositories and this host, compares it with what
// was applied and what the kernel holds, and says per attachment what must
// change. It changes nothing itself.
package planner

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/internal/chain"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/hook"
	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/netnsutil"
	"github.com/leaf-ebpf/leaf/internal/pkgcheck"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// Resolved is one desired attachment, checked against its package and
// this host, ready to load.
type Resolved struct {
	Attachment  desired.Attachment
	Package     *repository.Package
	Program     *manifest.Program
	Spec        *ebpf.CollectionSpec
	Target      *hook.Target
	ConstParams map[string]any
	MapParams   map[string]any
	// Chain is set for XDP and TC attachments: how the program joins its
	// hook's chain. Spec is then already prepared (rewritten) for it.
	Chain *ChainConfig
}

// ChainConfig is a chain member's resolved configuration.
type ChainConfig struct {
	Priority  int
	ProceedOn []int32
	// Mode is manifest.ChainRewrite or manifest.ChainCooperative.
	Mode string
	// Map is the PROG_ARRAY holding the next member.
	Map string
	// CountRuns: the member counts its runs in chain.RunsMap (rewrite
	// mode only).
	CountRuns bool
	// HookMode is the chain mode the hook's attachments ask for
	// (desired.ChainModeFused or ChainModeTailCall; "" is auto).
	HookMode string
	// FuseSpec is the member's collection before the tail-call rewrite,
	// to build a fused chain from; nil when NoFuse says why it cannot be
	// fused.
	FuseSpec *ebpf.CollectionSpec
	NoFuse   string
}

// Options are host-wide choices that shape how programs are prepared.
type Options struct {
	// CountRuns makes chain members count their own runs (the kernel's
	// statistics miss tail-called programs). leafd sets it while BPF
	// statistics are on, since both cost a little per packet.
	CountRuns bool
	// Interfaces, when set, resolves interface names and stays open for
	// the caller to close once its apply has attached (netnsutil
	// Interfaces.Handle says why); otherwise Resolve opens and closes its
	// own.
	Interfaces *netnsutil.Interfaces

	// chainModes holds the chain mode of each hook that sets one.
	chainModes map[string]string
}

// Resolve checks every attachment: the package and program exist, the
// program fits the hook, the parameters are declared and well typed, and
// the hook exists on this host. It returns every problem found.
func Resolve(st *desired.State, repos repository.Set, opts Options) ([]*Resolved, error) {
	return ResolveContext(context.Background(), st, repos, opts)
}

// ResolveContext is Resolve with a context for repositories that reach
// the network.
func ResolveContext(ctx context.Context, st *desired.State, repos repository.Set, opts Options) ([]*Resolved, error) {
	var out []*Resolved
	var errs desired.Errors
	opts.chainModes = st.HookChainModes()
	ifs := opts.Interfaces
	if ifs == nil {
		ifs = &netnsutil.Interfaces{}
		defer ifs.Close()
	}
	for _, a := range st.Spec.Attachments {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r, aerrs := resolveOne(ctx, a, repos, opts, ifs)
		for i := range aerrs {
			aerrs[i].Attachment = a.Name
		}
		errs = append(errs, aerrs...)
		if r != nil {
			out = append(out, r)
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Attachment.Name < out[j].Attachment.Name })
	return out, nil
}

func resolveOne(ctx context.Context, a desired.Attachment, repos repository.Set, opts Options, ifs *netnsutil.Interfaces) (*Resolved, desired.Errors) {
	fail := func(field string, err error) (*Resolved, desired.Errors) {
		return nil, desired.Errors{{Field: field, Message: err.Error(), Kind: repository.ErrorKind(err), Err: err}}
	}
	ref, err := desired.ParsePackageRef(a.Package)
	if err != nil {
		return fail("package", err)
	}
	// Trust is checked inside the repositories: a package that fails its
	// policy never gets here.
	pkg, err := repos.ResolveRequestContext(ctx, repository.Request{Name: ref.Name, Version: ref.Version, Repository: a.Repository, Digest: a.PinnedDigest()})
	if err != nil {
		return fail("package", err)
	}
	prog, err := pkg.Manifest.Program(a.Program)
	if err != nil {
		return fail("program", err)
	}
	if !contains(prog.Hooks, a.Hook.Type) {
		return fail("hook.type", fmt.Errorf("program %s of %s (type %s) cannot attach to a %s hook; it attaches to: %v", prog.Name, pkg.Ref(), prog.Type, a.Hook.Type, prog.Hooks))
	}
	spec, _, err := pkg.SharedSpec(prog.Name)
	if err != nil {
		return fail("package", err)
	}
	r := &Resolved{Attachment: a, Package: pkg, Program: prog, Spec: spec}
	var errs desired.Errors
	r.ConstParams, r.MapParams, errs = resolveParams(a, pkg, spec)
	errs = append(errs, pkgcheck.Metrics(pkg, spec)...)
	errs = append(errs, pkgcheck.Records(pkg, spec)...)
	if a.Companion != nil {
		if pkg.Manifest.Companion == nil {
			errs = append(errs, desired.Error{Field: "companion", Message: fmt.Sprintf("package %s has no companion program", pkg.Ref())})
		} else {
			errs = append(errs, pkgcheck.Companion(pkg, runtime.GOARCH)...)
		}
	}
	target, err := hook.Resolve(a.Hook, ifs)
	if err != nil {
		var fe *hook.FieldError
		field := "hook"
		if errors.As(err, &fe) {
			field, err = "hook."+fe.Field, fe.Err
		}
		errs = append(errs, desired.Error{Field: field, Message: err.Error(), Kind: repository.ErrorKind(err), Err: err})
	}
	r.Target = target
	if target != nil {
		// The hook as resolved: an interface named by an altname is keyed
		// by its main name, so both name one chain.
		r.Attachment.Hook = target.Hook
	}
	if a.Hook.Chained() && len(errs) == 0 {
		cfg, prepared, field, err := resolveChain(a, pkg, prog, spec, opts)
		if err != nil {
			errs = append(errs, desired.Error{Field: field, Message: err.Error()})
		}
		r.Chain, r.Spec = cfg, prepared
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return r, nil
}

// resolveChain settles the member's priority and proceed-on verdicts
// (desired state, else the manifest, else the object's XDP_RUN_CONFIG,
// else the hook's defaults) and prepares the program: rewritten so that
// its exits hand over to the next member, or checked against the
// cooperative contract.
func resolveChain(a desired.Attachment, pkg *repository.Package, prog *manifest.Program, spec *ebpf.CollectionSpec, ro Options) (*ChainConfig, *ebpf.CollectionSpec, string, error) {
	cfg := &ChainConfig{Priority: desired.DefaultPriority, ProceedOn: desired.DefaultProceedOn(a.Hook.Type), Mode: manifest.ChainRewrite, Map: chain.NextMap}
	if a.Hook.Type == manifest.HookXDP {
		rc, ok, err := chain.RunConfig(spec, prog.Function)
		if err != nil {
			return nil, nil, "package", fmt.Errorf("XDP_RUN_CONFIG: %w", err)
		}
		if ok {
			cfg.Priority = rc.Priority
			if len(rc.ProceedOn) > 0 {
				cfg.ProceedOn = rc.ProceedOn
			}
		}
	}
	if c := prog.Chain; c != nil {
		if c.Priority != nil {
			cfg.Priority = *c.Priority
		}
		if len(c.ProceedOn) > 0 {
			v, err := desired.ParseVerdicts(a.Hook.Type, c.ProceedOn)
			if err != nil {
				return nil, nil, "package", fmt.Errorf("manifest chain.proceedOn: %w", err)
			}
			cfg.ProceedOn = v
		}
		if c.Mode == manifest.ChainCooperative {
			cfg.Mode, cfg.Map = c.Mode, c.Map
		}
	}
	if a.Priority != nil {
		cfg.Priority = *a.Priority
	}
	if len(a.ProceedOn) > 0 {
		v, err := desired.ParseVerdicts(a.Hook.Type, a.ProceedOn)
		if err != nil {
			return nil, nil, "proceedOn", err
		}
		cfg.ProceedOn = v
	}
	cfg.HookMode = ro.chainModes[a.Hook.Key()]
	if cfg.Mode == manifest.ChainCooperative {
		if err := chain.Cooperative(spec, prog.Function, cfg.Map); err != nil {
			return nil, nil, "program", err
		}
		cfg.NoFuse = "it chains itself with bpf_tail_call (cooperative mode)"
		if cfg.HookMode == desired.ChainModeFused {
			return nil, nil, "hook.chainMode", fmt.Errorf("fused: program %s chains itself with bpf_tail_call (cooperative mode) and cannot be fused", prog.Name)
		}
		return cfg, spec, "", nil
	}
	cfg.CountRuns = ro.CountRuns
	rw, err := rewritten(pkg, prog, spec, a.Hook.Type, cfg.ProceedOn, ro.CountRuns)
	if err != nil {
		return nil, nil, "program", err
	}
	cfg.FuseSpec, cfg.NoFuse = rw.fuse, rw.noFuse
	return cfg, rw.spec, "", nil
}

// resolveParams merges defaults with the values given, checks them against
// the declared types and targets, and splits them by where they go.
func resolveParams(a desired.Attachment, pkg *repository.Package, spec *ebpf.CollectionSpec) (consts, maps map[string]any, errs desired.Errors) {
	consts, maps = map[string]any{}, map[string]any{}
	add := func(field, format string, args ...any) {
		errs = append(errs, desired.Error{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	for key := range a.Params {
		if pkg.Manifest.Param(key) == nil {
			add("params."+key, "package %s has no parameter %q", pkg.Ref(), key)
		}
	}
	for _, p := range pkg.Manifest.Params {
		field := "params." + p.Name
		v, given := a.Params[p.Name]
		if !given {
			v = p.Default
		}
		typ, _ := p.TypeOf()
		if v == nil {
			if typ.List {
				v = []any{}
			} else {
				add(field, "is required (type %s, no default)", p.Type)
				continue
			}
		}
		encoded, err := typ.Encode(v)
		if err != nil {
			add(field, "%v", err)
			continue
		}
		if err := pkgcheck.Target(p, typ, len(encoded), spec); err != nil {
			add(field, "package %s: %v", pkg.Ref(), err)
			continue
		}
		if p.Const != "" {
			consts[p.Name] = v
		} else {
			maps[p.Name] = v
		}
	}
	return consts, maps, errs
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
