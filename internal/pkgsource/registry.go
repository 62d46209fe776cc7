package pkgsource

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/retry"

	"github.com/leaf-ebpf/leaf/internal/ocipkg"
	"github.com/leaf-ebpf/leaf/internal/secretfile"
)

// RegistryOptions says how to reach an OCI registry.
type RegistryOptions struct {
	// Base is "host[:port]/prefix": package NAME lives in the repository
	// Base/NAME, version V under the tag V.
	Base string
	// CAFile, if set, holds the only CAs trusted for the registry's
	// certificate (else the system pool).
	CAFile string
	// Username and Password authenticate (basic or token auth).
	Username, Password string
	// PlainHTTP talks HTTP instead of HTTPS (for a registry on loopback).
	PlainHTTP bool
}

// Registry is an OCI registry holding packages and their signatures.
type Registry struct {
	opts   RegistryOptions
	client *auth.Client
}

// NewRegistry makes a registry origin.
func NewRegistry(opts RegistryOptions) (*Registry, error) {
	if opts.Base == "" || strings.Contains(opts.Base, "://") {
		return nil, fmt.Errorf("registry %q: want host[:port]/prefix, without a scheme", opts.Base)
	}
	hc, err := HTTPClient(opts.CAFile)
	if err != nil {
		return nil, err
	}
	host, _, _ := strings.Cut(opts.Base, "/")
	c := &auth.Client{Client: hc, Cache: auth.NewCache(), Header: http.Header{"User-Agent": {"leaf"}}}
	if opts.Username != "" {
		c.Credential = auth.StaticCredential(host, auth.Credential{Username: opts.Username, Password: opts.Password})
	}
	return &Registry{opts: opts, client: c}, nil
}

// HTTPClient is the client every remote source uses: timeouts on each
// step so a stalled server cannot hang leafd, and, with caFile, only
// those CAs trusted.
func HTTPClient(caFile string) (*http.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		f, err := secretfile.Read(caFile, secretfile.Public)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(f.Data) {
			return nil, fmt.Errorf("CA file %s: no PEM certificates", caFile)
		}
		tlsCfg.RootCAs = pool
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
	}
	return &http.Client{Transport: retry.NewTransport(tr)}, nil
}

// Repository returns the remote repository holding package name.
func (r *Registry) Repository(name string) (*remote.Repository, error) {
	repo, err := remote.NewRepository(strings.TrimSuffix(r.opts.Base, "/") + "/" + name)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", r.opts.Base, err)
	}
	repo.Client = r.client
	repo.PlainHTTP = r.opts.PlainHTTP
	// Packages and signatures are image manifests; the index is the
	// referrers tag-schema fallback (sha256-<digest>) that registries
	// without the referrers API hold. Distribution 2.8 serves that index
	// only to clients that accept it, and answers others "manifest
	// unknown", which would read as "no signatures" and make the next
	// signature replace the index instead of extending it.
	repo.ManifestMediaTypes = []string{ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex}
	// Never trust a registry's idea of a manifest's size.
	repo.MaxMetadataBytes = ocipkg.MaxManifestSize
	// Leave the superseded fallback index in place rather than delete it:
	// signing then needs no delete permission, and works on registries
	// where deletes are off (distribution's default).
	repo.SkipReferrersGC = true
	return repo, nil
}

// Resolve resolves the tag version in Base/name.
func (r *Registry) Resolve(ctx context.Context, name, version string) (ocispec.Descriptor, content.ReadOnlyGraphStorage, error) {
	repo, err := r.Repository(name)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	desc, err := repo.Resolve(ctx, version)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	return desc, repo, nil
}

// Extra: a registry keeps signatures as referrers only.
func (r *Registry) Extra(context.Context, string, string) ([]ocipkg.Signature, error) {
	return nil, nil
}

// List walks the registry's catalog under Base (not every registry
// offers one; those list nothing here and publish an index instead).
func (r *Registry) List(ctx context.Context) ([]Listed, error) {
	host, prefix, _ := strings.Cut(r.opts.Base, "/")
	reg, err := remote.NewRegistry(host)
	if err != nil {
		return nil, err
	}
	reg.Client, reg.PlainHTTP = r.client, r.opts.PlainHTTP
	var out []Listed
	err = reg.Repositories(ctx, "", func(repos []string) error {
		for _, name := range repos {
			rest, ok := strings.CutPrefix(name, prefix+"/")
			if !ok || strings.Contains(rest, "/") {
				continue
			}
			listed, err := r.listRepo(ctx, rest)
			if err != nil {
				return err
			}
			out = append(out, listed...)
		}
		return nil
	})
	return out, err
}

func (r *Registry) listRepo(ctx context.Context, name string) ([]Listed, error) {
	repo, err := r.Repository(name)
	if err != nil {
		return nil, err
	}
	var out []Listed
	err = repo.Tags(ctx, "", func(tags []string) error {
		for _, t := range tags {
			if strings.HasPrefix(t, "sha256-") { // referrers tag schema
				continue
			}
			d, err := repo.Resolve(ctx, t)
			if err != nil {
				return err
			}
			if d.ArtifactType != "" && d.ArtifactType != ocipkg.ArtifactType {
				continue
			}
			out = append(out, Listed{Desc: d, Store: repo})
		}
		return nil
	})
	return out, err
}
