package pkgsource

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/leaf-ebpf/leaf/internal/ocipkg"
	"github.com/leaf-ebpf/leaf/internal/pkgcache"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// TestOfflineFromCache resolves a signed package from an HTTP index,
// then takes the index away: the repository answers ErrUnavailable, and
// its offline stand-in serves the pinned package from the cache alone,
// with the trust it was verified with. A policy that never verified the
// package refuses it offline too: the cache stands in for the network,
// not for the trust check.
func TestOfflineFromCache(t *testing.T) {
	author, desc, pub, _ := signedIndex(t)
	srv := httptest.NewServer(http.FileServer(http.Dir(pub)))
	cache, _ := pkgcache.Open(t.TempDir())
	cfg := Config{Name: "web", Type: RepoHTTP, URL: srv.URL, Trust: TrustConfig{AuthorKeys: []string{author.pubFile}}}
	r, err := Open(cfg, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resolve("pktcount", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if _, err := r.Resolve("pktcount", "1.0.0"); !errors.Is(err, repository.ErrUnavailable) {
		t.Fatalf("with the index gone: %v, want ErrUnavailable", err)
	}

	pins := map[string]map[string]string{"web": {"pktcount@1.0.0": desc.Digest.String()}}
	off := repository.Set{r}.Offline(pins)
	p, err := off.Resolve("pktcount", "1.0.0")
	if err != nil {
		t.Fatalf("offline: %v", err)
	}
	if p.Digest != desc.Digest.String() || p.Repository != "web" || p.Trust == nil || p.Trust.Policy != repository.TrustSigned || len(p.Trust.Signers) != 1 {
		t.Fatalf("offline resolved %s from %s, trust %+v", p.Digest, p.Repository, p.Trust)
	}
	if _, _, err := p.LoadSpec("count_xdp"); err != nil {
		t.Fatalf("LoadSpec from the cache: %v", err)
	}
	if _, err := off.Resolve("pktcount", "2.0.0"); !errors.Is(err, repository.ErrNotFound) {
		t.Errorf("offline, a version not pinned: %v, want ErrNotFound", err)
	}

	other := newKey(t, "other")
	cfg.Trust = TrustConfig{AuthorKeys: []string{other.pubFile}}
	r2, err := Open(cfg, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (repository.Set{r2}).Offline(pins).Resolve("pktcount", "1.0.0"); !errors.Is(err, repository.ErrUntrusted) {
		t.Errorf("offline under a policy that never verified it: %v, want ErrUntrusted", err)
	}
}

// signedIndex publishes pktcount@1.0.0, signed by its author, as a
// static HTTP index in a directory.
func signedIndex(t *testing.T) (author key, desc ocispec.Descriptor, pub string, idx *Index) {
	t.Helper()
	author = newKey(t, "author")
	store, dir := layout(t)
	desc = push(t, store, pkgFiles(t, "pktcount", "1.0.0"), ocipkg.Ref("pktcount", "1.0.0"))
	sign(t, store, desc, author.signer, ocipkg.RoleAuthor)
	pub = t.TempDir()
	policy, _ := Policy("t", TrustConfig{AuthorKeys: []string{author.pubFile}})
	idx, err := Publish(ctx, dir, pub, policy, nil)
	if err != nil {
		t.Fatal(err)
	}
	return author, desc, pub, idx
}
