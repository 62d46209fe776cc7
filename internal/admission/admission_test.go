package admission

import (
	"context"
	"errors"
	"testing"

	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// countingRepo serves one package and counts how often it is asked.
type countingRepo struct {
	name  string
	pkg   *repository.Package
	asked int
}

func (c *countingRepo) Name() string { return c.name }

func (c *countingRepo) Resolve(name, version string) (*repository.Package, error) {
	c.asked++
	if c.pkg != nil && c.pkg.Ref() == name+"@"+version {
		return c.pkg, nil
	}
	return nil, repository.ErrNotFound
}

func (c *countingRepo) List() []*repository.Package { return nil }

func pkgOf(name, repo string) *repository.Package {
	p := repository.NewPackage(&manifest.Manifest{Name: name, Version: "1.0.0"}, "sha256:"+name, repo, nil, nil)
	return p
}

// TestPreferring: a package the caller resolved already is answered
// without asking its repository again, only from the repository it came
// from; everything else is the repository's to answer.
func TestPreferring(t *testing.T) {
	known := pkgOf("known", "kfaas")
	kfaas := &countingRepo{name: "kfaas", pkg: pkgOf("other", "kfaas")}
	local := &countingRepo{name: "local"}
	set := Preferring([]*repository.Package{known}, repository.Set{local, kfaas})
	ctx := context.Background()

	got, err := set.ResolveRequestContext(ctx, repository.Request{Name: "known", Version: "1.0.0", Repository: "kfaas"})
	if err != nil || got != known {
		t.Fatalf("known package: %v, %v", got, err)
	}
	if kfaas.asked != 0 {
		t.Errorf("the repository was asked %d times for a package the caller resolved", kfaas.asked)
	}
	if got, err := set.ResolveRequestContext(ctx, repository.Request{Name: "other", Version: "1.0.0"}); err != nil || got != kfaas.pkg || kfaas.asked != 1 {
		t.Errorf("another package: %v, %v (repository asked %d times)", got, err, kfaas.asked)
	}
	if _, err := set.ResolveRequestContext(ctx, repository.Request{Name: "known", Version: "1.0.0", Repository: "local"}); !errors.Is(err, repository.ErrNotFound) {
		t.Errorf("the known package from another repository: %v, want not found", err)
	}
	if Preferring(nil, repository.Set{local})[0] != local {
		t.Error("with nothing known, the repositories are not the same")
	}
}
