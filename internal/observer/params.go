package observer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/internal/bpffs"
	"github.com/leaf-ebpf/leaf/internal/manifest"
)

// CheckParams compares what an attachment's pinned parameter maps hold
// with the values leaf recorded writing there, and says how they differ
// ("" when they hold exactly those values). A "value" parameter's key
// must hold its value; a "keys" parameter's map must hold exactly its
// keys. A map that cannot be read counts as differing.
func CheckParams(layout bpffs.Layout, name string, m *manifest.Manifest, recorded map[string]any) string {
	pnames := make([]string, 0, len(recorded))
	for n := range recorded {
		pnames = append(pnames, n)
	}
	sort.Strings(pnames)
	for _, pname := range pnames {
		p := m.Param(pname)
		if p == nil || p.Map == nil {
			return fmt.Sprintf("parameter %s is no map parameter of %s", pname, m.Name)
		}
		typ, err := manifest.ParseType(p.Type)
		if err != nil {
			return fmt.Sprintf("parameter %s: %v", pname, err)
		}
		want, err := typ.Encode(recorded[pname])
		if err != nil {
			return fmt.Sprintf("parameter %s: %v", pname, err)
		}
		mp, err := ebpf.LoadPinnedMap(layout.Map(name, p.Map.Name), nil)
		if err != nil {
			return fmt.Sprintf("parameter %s: map %s is not pinned", pname, p.Map.Name)
		}
		diff := mapDiff(mp, p.Map, want)
		mp.Close()
		if diff != "" {
			return fmt.Sprintf("parameter %s: map %s %s", pname, p.Map.Name, diff)
		}
	}
	return ""
}

func mapDiff(mp *ebpf.Map, mapParam *manifest.MapTarget, want [][]byte) string {
	if mapParam.As == "value" {
		if PerCPU(mp.Type()) {
			return perCPUDiff(mp, mapParam.Key, want[0])
		}
		got := make([]byte, mp.ValueSize())
		if err := mp.Lookup(mapParam.Key, &got); err != nil {
			return fmt.Sprintf("has no value under key %d", mapParam.Key)
		}
		if !bytes.Equal(got, want[0]) {
			return fmt.Sprintf("holds %x under key %d, not the recorded %x", got, mapParam.Key, want[0])
		}
		return ""
	}
	keys := map[string]bool{}
	for _, k := range want {
		keys[string(k)] = true
	}
	n := 0
	key := make([]byte, mp.KeySize())
	var discard []byte
	it := mp.Iterate()
	for it.Next(&key, &discard) {
		if !keys[string(key)] {
			return fmt.Sprintf("holds key %x that was not written", key)
		}
		n++
	}
	if err := it.Err(); err != nil {
		return fmt.Sprintf("cannot be read: %v", err)
	}
	if n != len(keys) {
		return fmt.Sprintf("holds %d of the %d recorded keys", n, len(keys))
	}
	return ""
}

// perCPUDiff checks that every CPU's slot holds the value.
func perCPUDiff(mp *ebpf.Map, key uint32, want []byte) string {
	got, err := LookupPerCPU(mp, key)
	if err != nil {
		return fmt.Sprintf("has no value under key %d", key)
	}
	for cpu, v := range got {
		if !bytes.Equal(v, want) {
			return fmt.Sprintf("holds %x on CPU %d under key %d, not the recorded %x", v, cpu, key, want)
		}
	}
	return ""
}

// LookupPerCPU returns each CPU's value under key, as raw bytes in host
// order, for a per-CPU map of 1, 2, 4 or 8-byte values.
func LookupPerCPU(mp *ebpf.Map, key uint32) ([][]byte, error) {
	var out [][]byte
	switch mp.ValueSize() {
	case 1:
		var vs []uint8
		if err := mp.Lookup(key, &vs); err != nil {
			return nil, err
		}
		for _, v := range vs {
			out = append(out, []byte{v})
		}
	case 2:
		var vs []uint16
		if err := mp.Lookup(key, &vs); err != nil {
			return nil, err
		}
		for _, v := range vs {
			out = append(out, binary.NativeEndian.AppendUint16(nil, v))
		}
	case 4:
		var vs []uint32
		if err := mp.Lookup(key, &vs); err != nil {
			return nil, err
		}
		for _, v := range vs {
			out = append(out, binary.NativeEndian.AppendUint32(nil, v))
		}
	case 8:
		var vs []uint64
		if err := mp.Lookup(key, &vs); err != nil {
			return nil, err
		}
		for _, v := range vs {
			out = append(out, binary.NativeEndian.AppendUint64(nil, v))
		}
	default:
		return nil, fmt.Errorf("per-CPU values of %d bytes are not supported", mp.ValueSize())
	}
	return out, nil
}

// PerCPU reports whether maps of type t hold one value per CPU.
func PerCPU(t ebpf.MapType) bool {
	switch t {
	case ebpf.PerCPUArray, ebpf.PerCPUHash, ebpf.LRUCPUHash, ebpf.PerCPUCGroupStorage:
		return true
	}
	return false
}
