package manifest

import (
	"fmt"
	"strings"
)

// Records declares a ring buffer or perf event array whose records
// `leaf tail` streams, decoded field by field from a struct in the
// object's BTF.
type Records struct {
	// Map is the BPF_MAP_TYPE_RINGBUF or BPF_MAP_TYPE_PERF_EVENT_ARRAY.
	Map string `json:"map"`
	// Type names the struct each record holds (struct event → event).
	Type string `json:"type"`
	// Formats shows fields in a format (see Formats): {saddr: ipv4}.
	Formats map[string]string `json:"formats,omitempty"`
}

func (r *Records) validate(field string) []error {
	var errs []error
	add := func(sub, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", field, sub, fmt.Sprintf(format, args...)))
	}
	if !identRE.MatchString(r.Map) {
		add("map", "%q is not a valid map name", r.Map)
	}
	if !identRE.MatchString(r.Type) {
		add("type", "%q is not a valid type name", r.Type)
	}
	for f, fm := range r.Formats {
		if !identRE.MatchString(f) || fm == "" || !ValidFormat(fm) {
			add("formats."+f, "%q is not a format (want %s)", fm, strings.Join(Formats, ", "))
		}
	}
	return errs
}
