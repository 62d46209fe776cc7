package l3af

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/pkgsource"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// Engine is leaf's one way to change what runs: the reconciler.
type Engine interface {
	Desired() *desired.State
	// Modify takes the packages the change's attachments were built from,
	// resolved and verified already, so that they are not resolved again.
	Modify(ctx context.Context, change func(*desired.State) (*desired.State, error), known []*repository.Package, dryRun bool) (*v1.ApplyResult, error)
}

// Repo is a KFaaS repository leafd is configured with, that L3AF
// programs may name by its URL (ebpf_package_repo_url).
type Repo struct {
	Name string
	// URLs are the forms that name it: its URL, and for a directory also
	// its path and file:// URL.
	URLs []string
}

// Options configure the L3AF API.
type Options struct {
	// HostName is the host_name payloads must carry (l3afd refuses
	// programs for another host); default: the kernel's host name.
	HostName string
	// Netns is where the payloads' interfaces are (a name under
	// /var/run/netns or a path); default: leafd's own.
	Netns string
	// Repos are the KFaaS repositories, the first being the default
	// (l3afd's ebpf-repo-url).
	Repos []Repo
	// MapPin is where an attachment's map is pinned (leafd's bpffs
	// layout).
	MapPin func(attachment, mapName string) string
	// PollInterval and Intervals shape monitor_maps sampling (defaults
	// DefaultPollInterval, DefaultIntervals).
	PollInterval time.Duration
	Intervals    int
}

// Service serves l3afd's API over the reconciler.
type Service struct {
	opts   Options
	engine Engine
	repos  repository.Set
	// Hints are what the KFaaS repositories read to find L3AF artifacts.
	Hints *Catalog
	// mu serializes L3AF changes: each is built from the one before.
	mu  sync.Mutex
	mon monitor
}

// Errors the handlers map to status codes.
var (
	// ErrUnknownProgram: a delete names a program not configured.
	ErrUnknownProgram = errors.New("no such L3AF program")
	// ErrConflict: the L3AF configuration changed while the call was
	// admitted.
	ErrConflict = errors.New("L3AF configuration changed during the call; retry")
)

// New makes the service; hints must be the catalog the KFaaS
// repositories were opened with.
func New(opts Options, engine Engine, repos repository.Set, hints *Catalog) *Service {
	if opts.HostName == "" {
		opts.HostName, _ = os.Hostname()
	}
	return &Service{opts: opts, engine: engine, repos: repos, Hints: hints}
}

// Load reads the hints of the stored L3AF configuration, so that the
// start-up reconcile finds its packages. Call it before that reconcile.
func (s *Service) Load() error { return s.Learn(s.engine.Desired()) }

// Learn adds the package hints of the L3AF configuration a desired-state
// document carries (one applied at start or through PUT /v1/state, such
// as `leaf l3af import` writes), so that its packages resolve.
func (s *Service) Learn(st *desired.State) error {
	cfg, err := configOf(st)
	if err != nil || len(cfg) == 0 {
		return err
	}
	hints, _, err := s.hints(cfg)
	if err != nil {
		return err
	}
	s.Hints.Add(hints)
	return nil
}

// HostName is the host_name payloads carry.
func (s *Service) HostName() string { return s.opts.HostName }

// Config returns the applied L3AF configuration: every interface, or
// only iface when set.
func (s *Service) Config(iface string) (Config, error) {
	cfg, err := configOf(s.engine.Desired())
	if err != nil {
		return nil, err
	}
	if iface == "" {
		return cfg.sorted(), nil
	}
	for _, h := range cfg.sorted() {
		if h.Iface == iface {
			return Config{h}, nil
		}
	}
	return nil, nil
}

// Result is what a change did, with notes on what leaf does differently.
type Result struct {
	*v1.ApplyResult
	Notes []string `json:"notes,omitempty"`
}

// Add adds or updates the given programs, keeping the others (l3afd's
// add).
func (s *Service) Add(ctx context.Context, payload Config, dryRun bool) (*Result, error) {
	if err := s.check(payload); err != nil {
		return nil, err
	}
	return s.change(ctx, dryRun, func(cur Config) (Config, error) { return merge(cur, payload), nil })
}

// Update makes the payload the whole L3AF configuration (l3afd's update,
// which stops what the payload leaves out).
func (s *Service) Update(ctx context.Context, payload Config, dryRun bool) (*Result, error) {
	if err := s.check(payload); err != nil {
		return nil, err
	}
	return s.change(ctx, dryRun, func(Config) (Config, error) { return merge(nil, payload), nil })
}

