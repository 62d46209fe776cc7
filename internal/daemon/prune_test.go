package daemon

import (
	"context"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sort"
	"testing"

	"oras.land/oras-go/v2/content/memory"

	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/ocipkg"
	"github.com/leaf-ebpf/leaf/internal/pkgcache"
	"github.com/leaf-ebpf/leaf/internal/store"
	"github.com/leaf-ebpf/leaf/packages"
)

// TestPruneCacheKeepsJournaledPackages caches three packages: one an
// attachment runs, one the journaled apply names, one nothing uses.
// Pruning drops only the last, so an interrupted apply can still finish
// from the cache with every repository down.
func TestPruneCacheKeepsJournaledPackages(t *testing.T) {
	ctx := context.Background()
	src := memory.New()
	digests := map[string]string{}
	cache, err := pkgcache.Open(filepath.Join(t.TempDir(), "packages"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"portfilter", "pktcount", "execcount"} {
		sub, err := fs.Sub(packages.FS, name)
		if err != nil {
			t.Fatal(err)
		}
		desc, _, err := ocipkg.Build(ctx, sub, src)
		if err != nil {
			t.Fatal(err)
		}
		if err := cache.Fetch(ctx, src, desc); err != nil {
			t.Fatal(err)
		}
		digests[name] = desc.Digest.String()
	}
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Commit(desired.Empty(), map[string]*store.Record{"a": {Name: "a", Package: store.PackageRef{Name: "portfilter", Digest: digests["portfilter"]}}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Begin(store.Intent{Desired: desired.Empty(), Packages: []store.PackageRef{{Name: "pktcount", Digest: digests["pktcount"]}}}); err != nil {
		t.Fatal(err)
	}
	if err := PruneCache(ctx, cache, st, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	got, err := cache.Digests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{digests["portfilter"], digests["pktcount"]}
	sort.Strings(got)
	sort.Strings(want)
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("cache holds %v after pruning, want %v (execcount %s gone)", got, want, digests["execcount"])
	}
}
