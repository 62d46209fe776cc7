package applier

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/internal/bpffs"
	"github.com/leaf-ebpf/leaf/internal/manifest"
)

// MapChange is a pinned map of an attachment that the new program cannot
// reuse as it is: recreated (empty), migrated (entries copied) or, for a
// map that must persist, refused.
type MapChange struct {
	Map    string
	Why    string // what differs: "max_entries 1024 → 2048"
	Policy string // manifest.MapPersist, manifest.MapMigrate or ""
}

func (c MapChange) String() string {
	switch c.Policy {
	case manifest.MapMigrate:
		return fmt.Sprintf("%s (%s; entries copied)", c.Map, c.Why)
	}
	return fmt.Sprintf("%s (%s; recreated empty)", c.Map, c.Why)
}

// MapChanges compares the maps a new program of attachment name declares
// (spec) with the ones pinned for it now. It errs when the package says
// a changed map must persist, or asks to migrate one whose entries
// cannot fit (another type, key or value size).
func MapChanges(layout bpffs.Layout, name string, m *manifest.Manifest, spec *ebpf.CollectionSpec, skip string) ([]MapChange, error) {
	var out []MapChange
	var errs []string
	for mname, ms := range spec.Maps {
		if strings.HasPrefix(mname, ".") || mname == skip {
			continue
		}
		pinned, err := ebpf.LoadPinnedMap(layout.Map(name, mname), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			continue // nothing pinned: nothing to keep
		}
		why := mapDiff(ms, pinned)
		pinned.Close()
		if why == "" {
			continue
		}
		c := MapChange{Map: mname, Why: why, Policy: m.MapPolicy(mname)}
		switch {
		case c.Policy == manifest.MapPersist:
			errs = append(errs, fmt.Sprintf("map %s must persist across upgrades, but %s", mname, why))
		case c.Policy == manifest.MapMigrate && !migratable(ms, why):
			errs = append(errs, fmt.Sprintf("map %s cannot be migrated: %s (only max_entries and flags may change)", mname, why))
		}
		out = append(out, c)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("package %s@%s: %s", m.Name, m.Version, strings.Join(errs, "; "))
	}
	return out, nil
}

// mapDiff says how the pinned map differs from the spec, "" when the
// kernel would reuse it.
func mapDiff(ms *ebpf.MapSpec, pinned *ebpf.Map) string {
	if ms.Compatible(pinned) == nil {
		return ""
	}
	var d []string
	add := func(what string, was, is any) {
		if was != is {
			d = append(d, fmt.Sprintf("%s %v → %v", what, was, is))
		}
	}
	add("type", pinned.Type(), ms.Type)
	add("key size", pinned.KeySize(), ms.KeySize)
	add("value size", pinned.ValueSize(), ms.ValueSize)
	add("max_entries", pinned.MaxEntries(), ms.MaxEntries)
	add("flags", pinned.Flags(), ms.Flags)
	if len(d) == 0 {
		return fmt.Sprint(ms.Compatible(pinned))
	}
	return strings.Join(d, ", ")
}

func migratable(ms *ebpf.MapSpec, why string) bool {
	return !strings.Contains(why, "type ") && !strings.Contains(why, "key size") && !strings.Contains(why, "value size") &&
		ms.Type != ebpf.RingBuf && ms.Type != ebpf.PerfEventArray && ms.Type != ebpf.ProgramArray
}

// migrate copies every entry of old into m (per-CPU values CPU by CPU).
func migrate(old, m *ebpf.Map) error {
	key := make([]byte, old.KeySize())
	it := old.Iterate()
	n := 0
	if perCPU(old.Type()) {
		var vals [][]byte
		for it.Next(&key, &vals) {
			if err := m.Put(key, vals); err != nil {
				return fmt.Errorf("copy entry %d: %w", n, err)
			}
			n++
		}
	} else {
		var val []byte
		for it.Next(&key, &val) {
			if err := m.Put(key, val); err != nil {
				return fmt.Errorf("copy entry %d: %w", n, err)
			}
			n++
		}
	}
	return it.Err()
}

func perCPU(t ebpf.MapType) bool {
	return t == ebpf.PerCPUArray || t == ebpf.PerCPUHash || t == ebpf.LRUCPUHash
}

// migrationSources opens the attachment's pinned maps the new program
// cannot reuse but the package asks to migrate (MapChanges refused those
// that cannot be): their entries are copied into the new maps.
func (ap *Applier) migrationSources(name string, spec *ebpf.CollectionSpec, m *manifest.Manifest, chainMap string) map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	for mname, ms := range spec.Maps {
		if mname == chainMap {
			continue
		}
		if pinned := ap.migrationSource(name, mname, ms, m); pinned != nil {
			out[mname] = pinned
		}
	}
	return out
}

// migrationSource opens attachment name's pinned map mname when ms cannot
// reuse it and the package asks to migrate it.
func (ap *Applier) migrationSource(name, mname string, ms *ebpf.MapSpec, m *manifest.Manifest) *ebpf.Map {
	if strings.HasPrefix(mname, ".") || m.MapPolicy(mname) != manifest.MapMigrate {
		return nil
	}
	pinned, err := ebpf.LoadPinnedMap(ap.Layout.Map(name, mname), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil
	}
	if ms.Compatible(pinned) == nil {
		pinned.Close() // reused as it is
		return nil
	}
	return pinned
}
