package manifest

import "fmt"

// MapPolicy says what an upgrade does with a map whose definition
// changes (type, key or value size, max_entries or flags), which the
// kernel cannot reuse. Without a policy the map is recreated empty, and
// the dry run and the event log name it.
type MapPolicy struct {
	Name string `json:"name"`
	// Upgrade is persist (refuse an upgrade that would recreate the map)
	// or migrate (copy its entries into the new map; type, key and value
	// sizes must stay, max_entries may change).
	Upgrade string `json:"upgrade"`
}

// Map upgrade policies.
const (
	MapPersist = "persist"
	MapMigrate = "migrate"
)

// MapPolicy returns the policy for a map, "" when none.
func (m *Manifest) MapPolicy(name string) string {
	for _, p := range m.Maps {
		if p.Name == name {
			return p.Upgrade
		}
	}
	return ""
}

func validateMaps(maps []MapPolicy) []error {
	var errs []error
	seen := map[string]bool{}
	for i, p := range maps {
		field := fmt.Sprintf("maps[%d]", i)
		if !identRE.MatchString(p.Name) {
			errs = append(errs, fmt.Errorf("%s.name: %q is not a valid map name", field, p.Name))
		}
		if seen[p.Name] {
			errs = append(errs, fmt.Errorf("%s.name: duplicate map %q", field, p.Name))
		}
		seen[p.Name] = true
		if p.Upgrade != MapPersist && p.Upgrade != MapMigrate {
			errs = append(errs, fmt.Errorf("%s.upgrade: must be persist or migrate, got %q", field, p.Upgrade))
		}
	}
	return errs
}
