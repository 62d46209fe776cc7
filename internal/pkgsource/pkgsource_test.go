package pkgsource

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/leaf-ebpf/leaf/internal/archive"
	"github.com/leaf-ebpf/leaf/internal/ocipkg"
	"github.com/leaf-ebpf/leaf/internal/pkgcache"
	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/internal/testenv/registry"
)

func registryConfig(reg *registry.Registry, trust TrustConfig) Config {
	return Config{Name: "reg", Type: RepoRegistry, URL: reg.Host + "/leaf", CAFile: reg.CAFile, Username: reg.Username, PasswordFile: reg.PasswordFile, Trust: trust}
}

func remoteRepo(t *testing.T, reg *registry.Registry, name string) *Registry {
	t.Helper()
	r, err := NewRegistry(RegistryOptions{Base: reg.Host + "/leaf", CAFile: reg.CAFile, Username: reg.Username, Password: reg.Password})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRegistry pushes and signs a package in a real registry (TLS with a
// test CA, basic auth) and resolves it through the cache and trust.
func TestRegistry(t *testing.T) {
	reg := registry.Start(t)
	author := newKey(t, "author")
	repo, err := remoteRepo(t, reg, "portfilter").Repository("portfilter")
	if err != nil {
		t.Fatal(err)
	}
	desc := push(t, repo, pkgFiles(t, "portfilter", "1.0.0"), "1.0.0")
	sign(t, repo, desc, author.signer, ocipkg.RoleAuthor)

	cache, err := pkgcache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(registryConfig(reg, TrustConfig{AuthorKeys: []string{author.pubFile}}), cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Resolve("portfilter", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if p.Digest != desc.Digest.String() || p.Trust.Policy != repository.TrustSigned || len(p.Trust.Signers) != 1 || p.Trust.Signers[0].KeyID != author.signer.Public.ID || p.Trust.Signers[0].Role != "author" {
		t.Fatalf("resolved %s trust %+v; want %s signed by %s", p.Digest, p.Trust, desc.Digest, author.signer.Public.ID)
	}
	if _, _, err := p.LoadSpec("port_filter"); err != nil {
		t.Fatalf("LoadSpec: %v", err)
	}
	if _, err := r.Resolve("portfilter", "9.9.9"); !errors.Is(err, repository.ErrNotFound) {
		t.Errorf("missing version: %v, want ErrNotFound", err)
	}
	if got := r.List(); len(got) != 1 || got[0].Ref() != "portfilter@1.0.0" {
		t.Errorf("List = %v", got)
	}

	t.Run("wrong password", func(t *testing.T) {
		cfg := registryConfig(reg, TrustConfig{AuthorKeys: []string{author.pubFile}})
		bad := filepath.Join(t.TempDir(), "pw")
		os.WriteFile(bad, []byte("wrong"), 0o600)
		cfg.PasswordFile = bad
		r, err := Open(cfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Resolve("portfilter", "1.0.0"); err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("wrong password: %v, want a 401", err)
		}
	})
	t.Run("unknown CA", func(t *testing.T) {
		cfg := registryConfig(reg, TrustConfig{AuthorKeys: []string{author.pubFile}})
		cfg.CAFile = ""
		r, _ := Open(cfg, nil, nil)
		_, err := r.Resolve("portfilter", "1.0.0")
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("without the CA: %v, want a certificate error", err)
		}
		if errors.Is(err, repository.ErrUnavailable) {
			t.Errorf("a certificate refused is not a repository that is down: %v", err)
		}
	})
	t.Run("password file readable by others", func(t *testing.T) {
		cfg := registryConfig(reg, TrustConfig{AuthorKeys: []string{author.pubFile}})
		os.Chmod(cfg.PasswordFile, 0o644)
		defer os.Chmod(cfg.PasswordFile, 0o600)
		if _, err := Open(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "group or others read") {
			t.Errorf("got %v", err)
		}
	})
}

// TestTrustMatrix walks signatures present × policy.
func TestTrustMatrix(t *testing.T) {
	author, repoKey, stranger := newKey(t, "author"), newKey(t, "repo"), newKey(t, "stranger")
	store, dir := layout(t)
	versions := map[string][]key{
		"1.0.0": nil,
		"1.0.1": {author},
		"1.0.2": {repoKey},
		"1.0.3": {author, repoKey},
		"1.0.4": {stranger},
	}
	for v, signers := range versions {
		desc := push(t, store, pkgFiles(t, "portfilter", v), ocipkg.Ref("portfilter", v))
		for _, k := range signers {
			role := ocipkg.RoleAuthor
			if k == repoKey {
				role = ocipkg.RoleRepository
			}
			sign(t, store, desc, k.signer, role)
		}
	}
	a, r := []string{author.pubFile}, []string{repoKey.pubFile}
	policies := map[string]TrustConfig{
		"author":   {AuthorKeys: a},
		"repo":     {RepositoryKeys: r, Require: "repository"},
		"both":     {AuthorKeys: a, RepositoryKeys: r, Require: "both"},
		"unsigned": {AuthorKeys: a, AllowUnsigned: true},
	}
	want := map[string]map[string]bool{ // policy → version → accepted
		"author":   {"1.0.0": false, "1.0.1": true, "1.0.2": false, "1.0.3": true, "1.0.4": false},
		"repo":     {"1.0.0": false, "1.0.1": false, "1.0.2": true, "1.0.3": true, "1.0.4": false},
		"both":     {"1.0.0": false, "1.0.1": false, "1.0.2": false, "1.0.3": true, "1.0.4": false},
		"unsigned": {"1.0.0": true, "1.0.1": true, "1.0.2": true, "1.0.3": true, "1.0.4": true},
	}
	for pname, tc := range policies {
		repo, err := Open(Config{Name: pname, Path: dir, Trust: tc}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for v, ok := range want[pname] {
			p, err := repo.Resolve("portfilter", v)
			if ok != (err == nil) {
				t.Errorf("policy %s, portfilter@%s (signed by %d): accepted=%t, want %t (%v)", pname, v, len(versions[v]), err == nil, ok, err)
				continue
			}
			if err != nil && !strings.Contains(err.Error(), "refused: no trusted") && !strings.Contains(err.Error(), "refused: no signatures found") {
				t.Errorf("policy %s, %s: error does not say why: %v", pname, v, err)
			}
			if err == nil && pname == "unsigned" && v == "1.0.0" && p.Trust.Policy != repository.TrustUnsignedAllowed {
				t.Errorf("unsigned package recorded as %q", p.Trust.Policy)
			}
		}
	}
	if _, err := Open(Config{Path: dir}, nil, nil); err == nil || !strings.Contains(err.Error(), "names no author keys") {
		t.Errorf("a policy that can never be met: %v", err)
	}
	// Under a stranger's key the error names the signature's problem.
	repo, _ := Open(Config{Path: dir, Trust: TrustConfig{AuthorKeys: a}}, nil, nil)
	if _, err := repo.Resolve("portfilter", "1.0.4"); err == nil || !strings.Contains(err.Error(), "signed by none of the trusted keys") {
		t.Errorf("untrusted key: %v", err)
	}
}

// TestLyingRegistry: wrong bytes for a digest, a tag replayed to an
// older version, a digest pin the repository does not honour.
func TestLyingRegistry(t *testing.T) {
	reg := registry.Start(t)
	author := newKey(t, "author")
	repo, _ := remoteRepo(t, reg, "portfilter").Repository("portfilter")
	old := push(t, repo, pkgFiles(t, "portfilter", "1.0.0"), "1.0.0")
	sign(t, repo, old, author.signer, ocipkg.RoleAuthor)
	cur := push(t, repo, pkgFiles(t, "portfilter", "1.1.0"), "1.1.0")
	sign(t, repo, cur, author.signer, ocipkg.RoleAuthor)
	open := func() repository.Set {
		cache, _ := pkgcache.Open(t.TempDir())
		r, err := Open(registryConfig(reg, TrustConfig{AuthorKeys: []string{author.pubFile}}), cache, nil)
		if err != nil {
			t.Fatal(err)
		}
		return repository.Set{r}
	}
	if _, err := open().ResolveRequest(repository.Request{Name: "portfilter", Version: "1.1.0", Digest: cur.Digest.String()}); err != nil {
		t.Fatalf("honest registry: %v", err)
	}

	t.Run("tampered blob", func(t *testing.T) {
		reg.Tamper = func(path string, body []byte) []byte {
			if strings.Contains(path, "/blobs/") && len(body) > 1000 {
				body = bytes.Clone(body)
				body[len(body)/2] ^= 0xff
			}
			return body
		}
		defer func() { reg.Tamper = nil }()
		_, err := open().Resolve("portfilter", "1.1.0")
		if err == nil || !strings.Contains(err.Error(), "mismatch") {
			t.Errorf("tampered layer: %v, want a digest mismatch", err)
		}
	})
	t.Run("truncated blob", func(t *testing.T) {
		reg.Tamper = func(path string, body []byte) []byte {
			if strings.Contains(path, "/blobs/") && len(body) > 1000 {
				return body[:len(body)/2]
			}
			return body
		}
		defer func() { reg.Tamper = nil }()
		if _, err := open().Resolve("portfilter", "1.1.0"); err == nil {
			t.Errorf("truncated layer accepted")
		}
	})
	t.Run("replayed older version", func(t *testing.T) {
		// The registry now answers 1.1.0 with the (validly signed) 1.0.0.
		if err := repo.Tag(ctx, old, "1.1.0"); err != nil {
			t.Fatal(err)
		}
		defer repo.Tag(ctx, cur, "1.1.0")
		_, err := open().ResolveRequest(repository.Request{Name: "portfilter", Version: "1.1.0", Digest: cur.Digest.String()})
		if err == nil || !strings.Contains(err.Error(), "serves portfilter@1.0.0") {
			t.Errorf("replay: %v", err)
		}
	})
	t.Run("pinned digest", func(t *testing.T) {
		_, err := open().ResolveRequest(repository.Request{Name: "portfilter", Version: "1.1.0", Digest: old.Digest.String()})
		if err == nil || !strings.Contains(err.Error(), "pins "+old.Digest.String()) {
			t.Errorf("pin: %v", err)
		}
	})
}

// TestHTTPIndex publishes a layout as a static HTTP repository and reads
// it back, then serves a lying index.
func TestHTTPIndex(t *testing.T) {
	author, desc, pub, idx := signedIndex(t)
	if len(idx.Packages) != 1 || len(idx.Packages[0].Signers) != 1 || idx.Packages[0].Digest != desc.Digest.String() {
		t.Fatalf("index %+v", idx.Packages)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(pub)))
	defer srv.Close()
	cache, _ := pkgcache.Open(t.TempDir())
	r, err := Open(Config{Name: "web", Type: RepoHTTP, URL: srv.URL, Trust: TrustConfig{AuthorKeys: []string{author.pubFile}}}, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Resolve("pktcount", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if p.Digest != desc.Digest.String() || p.Trust.Policy != repository.TrustSigned {
		t.Fatalf("got %s %+v", p.Digest, p.Trust)
	}
	e := idx.Packages[0]
	if !e.Matches("packets") || !e.Matches("pktcount") || e.Matches("nothing-like-it") {
		t.Errorf("search matching is off for %+v", e)
	}

	// The index lies about the archive's digest.
	data, _ := os.ReadFile(filepath.Join(pub, IndexFile))
	os.WriteFile(filepath.Join(pub, IndexFile), bytes.Replace(data, []byte(e.ArchiveDigest), []byte("sha256:"+strings.Repeat("0", 64)), 1), 0o644)
	if _, err := r.Resolve("pktcount", "1.0.0"); err == nil || !strings.Contains(err.Error(), "the index says") {
		t.Errorf("lying index: %v", err)
	}
	// An index pointing elsewhere.
	os.WriteFile(filepath.Join(pub, IndexFile), bytes.Replace(data, []byte(`"archive": "`), []byte(`"archive": "http://elsewhere.example/`), 1), 0o644)
	if _, err := r.Resolve("pktcount", "1.0.0"); err == nil || !strings.Contains(err.Error(), "leaves") {
		t.Errorf("off-site archive: %v", err)
	}
}

// TestKFaaS reads an L3AF-style tree over HTTP, signature beside the
// artifact.
func TestKFaaS(t *testing.T) {
	author := newKey(t, "author")
	root := t.TempDir()
	files := pkgFiles(t, "execcount", "1.0.0")
	var buf bytes.Buffer
	if err := WriteKFaaS(&buf, "execcount", files); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "execcount", "1.0.0", "linux")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "execcount.tar.gz"), buf.Bytes(), 0o644)
	// What is signed is the package built from the artifact's files.
	mem := newMem()
	desc, _, err := ocipkg.BuildFiles(ctx, files, mem)
	if err != nil {
		t.Fatal(err)
	}
	b := sign(t, mem, desc, author.signer, ocipkg.RoleAuthor)
	os.WriteFile(filepath.Join(dir, "execcount.tar.gz.author.sigstore.json"), b, 0o644)

	srv := httptest.NewServer(http.FileServer(http.Dir(root)))
	defer srv.Close()
	for _, cfg := range []Config{
		{Name: "kfaas-http", Type: RepoKFaaS, URL: srv.URL, Platform: "linux", Trust: TrustConfig{AuthorKeys: []string{author.pubFile}}},
		{Name: "kfaas-dir", Type: RepoKFaaS, Path: root, Platform: "linux", Trust: TrustConfig{AuthorKeys: []string{author.pubFile}}},
	} {
		cache, _ := pkgcache.Open(t.TempDir())
		r, err := Open(cfg, cache, nil)
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.Resolve("execcount", "1.0.0")
		if err != nil {
			t.Fatalf("%s: %v", cfg.Name, err)
		}
		if p.Digest != desc.Digest.String() || len(p.Trust.Signers) != 1 {
			t.Errorf("%s: %s %+v", cfg.Name, p.Digest, p.Trust)
		}
	}
	// An artifact with a path escaping its directory is refused.
	evil := archive.Files{"execcount/leaf.yaml": files["leaf.yaml"], "execcount/../../etc/x": []byte("x")}
	var eb bytes.Buffer
	archive.WriteGzip(&eb, evil)
	os.WriteFile(filepath.Join(dir, "execcount.tar.gz"), eb.Bytes(), 0o644)
	r, _ := Open(Config{Name: "k", Type: RepoKFaaS, Path: root, Platform: "linux", Trust: TrustConfig{AuthorKeys: []string{author.pubFile}}}, nil, nil)
	if _, err := r.Resolve("execcount", "1.0.0"); err == nil || !strings.Contains(err.Error(), "leaves the archive") {
		t.Errorf("escaping artifact: %v", err)
	}
}

// TestCacheSharesFetches: concurrent resolutions of one digest download
// it once; a cached verification is reused until the policy changes;
// prune drops unused packages.
func TestCacheSharesFetches(t *testing.T) {
	reg := registry.Start(t)
	author, other := newKey(t, "author"), newKey(t, "other")
	repo, _ := remoteRepo(t, reg, "portfilter").Repository("portfilter")
	desc := push(t, repo, pkgFiles(t, "portfilter", "1.0.0"), "1.0.0")
	sign(t, repo, desc, author.signer, ocipkg.RoleAuthor)
	cache, err := pkgcache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r, _ := Open(registryConfig(reg, TrustConfig{AuthorKeys: []string{author.pubFile}}), cache, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.Resolve("portfilter", "1.0.0")
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := cache.Fetches(); n != 1 {
		t.Errorf("8 concurrent resolutions made %d downloads, want 1", n)
	}
	// A new policy (another key only) re-verifies, and refuses.
	r2, _ := Open(registryConfig(reg, TrustConfig{AuthorKeys: []string{other.pubFile}}), cache, nil)
	if _, err := r2.Resolve("portfilter", "1.0.0"); err == nil {
		t.Errorf("a verification under one policy was reused under another")
	}
	removed, err := cache.Prune(ctx, map[string]bool{})
	if err != nil || len(removed) != 1 || removed[0] != desc.Digest.String() {
		t.Errorf("prune: %v %v", removed, err)
	}
	if d, _ := cache.Digests(ctx); len(d) != 0 {
		t.Errorf("after prune the cache holds %v", d)
	}
}
