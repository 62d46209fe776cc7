// Package admission checks a desired state before leafd acts on it:
// validate the document, resolve every package against the repositories,
// fetch it into the content-addressed cache and verify its signatures and
// digest. It runs per request, with the request's context, outside the
// reconciler's lock: the network lives here and nowhere else.
//
// What it admits is pinned to digests: a Pinned set that serves exactly
// the admitted packages, from memory, so that reconciliation (observe,
// plan, apply, record) resolves and loads only verified bytes and never
// waits on a repository.
package admission

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/netnsutil"
	"github.com/leaf-ebpf/leaf/internal/planner"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// Admitted is a desired state whose packages are resolved and verified.
type Admitted struct {
	State *desired.State
	// Packages are the admitted packages, by digest.
	Packages map[string]*repository.Package
	// Resolved is the resolution admission made, for the apply that
	// follows at once (with the same Options) to use rather than repeat.
	Resolved []*planner.Resolved
	Options  planner.Options
}

// Release closes what resolution kept open for the apply (the netlink
// sockets and namespace descriptors of its interface lookups); call it
// once the apply has attached. A nil Admitted has nothing to release.
func (a *Admitted) Release() {
	if a != nil && a.Options.Interfaces != nil {
		a.Options.Interfaces.Close()
	}
}

// Admit validates st within limits and resolves its packages through
// repos with ctx.
// The errors are desired.Errors naming attachment and field, or ctx's.
func Admit(ctx context.Context, st *desired.State, limits desired.Limits, repos repository.Set, opts planner.Options) (*Admitted, error) {
	if err := st.ValidateWith(limits); err != nil {
		return nil, err
	}
	opts.Interfaces = &netnsutil.Interfaces{}
	resolved, err := planner.ResolveContext(ctx, st, repos, opts)
	if err != nil {
		opts.Interfaces.Close()
		return nil, err
	}
	a := &Admitted{State: st, Packages: map[string]*repository.Package{}, Resolved: resolved, Options: opts}
	for _, r := range resolved {
		a.Packages[r.Package.Digest] = r.Package
	}
	return a, nil
}

// Pinned serves the given packages, and only those, from memory: one
// repository per name the packages came from, in the order of order (the
// configured repositories), so a request naming a repository finds its
// package there.
func Pinned(pkgs map[string]*repository.Package, order []string) repository.Set {
	byRepo := map[string]*pinned{}
	for _, p := range pkgs {
		pr := byRepo[p.Repository]
		if pr == nil {
			pr = &pinned{name: p.Repository, pkgs: map[string]*repository.Package{}}
			byRepo[p.Repository] = pr
		}
		pr.pkgs[p.Ref()] = p
	}
	var set repository.Set
	for _, n := range order {
		if pr := byRepo[n]; pr != nil {
			set = append(set, pr)
			delete(byRepo, n)
		}
	}
	rest := make([]string, 0, len(byRepo))
	for n := range byRepo {
		rest = append(rest, n)
	}
	sort.Strings(rest)
	for _, n := range rest {
		set = append(set, byRepo[n])
	}
	return set
}

// pinned is one repository's admitted packages.
type pinned struct {
	name string
	pkgs map[string]*repository.Package
}

func (p *pinned) Name() string { return p.name }

func (p *pinned) Resolve(name, version string) (*repository.Package, error) {
	pkg := p.pkgs[name+"@"+version]
	if pkg == nil {
		var have []string
		for ref := range p.pkgs {
			have = append(have, ref)
		}
		sort.Strings(have)
		return nil, fmt.Errorf("%w: %s@%s was not admitted from repository %s (admitted: %s)", repository.ErrNotFound, name, version, p.name, strings.Join(have, ", "))
	}
	return pkg, nil
}

func (p *pinned) List() []*repository.Package {
	out := make([]*repository.Package, 0, len(p.pkgs))
	for _, pkg := range p.pkgs {
		out = append(out, pkg)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref() < out[j].Ref() })
	return out
}

// Preferring is repos with pkgs answered first: a request for one of
// pkgs, from the repository it came from, gets it as it is, without the
// repository being asked again; anything else goes to repos. It is for
// packages the caller resolved, fetched and verified moments before (the
// L3AF API does, to type map_args), so that one change resolves each
// package once.
func Preferring(pkgs []*repository.Package, repos repository.Set) repository.Set {
	if len(pkgs) == 0 {
		return repos
	}
	out := make(repository.Set, len(repos))
	for i, r := range repos {
		pr := &preferring{Repository: r, pkgs: map[string]*repository.Package{}}
		for _, p := range pkgs {
			if p.Repository == r.Name() {
				pr.pkgs[p.Ref()] = p
			}
		}
		out[i] = pr
	}
	return out
}

// preferring is one repository with some of its packages known already.
type preferring struct {
	repository.Repository
	pkgs map[string]*repository.Package
}

func (p *preferring) Resolve(name, version string) (*repository.Package, error) {
	return p.ResolveContext(context.Background(), name, version)
}

func (p *preferring) ResolveContext(ctx context.Context, name, version string) (*repository.Package, error) {
	if pkg := p.pkgs[name+"@"+version]; pkg != nil {
		return pkg, nil
	}
	return repository.ResolveWith(ctx, p.Repository, name, version)
}
