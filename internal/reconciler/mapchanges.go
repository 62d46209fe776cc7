package reconciler

import (
	"strings"

	"github.com/leaf-ebpf/leaf/internal/applier"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/planner"
)

// noteMapChanges names, in the reason of every action that loads a new
// program over pinned maps, each map the new program cannot reuse (so the
// dry run and the event log say what an upgrade recreates or migrates),
// and refuses the plan when a package says a changed map must persist.
func (r *Reconciler) noteMapChanges(plan *planner.Plan) error {
	var errs desired.Errors
	for _, a := range plan.Actions {
		if a.Desired == nil || (a.Kind != planner.Replace && a.Kind != planner.Create) {
			continue
		}
		if a.Unpinned() {
			continue // nothing pinned to keep, and no bpffs lookup to pay for
		}
		skip := ""
		if a.Desired.Chain != nil {
			skip = a.Desired.Chain.Map
		}
		changes, err := applier.MapChanges(r.cfg.Layout, a.Name, a.Desired.Package.Manifest, a.Desired.Spec, skip)
		if err != nil {
			errs = append(errs, desired.Error{Attachment: a.Name, Field: "package", Message: err.Error()})
			continue
		}
		if len(changes) == 0 {
			continue
		}
		var names []string
		for _, c := range changes {
			names = append(names, c.String())
		}
		a.Reason += "; maps not kept: " + strings.Join(names, ", ")
	}
	return errs.Err()
}