// Delete removes the named programs (l3afd's delete).
func (s *Service) Delete(ctx context.Context, payload []Names, dryRun bool) (*Result, error) {
	for _, n := range payload {
		if err := s.checkHost(n.HostName, n.Iface); err != nil {
			return nil, err
		}
	}
	return s.change(ctx, dryRun, func(cur Config) (Config, error) { return remove(cur, payload) })
}

// change admits the next configuration (packages resolved, fetched and
// verified, parameters typed), then applies it in one step through the
// reconciler: every chain changes atomically, whatever the order of
// seq_ids.
func (s *Service) change(ctx context.Context, dryRun bool, next func(Config) (Config, error)) (*Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	base := s.engine.Desired()
	cur, err := configOf(base)
	if err != nil {
		return nil, err
	}
	work, _ := configOf(base) // next may change it; cur stays what was applied
	cfg, err := next(work)
	if err != nil {
		return nil, err
	}
	cfg = cfg.sorted()
	hints, notes, err := s.hints(cfg)
	if err != nil {
		return nil, err
	}
	// The repositories read the new hints from here on; put the old ones
	// back if the change does not apply.
	old := s.Hints.Replace(hints)
	atts, pkgs, err := s.admit(ctx, cfg)
	if err == nil {
		var res *v1.ApplyResult
		res, err = s.engine.Modify(ctx, func(st *desired.State) (*desired.State, error) {
			if st.Metadata.Annotations[Annotation] != base.Metadata.Annotations[Annotation] {
				return nil, ErrConflict
			}
			return withL3AF(st, cur, cfg, atts)
		}, pkgs, dryRun)
		if err == nil {
			if dryRun {
				s.Hints.Replace(old)
			} else {
				notes = append(notes, s.ensureMonitorKeys(cfg)...)
				s.counted(cur, cfg, res)
			}
			return &Result{ApplyResult: res, Notes: notes}, nil
		}
	}
	s.Hints.Replace(old)
	return nil, err
}

