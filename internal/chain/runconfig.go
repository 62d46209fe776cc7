package chain

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// runConfigSection is the BTF datasec libxdp reads run configurations from.
const runConfigSection = ".xdp_run_config"

// Defaults libxdp applies to what a run configuration leaves out
// (XDP_DEFAULT_RUN_PRIO and XDP_DEFAULT_CHAIN_CALL_ACTIONS in xdp_helpers.h).
const (
	DefaultRunPriority = 50
	xdpPassVerdict     = 2
)

// xdpActions maps the member names libxdp accepts to XDP verdicts.
var xdpActions = map[string]int32{
	"XDP_ABORTED":  0,
	"XDP_DROP":     1,
	"XDP_PASS":     2,
	"XDP_TX":       3,
	"XDP_REDIRECT": 4,
}

// RunConfigValues is libxdp's run configuration of one program.
type RunConfigValues struct {
	// Priority orders the program in a chain: lower runs first.
	Priority int
	// ProceedOn lists the verdicts on which the next program runs, in
	// ascending order.
	ProceedOn []int32
}

// RunConfig reads libxdp's XDP_RUN_CONFIG metadata for function (BTF datasec
// ".xdp_run_config", a variable named "_<function>" of a struct whose members encode
// values as in libxdp's __uint() macro: priority, and one member per proceed-on verdict
// named like XDP_PASS, XDP_DROP, ... with value 1). ok is false when the object carries none.
//
// As in libxdp, what the struct leaves out keeps its default: priority 50,
// proceed on XDP_PASS; a verdict member with value 0 removes the verdict, any
// other value adds it. Unknown members are an error, as in libxdp.
func RunConfig(spec *ebpf.CollectionSpec, function string) (cfg RunConfigValues, ok bool, err error) {
	if spec.Types == nil {
		return RunConfigValues{}, false, nil
	}
	var sec *btf.Datasec
	if err := spec.Types.TypeByName(runConfigSection, &sec); errors.Is(err, btf.ErrNotFound) {
		return RunConfigValues{}, false, nil
	} else if err != nil {
		return RunConfigValues{}, false, fmt.Errorf("run config: %w", err)
	}

	name := "_" + function
	var def *btf.Struct
	for _, vs := range sec.Vars {
		v, isVar := vs.Type.(*btf.Var)
		if !isVar || v.Name != name {
			continue
		}
		s, isStruct := btf.UnderlyingType(v.Type).(*btf.Struct)
		if !isStruct {
			return RunConfigValues{}, false, fmt.Errorf("run config %s: %s is a %s, not a struct", name, runConfigSection, v.Type)
		}
		def = s
		break
	}
	if def == nil {
		return RunConfigValues{}, false, nil
	}

	cfg.Priority = DefaultRunPriority
	proceed := map[int32]bool{xdpPassVerdict: true}
	for _, m := range def.Members {
		val, err := uintMember(m)
		if err != nil {
			return RunConfigValues{}, false, fmt.Errorf("run config %s: %w", name, err)
		}
		if m.Name == "priority" {
			cfg.Priority = int(val)
			continue
		}
		act, known := xdpActions[m.Name]
		if !known {
			return RunConfigValues{}, false, fmt.Errorf("run config %s: unknown member %q", name, m.Name)
		}
		proceed[act] = val != 0
	}
	for act, on := range proceed {
		if on {
			cfg.ProceedOn = append(cfg.ProceedOn, act)
		}
	}
	slices.Sort(cfg.ProceedOn)
	return cfg, true, nil
}

// uintMember decodes a member declared with libbpf's __uint(name, val), that
// is "int (*name)[val]".
func uintMember(m btf.Member) (uint32, error) {
	ptr, ok := btf.UnderlyingType(m.Type).(*btf.Pointer)
	if !ok {
		return 0, fmt.Errorf("member %q is not declared with __uint()", m.Name)
	}
	arr, ok := btf.UnderlyingType(ptr.Target).(*btf.Array)
	if !ok {
		return 0, fmt.Errorf("member %q is not declared with __uint()", m.Name)
	}
	return arr.Nelems, nil
}
