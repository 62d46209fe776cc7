package l3af

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/pkgsource"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// INI is a parsed l3afd.cfg: section → key → value.
type INI map[string]map[string]string

// Limits on what an import reads.
const (
	maxCfgSize = 1 << 20
	// MaxConfigStore bounds l3af-config.json.
	MaxConfigStore = 16 << 20
)

// ParseINI reads l3afd.cfg (Python configparser syntax as l3afd uses it:
// [section], "key: value" or "key = value", # and ; comments). A section
// given twice adds up.
func ParseINI(data []byte) (INI, error) {
	if len(data) > maxCfgSize {
		return nil, fmt.Errorf("l3afd.cfg: more than %d bytes", maxCfgSize)
	}
	out := INI{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("l3afd.cfg line %d: %q is not a [section]", n, line)
			}
			section = strings.TrimSpace(line[1 : len(line)-1])
			if out[section] == nil {
				out[section] = map[string]string{}
			}
			continue
		}
		i := strings.IndexAny(line, ":=")
		if i < 0 || section == "" {
			return nil, fmt.Errorf("l3afd.cfg line %d: %q is not key: value inside a section", n, line)
		}
		out[section][strings.TrimSpace(line[:i])] = strings.TrimSpace(line[i+1:])
	}
	return out, sc.Err()
}

// Migration is what `leaf l3af import` writes and reports.
type Migration struct {
	// Daemon is leafd's configuration document.
	Daemon map[string]any
	// State is leaf's desired state, the L3AF configuration in it.
	State *desired.State
	// Report lists what was carried over differently or not at all.
	Report []string
}

// MigrateOptions shape an import.
type MigrateOptions struct {
	// StatePath is where the desired state will be written (leafd's
	// config names it).
	StatePath string
	// Netns holds the interfaces (leafd's l3af.netns); default leafd's.
	Netns string
}

// repoName is the name the import gives l3afd's repository.
const repoName = "l3af"

// Migrate turns an l3afd configuration and its persisted programs into
// leafd's configuration and desired state. The programs' packages are
// resolved from l3afd's repository as leafd will resolve them, so that
// the state pins their digests and types their map_args.
func Migrate(ctx context.Context, ini INI, store Config, opts MigrateOptions) (*Migration, error) {
	m := &Migration{Daemon: map[string]any{"apiVersion": "leaf.dev/v1alpha1", "kind": "DaemonConfig"}}
	used := map[string]bool{}
	get := func(section, key string) string {
		used[section+"\x00"+key] = true
		return ini[section][key]
	}
	note := func(format string, args ...any) { m.Report = append(m.Report, fmt.Sprintf(format, args...)) }

	url := get("ebpf-repo", "url")
	if url == "" {
		return nil, fmt.Errorf("l3afd.cfg: [ebpf-repo] url is required")
	}
	m.Daemon["repositories"] = []map[string]any{{"name": repoName, "type": pkgsource.RepoKFaaS, "url": url, "trust": map[string]any{"allowUnsigned": true}}}
	note("[ebpf-repo] url → repository %q (kfaas): unsigned packages allowed, as l3afd never verified artifacts; add trust.authorKeys to require signatures", repoName)
	if a := get("web", "metrics-addr"); a != "" {
		m.Daemon["metricsAddress"] = a
	}
	l3 := map[string]any{}
	if v := get("web", "ebpf-poll-interval"); v != "" {
		l3["pollInterval"] = v
	}
	if v := get("web", "n-metric-samples"); v != "" {
		var n int
		if _, err := fmt.Sscan(v, &n); err != nil {
			return nil, fmt.Errorf("l3afd.cfg: [web] n-metric-samples %q: %w", v, err)
		}
		l3["samples"] = n
	}
	if opts.Netns != "" {
		l3["netns"] = opts.Netns
	}
	host := ""
	for _, h := range store {
		host = h.HostName
	}
	if host != "" {
		l3["hostName"] = host
	}
	m.Daemon["l3af"] = l3
	if opts.StatePath != "" {
		m.Daemon["desiredState"] = opts.StatePath
	}
	migrateTLS(m, get, note)
	for _, s := range []string{"xdp-root", "tc-root"} {
		for k := range ini[s] {
			used[s+"\x00"+k] = true
		}
		if ini[s] != nil {
			note("[%s]: not needed: leaf chains the programs of a hook without a root program", s)
		}
	}
	for _, k := range []string{"shutdown-timeout", "max-ebpf-restart-count", "bpf-chaining-enabled"} {
		if get("l3afd", k) != "" {
			note("[l3afd] %s: not needed: leaf always chains, keeps programs attached when it stops, and repairs them from the kernel", k)
		}
	}
	if ini["graceful-restart"] != nil {
		for k := range ini["graceful-restart"] {
			used["graceful-restart\x00"+k] = true
		}
		note("[graceful-restart]: not needed: leafd restarts and upgrades without detaching anything")
	}
	for _, s := range sortedKeys(ini) {
		for _, k := range sortedKeys(ini[s]) {
			if !used[s+"\x00"+k] {
				note("[%s] %s: not carried over", s, k)
			}
		}
	}
	st, err := migrateState(ctx, url, host, opts.Netns, store)
	if err != nil {
		return nil, err
	}
	m.State = st
	return m, nil
}

