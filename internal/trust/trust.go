// Package trust decides whether a package may run: a policy per
// repository names the keys it trusts for author and repository
// signatures, which signatures are required, and whether unsigned
// packages are allowed (never by default).
package trust

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/leaf-ebpf/leaf/internal/ocipkg"
	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/internal/signature"
)

// Which signatures a policy requires.
const (
	RequireAuthor     = "author"
	RequireRepository = "repository"
	RequireBoth       = "both"
)

// Policy is one repository's trust policy.
type Policy struct {
	AuthorKeys     []*signature.PublicKey
	RepositoryKeys []*signature.PublicKey
	// Require is author (default), repository or both.
	Require string
	// AllowUnsigned accepts a package that does not meet Require; the
	// signatures that do verify are still recorded.
	AllowUnsigned bool
	// Builtin marks the packages compiled into leafd: the binary is the
	// root of trust, so they need no signature.
	Builtin bool
}

// Validate checks that the policy can ever be met.
func (p *Policy) Validate() error {
	switch p.Require {
	case "", RequireAuthor:
		if len(p.AuthorKeys) == 0 && !p.AllowUnsigned && !p.Builtin {
			return errors.New("requires an author signature but names no author keys (set authorKeys, or allowUnsigned)")
		}
	case RequireRepository:
		if len(p.RepositoryKeys) == 0 && !p.AllowUnsigned {
			return errors.New("requires a repository signature but names no repository keys")
		}
	case RequireBoth:
		if (len(p.AuthorKeys) == 0 || len(p.RepositoryKeys) == 0) && !p.AllowUnsigned {
			return errors.New("requires author and repository signatures: name keys for both")
		}
	default:
		return fmt.Errorf("require must be author, repository or both, got %q", p.Require)
	}
	return nil
}

func (p *Policy) require() string {
	if p.Require == "" {
		return RequireAuthor
	}
	return p.Require
}

// ID identifies the policy's content: a cached verification holds only
// for the policy it was made under.
func (p *Policy) ID() string {
	var parts []string
	for _, k := range p.AuthorKeys {
		parts = append(parts, "author="+k.ID)
	}
	for _, k := range p.RepositoryKeys {
		parts = append(parts, "repository="+k.ID)
	}
	sort.Strings(parts)
	parts = append(parts, "require="+p.require(), fmt.Sprintf("unsigned=%t builtin=%t", p.AllowUnsigned, p.Builtin))
	sum := sha256.Sum256([]byte(strings.Join(parts, "\n")))
	return hex.EncodeToString(sum[:8])
}

// Check verifies the signatures of the package whose digest is given and
// says whether the policy is met. The error names every problem found.
func (p *Policy) Check(digest string, sigs []ocipkg.Signature) (*repository.Trust, error) {
	if p.Builtin {
		return &repository.Trust{Policy: repository.TrustBuiltin}, nil
	}
	t := &repository.Trust{Policy: repository.TrustSigned}
	var problems []string
	for i, s := range sigs {
		signer, err := p.verifyOne(s, digest)
		if err != nil {
			problems = append(problems, fmt.Sprintf("signature %d (%s): %v", i+1, roleHint(s.Role), err))
			continue
		}
		t.Signers = append(t.Signers, signer...)
	}
	missing := p.missing(t.Signers)
	if len(missing) == 0 {
		return t, nil
	}
	if p.AllowUnsigned {
		t.Policy = repository.TrustUnsignedAllowed
		return t, nil
	}
	if len(sigs) == 0 {
		// Most often the signatures were lost on the way (pushed without
		// them, or to a registry that drops referrers), not never made.
		return nil, fmt.Errorf("no signatures found for %s: needs a trusted %s signature; sign it (leaf pkg sign) and push its signatures with it (leaf pkg push copies them; leaf pkg inspect lists them)", digest, strings.Join(missing, " and "))
	}
	msg := fmt.Sprintf("no trusted %s signature", strings.Join(missing, " or "))
	if len(problems) > 0 {
		msg += ": " + strings.Join(problems, "; ")
	}
	return nil, errors.New(msg)
}

// verifyOne finds which trusted keys made a signature. The role comes
// from the key, never from the annotation, which anyone can write.
func (p *Policy) verifyOne(s ocipkg.Signature, digest string) ([]repository.Signer, error) {
	var out []repository.Signer
	var firstErr error
	for _, set := range []struct {
		role string
		keys []*signature.PublicKey
	}{{ocipkg.RoleAuthor, p.AuthorKeys}, {ocipkg.RoleRepository, p.RepositoryKeys}} {
		if len(set.keys) == 0 {
			continue
		}
		k, err := signature.Verify(s.Bundle, digest, set.keys)
		if err != nil {
			if firstErr == nil || !errors.Is(err, signature.ErrUntrustedKey) {
				firstErr = err
			}
			continue
		}
		out = append(out, repository.Signer{Role: set.role, Key: k.Name, KeyID: k.ID})
	}
	if len(out) > 0 {
		return out, nil
	}
	if firstErr == nil {
		firstErr = signature.ErrUntrustedKey
	}
	return nil, firstErr
}

func (p *Policy) missing(signers []repository.Signer) []string {
	has := map[string]bool{}
	for _, s := range signers {
		has[s.Role] = true
	}
	var missing []string
	switch p.require() {
	case RequireAuthor:
		if !has[ocipkg.RoleAuthor] {
			missing = append(missing, ocipkg.RoleAuthor)
		}
	case RequireRepository:
		if !has[ocipkg.RoleRepository] {
			missing = append(missing, ocipkg.RoleRepository)
		}
	case RequireBoth:
		for _, r := range []string{ocipkg.RoleAuthor, ocipkg.RoleRepository} {
			if !has[r] {
				missing = append(missing, r)
			}
		}
		if len(missing) == 2 {
			return []string{"author and repository"}
		}
	}
	return missing
}

func roleHint(role string) string {
	if role == "" {
		return "no role given"
	}
	return "says " + role
}
