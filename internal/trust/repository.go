package trust

import (
	"context"
	"fmt"
	"sync"

	"github.com/leaf-ebpf/leaf/internal/repository"
)

// Marks remembers verifications across restarts (the package cache
// implements it); a mark holds for one digest under one policy.
type Marks interface {
	Verified(digest, policyID string) (*repository.Trust, bool)
	MarkVerified(digest, policyID string, t *repository.Trust) error
}

// Repository checks every package another repository returns against a
// policy before anyone can load it. A package that fails is refused with
// the reason; falling through to the next repository would let a worse
// source win, so the failure is final.
type Repository struct {
	Inner  repository.Repository
	Policy *Policy
	Marks  Marks

	mu   sync.Mutex
	seen map[string]*repository.Trust // digest+policy → result
}

// Name of the inner repository.
func (r *Repository) Name() string { return r.Inner.Name() }

// Resolve resolves and verifies name@version.
func (r *Repository) Resolve(name, version string) (*repository.Package, error) {
	return r.ResolveContext(context.Background(), name, version)
}

// ResolveContext is Resolve with a context for the inner repository.
func (r *Repository) ResolveContext(ctx context.Context, name, version string) (*repository.Package, error) {
	p, err := repository.ResolveWith(ctx, r.Inner, name, version)
	if err != nil {
		return nil, err
	}
	t, err := r.check(p)
	if err != nil {
		return nil, repository.Mark(fmt.Errorf("package %s (%s) from repository %s refused: %w", p.Ref(), p.Digest, r.Name(), err), repository.ErrUntrusted)
	}
	out := p.Clone()
	out.Trust = t
	return out, nil
}

func (r *Repository) check(p *repository.Package) (*repository.Trust, error) {
	key := p.Digest + " " + r.Policy.ID()
	r.mu.Lock()
	t, ok := r.seen[key]
	r.mu.Unlock()
	if ok {
		return t, nil
	}
	if r.Marks != nil {
		if t, ok := r.Marks.Verified(p.Digest, r.Policy.ID()); ok {
			r.remember(key, t)
			return t, nil
		}
	}
	t, err := r.Policy.Check(p.Digest, p.Signatures)
	if err != nil {
		return nil, err
	}
	if r.Marks != nil {
		if err := r.Marks.MarkVerified(p.Digest, r.Policy.ID(), t); err != nil {
			return nil, err
		}
	}
	r.remember(key, t)
	return t, nil
}

func (r *Repository) remember(key string, t *repository.Trust) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]*repository.Trust{}
	}
	r.seen[key] = t
}

// List lists the inner repository's packages (unverified: listing loads
// nothing).
func (r *Repository) List() []*repository.Package { return r.Inner.List() }

// Offline stands in for r without the network (repository.Offliner):
// the inner repository's offline copy behind the same policy and marks.
func (r *Repository) Offline(pins map[string]string) repository.Repository {
	o, ok := r.Inner.(repository.Offliner)
	if !ok {
		return r
	}
	return &Repository{Inner: o.Offline(pins), Policy: r.Policy, Marks: r.Marks}
}
