package reconciler

import (
	"context"

	"github.com/leaf-ebpf/leaf/internal/admission"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/planner"
	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/internal/store"
)

// admitAtStart admits st at start-up from what leafd holds itself when
// it can: the packages pinned (repository → name@version → digest) from
// the package cache, and the local repositories. A restart then adopts
// and repairs with every repository down, and loads the very bytes
// admitted before. Only what is not held locally (a desired-state file
// naming a new version, a cache emptied by hand) goes to the
// repositories.
func (r *Reconciler) admitAtStart(ctx context.Context, st *desired.State, pins map[string]map[string]string) (*admission.Admitted, error) {
	adm, err := admission.Admit(ctx, st, r.limits(), r.cfg.Repos.Offline(pins), planner.Options{CountRuns: r.cfg.Stats.Enabled()})
	if err == nil {
		return adm, nil
	}
	r.cfg.Logger.Info("start-up: not every package is held locally; asking the repositories", "reason", err)
	return r.admit(ctx, st, r.cfg.Repos, false)
}

// recordedPins are the packages the applied attachments run, by
// repository.
func (r *Reconciler) recordedPins() (map[string]map[string]string, error) {
	records, err := r.cfg.Store.Records()
	if err != nil {
		return nil, err
	}
	refs := make([]store.PackageRef, 0, len(records))
	for _, rec := range records {
		refs = append(refs, rec.Package)
	}
	return pinsOf(refs), nil
}

// pinsOf arranges package references by repository and name@version.
func pinsOf(refs []store.PackageRef) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, p := range refs {
		if out[p.Repository] == nil {
			out[p.Repository] = map[string]string{}
		}
		out[p.Repository][p.Name+"@"+p.Version] = p.Digest
	}
	return out
}

// packageRefs are the references of admitted packages.
func packageRefs(pkgs map[string]*repository.Package) []store.PackageRef {
	out := make([]store.PackageRef, 0, len(pkgs))
	for _, p := range pkgs {
		out = append(out, store.PackageRef{Name: p.Manifest.Name, Version: p.Manifest.Version, Digest: p.Digest, Repository: p.Repository})
	}
	return out
}
