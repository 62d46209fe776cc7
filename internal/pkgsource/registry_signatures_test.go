package pkgsource

import (
	"errors"
	"strings"
	"testing"

	"github.com/leaf-ebpf/leaf/internal/ocipkg"
	"github.com/leaf-ebpf/leaf/internal/pkgcache"
	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/internal/testenv/registry"
)

// TestRegistrySignaturesKept signs a package as its author, pushes it,
// countersigns it in the registry, and resolves it under a policy
// requiring both signatures, on a registry with the referrers API
// missing in two ways: distribution v3 in process, and Debian's
// distribution 2.8 binary, which serves the tag-schema fallback index
// only to clients that accept OCI indexes. Neither signature may erase
// the other, and re-attaching one adds nothing.
func TestRegistrySignaturesKept(t *testing.T) {
	for _, fl := range registry.Flavours {
		t.Run(fl.Name, func(t *testing.T) {
			reg := fl.Start(t)
			author, repoKey := newKey(t, "author"), newKey(t, "repo")
			repo, err := remoteRepo(t, reg, "portfilter").Repository("portfilter")
			if err != nil {
				t.Fatal(err)
			}
			desc := push(t, repo, pkgFiles(t, "portfilter", "1.0.0"), "1.0.0")
			sign(t, repo, desc, author.signer, ocipkg.RoleAuthor)
			// A second client, as a separate `leaf pkg sign` would be.
			repo2, _ := remoteRepo(t, reg, "portfilter").Repository("portfilter")
			b := sign(t, repo2, desc, repoKey.signer, ocipkg.RoleRepository)
			if _, err := ocipkg.AttachSignature(ctx, repo2, desc, b, ocipkg.RoleRepository); err != nil {
				t.Fatal(err)
			}

			sigs, err := ocipkg.Signatures(ctx, repo2, desc)
			if err != nil {
				t.Fatal(err)
			}
			roles := map[string]int{}
			for _, s := range sigs {
				roles[s.Role]++
			}
			if len(sigs) != 2 || roles[ocipkg.RoleAuthor] != 1 || roles[ocipkg.RoleRepository] != 1 {
				t.Fatalf("signatures in the registry: %v, want one author and one repository", roles)
			}
			cache, _ := pkgcache.Open(t.TempDir())
			r, err := Open(registryConfig(reg, TrustConfig{AuthorKeys: []string{author.pubFile}, RepositoryKeys: []string{repoKey.pubFile}, Require: "both"}), cache, nil)
			if err != nil {
				t.Fatal(err)
			}
			p, err := r.Resolve("portfilter", "1.0.0")
			if err != nil {
				t.Fatal(err)
			}
			if p.Trust.Policy != repository.TrustSigned || len(p.Trust.Signers) != 2 {
				t.Errorf("trust %+v, want signed by author and repository", p.Trust)
			}

			// An unsigned package is refused as unsigned, not as unreadable.
			push(t, repo, pkgFiles(t, "portfilter", "1.0.1"), "1.0.1")
			_, err = r.Resolve("portfilter", "1.0.1")
			if err == nil || !strings.Contains(err.Error(), "no signatures found") {
				t.Errorf("unsigned package: %v, want \"no signatures found\"", err)
			}
		})
	}
}

// TestRegistrySignaturesUnreadable: a referrers index the registry
// garbles is reported as unreadable signatures, not as an unsigned
// package.
func TestRegistrySignaturesUnreadable(t *testing.T) {
	reg := registry.Start(t)
	author := newKey(t, "author")
	repo, _ := remoteRepo(t, reg, "portfilter").Repository("portfilter")
	desc := push(t, repo, pkgFiles(t, "portfilter", "1.0.0"), "1.0.0")
	sign(t, repo, desc, author.signer, ocipkg.RoleAuthor)
	reg.Tamper = func(path string, body []byte) []byte {
		if strings.Contains(path, "/manifests/sha256-") {
			return []byte("{not json")
		}
		return body
	}
	r, err := Open(registryConfig(reg, TrustConfig{AuthorKeys: []string{author.pubFile}}), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Resolve("portfilter", "1.0.0")
	if !errors.Is(err, ocipkg.ErrSignaturesUnreadable) || strings.Contains(err.Error(), "no signatures found") || strings.Contains(err.Error(), "allowUnsigned") {
		t.Errorf("garbled referrers index: %v; want signatures unreadable", err)
	}
}