// migrateTLS carries l3afd's mTLS listener over to leafd's TLS listener.
func migrateTLS(m *Migration, get func(string, string) string, note func(string, ...any)) {
	addr := get("l3af-configs", "restapi-addr")
	if get("mtls", "enabled") != "true" {
		if addr != "" {
			note("[l3af-configs] restapi-addr %s: not carried over: l3afd served its API there without TLS; leafd serves it on its unix socket, and on TCP only with TLS and client certificates (tls: in leafd's config)", addr)
		}
		return
	}
	dir := get("mtls", "cert-dir")
	tls := map[string]any{
		"address":      addr,
		"certFile":     path.Join(dir, get("mtls", "server-crt-filename")),
		"keyFile":      path.Join(dir, get("mtls", "server-key-filename")),
		"clientCAFile": path.Join(dir, get("mtls", "cacert-filename")),
	}
	if v := get("mtls", "min-tls-version"); v == "TLS_1_2" {
		tls["minVersion"] = "1.2"
	}
	var subjects []map[string]any
	for _, r := range strings.Split(get("mtls", "san-match-rules"), ",") {
		if r = strings.TrimSpace(r); r != "" {
			subjects = append(subjects, map[string]any{"regex": r, "role": "admin"})
		}
	}
	if len(subjects) > 0 {
		tls["subjects"] = subjects
		note("[mtls] san-match-rules → tls.subjects as admin: leaf matches each pattern against the whole SAN (l3afd matched anywhere in it), and l3afd had no read-only role")
	} else {
		tls["anyCertRole"] = "admin"
	}
	if d := get("mtls", "cert-expiry-warning-days"); d != "" {
		note("[mtls] cert-expiry-warning-days %s: set certWarningWindow (e.g. %sd as hours) in leafd's config", d, d)
	}
	m.Daemon["tls"] = tls
}

// migrateState builds the desired state of the stored programs, resolving
// their packages from url.
func migrateState(ctx context.Context, url, host, netns string, store Config) (*desired.State, error) {
	hints := &Catalog{}
	r, err := pkgsource.Open(pkgsource.Config{Name: repoName, Type: pkgsource.RepoKFaaS, URL: url, Trust: pkgsource.TrustConfig{AllowUnsigned: true}, Hints: hints}, nil, nil)
	if err != nil {
		return nil, err
	}
	s := New(Options{HostName: host, Netns: netns, Repos: []Repo{{Name: repoName, URLs: []string{url}}}}, nil, repository.Set{r}, hints)
	if err := s.check(store); err != nil {
		return nil, fmt.Errorf("l3af-config.json: %w", err)
	}
	cfg := merge(nil, store).sorted()
	h, _, err := s.hints(cfg)
	if err != nil {
		return nil, fmt.Errorf("l3af-config.json: %w", err)
	}
	hints.Replace(h)
	atts, _, err := s.admit(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("l3af-config.json: %w", err)
	}
	return withL3AF(desired.Empty(), nil, cfg, atts)
}

// ParseStore reads l3afd's persisted l3af-config.json.
func ParseStore(data []byte) (Config, error) {
	if len(data) > MaxConfigStore {
		return nil, fmt.Errorf("l3af-config.json: more than %d bytes", MaxConfigStore)
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("l3af-config.json: %w", err)
	}
	return c, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
