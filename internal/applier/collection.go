package applier

import (
	"fmt"
	"maps"
	"slices"

	"github.com/cilium/ebpf"
)

// newCollection loads spec as ebpf.NewCollectionWithOptions does, but
// with its global variables written into their data sections (.rodata,
// .data, .bss) beforehand instead of through cilium/ebpf's Variables.
//
// Why: cilium/ebpf backs each loaded Variable with a memory mapping of its
// data section, the kernel counts that mapping as a reference to the map,
// and only the Go garbage collector removes it. A replaced or deleted
// program's .rodata would then stay in the kernel until the next
// collection — or leafd would have to force one after every apply, which
// costs milliseconds. leaf sets its constants before the load and never
// reads them back through a mapping, so it needs none.
func newCollection(spec *ebpf.CollectionSpec, opts ebpf.CollectionOptions) (*ebpf.Collection, error) {
	folded, err := foldVariables(spec)
	if err != nil {
		return nil, err
	}
	return ebpf.NewCollectionWithOptions(folded, opts)
}

// foldVariables returns a shallow copy of spec whose data-section maps
// hold their variables' values and which declares no variables. spec is
// not modified.
func foldVariables(spec *ebpf.CollectionSpec) (*ebpf.CollectionSpec, error) {
	if len(spec.Variables) == 0 {
		return spec, nil
	}
	out := *spec
	out.Maps = maps.Clone(spec.Maps)
	out.Variables = nil
	bySection := map[string][]*ebpf.VariableSpec{}
	for _, v := range spec.Variables {
		bySection[v.SectionName] = append(bySection[v.SectionName], v)
	}
	for section, vars := range bySection {
		ms := out.Maps[section]
		if ms == nil {
			return nil, fmt.Errorf("variables of section %s: no such map", section)
		}
		if len(ms.Contents) != 1 {
			return nil, fmt.Errorf("data section %s: expected one entry, found %d", section, len(ms.Contents))
		}
		raw, ok := ms.Contents[0].Value.([]byte)
		if !ok {
			return nil, fmt.Errorf("data section %s: contents are %T, not bytes", section, ms.Contents[0].Value)
		}
		data := slices.Clone(raw)
		for _, v := range vars {
			end := int(v.Offset) + len(v.Value)
			if end > len(data) {
				return nil, fmt.Errorf("variable %s exceeds data section %s", v.Name, section)
			}
			copy(data[v.Offset:end], v.Value)
		}
		ms = ms.Copy()
		ms.Contents = []ebpf.MapKV{{Key: ms.Contents[0].Key, Value: data}}
		out.Maps[section] = ms
	}
	return &out, nil
}
