package applier

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/internal/manifest"
)

// writeMapParams makes each map parameter's map hold exactly the given
// value: for "keys" the map's key set becomes the list; for "value" the
// key holds the scalar.
func writeMapParams(m *manifest.Manifest, maps map[string]*ebpf.Map, values map[string]any) error {
	for name, v := range values {
		p := m.Param(name)
		if p == nil || p.Map == nil {
			return fmt.Errorf("parameter %s is not a map parameter", name)
		}
		mp := maps[p.Map.Name]
		if mp == nil {
			return &namedParamError{name, fmt.Errorf("map %s not loaded", p.Map.Name)}
		}
		typ, err := p.TypeOf()
		if err != nil {
			return err
		}
		items, err := typ.Encode(v)
		if err != nil {
			return &namedParamError{name, err}
		}
		if p.Map.As == "value" {
			if err := mp.Put(p.Map.Key, items[0]); err != nil {
				return &namedParamError{name, fmt.Errorf("write map %s: %w", p.Map.Name, err)}
			}
			continue
		}
		if err := setKeys(mp, items); err != nil {
			return &namedParamError{name, fmt.Errorf("map %s: %w", p.Map.Name, err)}
		}
	}
	return nil
}

// setKeys makes the map's key set exactly keys. Keys in both the old and
// the new set are never absent. It adds missing keys before deleting
// unwanted ones, so that for a moment the map holds both sets rather than
// neither, unless both together do not fit the map: then it deletes first.
func setKeys(m *ebpf.Map, keys [][]byte) error {
	want := map[string]bool{}
	for _, k := range keys {
		want[string(k)] = true
	}
	var stale [][]byte
	present := map[string]bool{}
	key := make([]byte, m.KeySize())
	it := m.Iterate()
	var discard []byte
	for it.Next(&key, &discard) {
		present[string(key)] = true
		if !want[string(key)] {
			stale = append(stale, bytes.Clone(key))
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate: %w", err)
	}
	value := make([]byte, m.ValueSize())
	if len(value) > 0 {
		value[0] = 1
	}
	add := func() error {
		for _, k := range keys {
			// A kept key keeps its value: the program may count under it.
			if present[string(k)] {
				continue
			}
			if err := m.Update(k, value, ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
				return fmt.Errorf("add key %x: %w", k, err)
			}
		}
		return nil
	}
	del := func() error {
		for _, k := range stale {
			if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("delete key %x: %w", k, err)
			}
		}
		return nil
	}
	if uint64(len(want))+uint64(len(stale)) > uint64(m.MaxEntries()) {
		if err := del(); err != nil {
			return err
		}
		return add()
	}
	if err := add(); err != nil {
		return err
	}
	return del()
}