// withL3AF is st with the attachments of configuration cur replaced by
// atts, and cfg recorded.
func withL3AF(st *desired.State, cur, cfg Config, atts []desired.Attachment) (*desired.State, error) {
	owned := map[string]bool{}
	for _, e := range cur.entries() {
		owned[AttachmentName(e.iface, e.hook, e.prog.Name)] = true
	}
	var errs desired.Errors
	kept := st.Spec.Attachments[:0]
	for _, a := range st.Spec.Attachments {
		if !owned[a.Name] {
			kept = append(kept, a)
		}
	}
	for _, a := range atts {
		if st.Attachment(a.Name) != nil && !owned[a.Name] {
			errs = append(errs, desired.Error{Attachment: a.Name, Message: "an attachment of this name exists and was not made by the L3AF API"})
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	st.Spec.Attachments = append(kept, atts...)
	if st.APIVersion == "" {
		st.APIVersion, st.Kind = desired.APIVersion, desired.Kind
	}
	if st.Metadata.Annotations == nil {
		st.Metadata.Annotations = map[string]string{}
	}
	if enc := cfg.encode(); enc != "" {
		st.Metadata.Annotations[Annotation] = enc
	} else {
		delete(st.Metadata.Annotations, Annotation)
	}
	return st, nil
}

// admit resolves every enabled program's package (fetching and verifying
// it; the hints must be in place) and builds its attachment. It returns
// the packages too, for the reconciler's admission to take as they are.
func (s *Service) admit(ctx context.Context, cfg Config) ([]desired.Attachment, []*repository.Package, error) {
	var out []desired.Attachment
	var pkgs []*repository.Package
	var errs desired.Errors
	for _, e := range cfg.entries() {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if skip(e.prog) {
			continue
		}
		label := e.label()
		t, err := s.target(e.prog)
		if err != nil {
			errs = append(errs, desired.Error{Attachment: label, Field: "ebpf_package_repo_url", Message: err.Error()})
			continue
		}
		pkg, err := s.repos.ResolveRequestContext(ctx, repository.Request{Name: t.name, Version: t.version, Repository: t.repo})
		if err != nil {
			errs = append(errs, desired.Error{Attachment: label, Field: "artifact", Message: err.Error(), Kind: repository.ErrorKind(err), Err: err})
			continue
		}
		a, err := attachment(e, t, pkg, s.opts.Netns)
		if err != nil {
			errs = append(errs, desired.Error{Attachment: label, Field: "map_args", Message: err.Error()})
			continue
		}
		out = append(out, a)
		pkgs = append(pkgs, pkg)
	}
	return out, pkgs, errs.Err()
}

func (e entry) label() string { return fmt.Sprintf("l3af %s/%s/%s", e.iface, e.hook, e.prog.Name) }

// skip: programs that are configured but run nothing in leaf.
func skip(p *Program) bool { return p.AdminStatus == "disabled" || Roots[p.Name] }

// target is the repository, package and version of a program.
func (s *Service) target(p *Program) (target, error) {
	name, err := PackageName(p.Name)
	if err != nil {
		return target{}, err
	}
	version, err := PackageVersion(p.Version)
	if err != nil {
		return target{}, err
	}
	repo, err := s.repoFor(p.EPRURL)
	if err != nil {
		return target{}, err
	}
	return target{repo: repo, name: name, version: version}, nil
}

// repoFor is the configured KFaaS repository a program names: leaf
// downloads only from repositories the operator configured, each with
// its trust policy.
func (s *Service) repoFor(url string) (string, error) {
	if len(s.opts.Repos) == 0 {
		return "", errors.New("leafd has no kfaas repository configured; add one (type: kfaas) to leafd's repositories")
	}
	if url == "" {
		return s.opts.Repos[0].Name, nil
	}
	norm := normURL(url)
	var known []string
	for _, r := range s.opts.Repos {
		for _, u := range r.URLs {
			if normURL(u) == norm {
				return r.Name, nil
			}
		}
		known = append(known, r.URLs...)
	}
	sort.Strings(known)
	return "", fmt.Errorf("%s is not a configured kfaas repository (configured: %v); leaf downloads only from repositories with a trust policy", url, known)
}

// hints are the package hints of cfg, and notes on what leaf does not
// run. Two programs of one package version must describe it alike; the
// maps they configure add up.
func (s *Service) hints(cfg Config) (map[hintKey]pkgsource.KFaaSHint, []string, error) {
	out := map[hintKey]pkgsource.KFaaSHint{}
	var notes []string
	var errs desired.Errors
	for _, e := range cfg.entries() {
		if Roots[e.prog.Name] {
			notes = append(notes, fmt.Sprintf("%s: accepted and not loaded: leaf chains the programs of a hook itself, without a root program", e.label()))
			continue
		}
		if e.prog.AdminStatus == "disabled" {
			notes = append(notes, fmt.Sprintf("%s: admin_status disabled: kept in the configuration, not running", e.label()))
			continue
		}
		if e.prog.CmdStart != "" && !e.prog.UserProgramDaemon {
			notes = append(notes, fmt.Sprintf("%s: cmd_start %s is not run: leaf runs user programs as daemons (user_program_daemon: true) only", e.label(), e.prog.CmdStart))
		}
		t, err := s.target(e.prog)
		if err != nil {
			errs = append(errs, desired.Error{Attachment: e.label(), Field: "name", Message: err.Error()})
			continue
		}
		k := hintKey{t.repo, t.name, t.version}
		h := hintFor(e.prog)
		if prev, ok := out[k]; ok {
			if !sameHint(prev, h) {
				errs = append(errs, desired.Error{Attachment: e.label(), Message: fmt.Sprintf("describes %s@%s unlike another program of the same name and version (artifact, object_file, entry_function_name, prog_type, map_name and cmd_start must agree)", t.name, e.prog.Version)})
				continue
			}
			h.Maps = union(prev.Maps, h.Maps)
		}
		out[k] = h
	}
	return out, notes, errs.Err()
}

func union(a, b []string) []string {
	set := map[string]bool{}
	for _, s := range append(append([]string{}, a...), b...) {
		set[s] = true
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Catalog holds the package hints of the applied L3AF configuration for
// the KFaaS repositories.
type Catalog struct {
	mu    sync.RWMutex
	hints map[hintKey]pkgsource.KFaaSHint
}

// KFaaSHint implements pkgsource.KFaaSHints.
func (c *Catalog) KFaaSHint(repo, name, version string) (pkgsource.KFaaSHint, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	h, ok := c.hints[hintKey{repo, name, version}]
	return h, ok
}

// Add adds hints, replacing those of the same packages.
func (c *Catalog) Add(h map[hintKey]pkgsource.KFaaSHint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := map[hintKey]pkgsource.KFaaSHint{}
	for k, v := range c.hints {
		next[k] = v
	}
	for k, v := range h {
		next[k] = v
	}
	c.hints = next
}

// Replace sets the hints and returns the previous ones.
func (c *Catalog) Replace(h map[hintKey]pkgsource.KFaaSHint) map[hintKey]pkgsource.KFaaSHint {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.hints
	c.hints = h
	return old
}
