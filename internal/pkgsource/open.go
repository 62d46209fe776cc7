package pkgsource

import (
	"fmt"
	"io/fs"
	"log/slog"
	"strings"

	"github.com/leaf-ebpf/leaf/internal/pkgcache"
	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/internal/secretfile"
	"github.com/leaf-ebpf/leaf/internal/signature"
	"github.com/leaf-ebpf/leaf/internal/trust"
)

// Open makes the trust-checked repository a configuration describes.
// Remote repositories keep what they download in cache.
func Open(cfg Config, cache *pkgcache.Cache, log *slog.Logger) (repository.Repository, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	policy, err := Policy(cfg.DisplayName(), cfg.Trust)
	if err != nil {
		return nil, err
	}
	inner, err := openInner(cfg, cache, log)
	if err != nil {
		return nil, err
	}
	var marks trust.Marks
	if cache != nil {
		marks = cache
	}
	return &trust.Repository{Inner: inner, Policy: policy, Marks: marks}, nil
}

// OpenBuiltin makes the repository of the packages compiled into leafd:
// trusted by construction, since they are part of the binary.
func OpenBuiltin(name string, fsys fs.FS) (repository.Repository, error) {
	l, err := repository.OpenFS(name, fsys)
	if err != nil {
		return nil, err
	}
	return &trust.Repository{Inner: l, Policy: &trust.Policy{Builtin: true}}, nil
}

func openInner(cfg Config, cache *pkgcache.Cache, log *slog.Logger) (repository.Repository, error) {
	name := cfg.DisplayName()
	var origin Origin
	switch cfg.Type {
	case "", RepoDir:
		if !IsLayout(cfg.Path) {
			l, err := repository.OpenDir(cfg.Path)
			if err != nil {
				return nil, err
			}
			if cfg.Name != "" {
				return renamed{l, cfg.Name}, nil
			}
			return l, nil
		}
		origin = &Layout{Dir: cfg.Path}
		cache = nil // already local and content-addressed
	case RepoRegistry:
		password, err := readSecret(cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("repository %s: %w", name, err)
		}
		origin, err = NewRegistry(RegistryOptions{Base: cfg.URL, CAFile: cfg.CAFile, Username: cfg.Username, Password: password, PlainHTTP: cfg.PlainHTTP})
		if err != nil {
			return nil, err
		}
	case RepoHTTP, RepoKFaaS:
		client, err := HTTPClient(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("repository %s: %w", name, err)
		}
		base := cfg.URL
		if base == "" {
			base = cfg.Path
		}
		if cfg.Type == RepoHTTP {
			origin = NewHTTPIndex(base, client)
		} else {
			if base, err = kfaasBase(&cfg); err != nil {
				return nil, fmt.Errorf("repository %s: %w", name, err)
			}
			k := NewKFaaS(base, cfg.Platform, cfg.Artifact, client)
			k.repo, k.hints = name, cfg.Hints
			origin = k
		}
	}
	r := New(name, origin, cache)
	r.Log = log
	return r, nil
}

// Policy loads a trust configuration's keys.
func Policy(repo string, tc TrustConfig) (*trust.Policy, error) {
	p := &trust.Policy{Require: tc.Require, AllowUnsigned: tc.AllowUnsigned}
	for _, f := range tc.AuthorKeys {
		k, err := signature.LoadPublicKey(f)
		if err != nil {
			return nil, fmt.Errorf("repository %s: author key: %w", repo, err)
		}
		p.AuthorKeys = append(p.AuthorKeys, k)
	}
	for _, f := range tc.RepositoryKeys {
		k, err := signature.LoadPublicKey(f)
		if err != nil {
			return nil, fmt.Errorf("repository %s: repository key: %w", repo, err)
		}
		p.RepositoryKeys = append(p.RepositoryKeys, k)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("repository %s: trust: %w", repo, err)
	}
	return p, nil
}

// readSecret reads a password file through secretfile (opened once,
// checked on the descriptor, readable by its owner only): secrets never
// live in the config itself.
func readSecret(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	f, err := secretfile.Read(path, secretfile.Private)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	return strings.TrimRight(string(f.Data), "\r\n"), nil
}

// renamed gives a directory repository its configured name.
type renamed struct {
	*repository.Local
	name string
}

func (r renamed) Name() string { return r.name }

func (r renamed) Resolve(name, version string) (*repository.Package, error) {
	p, err := r.Local.Resolve(name, version)
	if err != nil {
		return nil, err
	}
	c := p.Clone()
	c.Repository = r.name
	return c, nil
}

func (r renamed) List() []*repository.Package {
	var out []*repository.Package
	for _, p := range r.Local.List() {
		c := p.Clone()
		c.Repository = r.name
		out = append(out, c)
	}
	return out
}
