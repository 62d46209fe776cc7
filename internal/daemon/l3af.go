package daemon

import (
	"net/url"
	"time"

	"github.com/leaf-ebpf/leaf/internal/bpffs"
	"github.com/leaf-ebpf/leaf/internal/config"
	"github.com/leaf-ebpf/leaf/internal/l3af"
	"github.com/leaf-ebpf/leaf/internal/pkgsource"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// withL3AFHints gives every kfaas repository the L3AF API's package
// hints (artifact names, version path segments, objects) and lists them
// for the API, by the URLs payloads may name them with.
func withL3AFHints(cfg *config.Config, hints *l3af.Catalog) []l3af.Repo {
	var out []l3af.Repo
	for i := range cfg.Repositories {
		rc := &cfg.Repositories[i]
		if rc.Type != pkgsource.RepoKFaaS {
			continue
		}
		rc.Hints = hints
		r := l3af.Repo{Name: rc.DisplayName()}
		if rc.URL != "" {
			r.URLs = append(r.URLs, rc.URL)
		}
		if rc.Path != "" {
			r.URLs = append(r.URLs, rc.Path, (&url.URL{Scheme: "file", Path: rc.Path}).String())
		}
		out = append(out, r)
	}
	return out
}

// newL3AF makes the L3AF API over the reconciler and reads the hints of
// the stored L3AF configuration, before the start-up reconcile needs
// them.
func newL3AF(cfg config.Config, repos []l3af.Repo, engine l3af.Engine, set repository.Set, hints *l3af.Catalog) (*l3af.Service, error) {
	svc := l3af.New(l3af.Options{
		HostName: cfg.L3AF.HostName, Netns: cfg.L3AF.Netns, Repos: repos,
		MapPin: bpffs.Layout{Root: cfg.BPFFS}.Map, PollInterval: time.Duration(cfg.L3AF.PollInterval), Intervals: cfg.L3AF.Samples,
	}, engine, set, hints)
	return svc, svc.Load()
}
