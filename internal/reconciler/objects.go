package reconciler

import (
	"os"
	"sort"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/internal/manifest"
)

// Objects is what metrics read for one attachment: its program, its
// pinned maps and its package's declared metrics.
type Objects struct {
	Attachment string
	// Package is the package's name (declared metrics carry it).
	Package   string
	ProgramID ebpf.ProgramID
	// Maps gives each pinned map's pin path by name.
	Maps    map[string]string
	Metrics []manifest.Metric
}

// Objects lists, sorted by attachment, the objects of every desired
// attachment leaf applied.
func (r *Reconciler) Objects() ([]Objects, error) {
	names := r.snapshot.Load().Names()
	records, err := r.cfg.Store.Records()
	if err != nil {
		return nil, err
	}
	var out []Objects
	for _, name := range names {
		rec := records[name]
		if rec == nil {
			continue
		}
		o := Objects{Attachment: name, Package: rec.Package.Name, ProgramID: ebpf.ProgramID(rec.ProgramID), Maps: map[string]string{}, Metrics: rec.Metrics}
		entries, _ := os.ReadDir(r.cfg.Layout.MapsDir(name))
		for _, e := range entries {
			if !strings.Contains(e.Name(), ".") {
				o.Maps[e.Name()] = r.cfg.Layout.Map(name, e.Name())
			}
		}
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Attachment < out[j].Attachment })
	return out, nil
}
