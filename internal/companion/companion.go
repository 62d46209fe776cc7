// Package companion runs packages' user-space companions (L3AF's "user
// programs") beside the attachments that ask for them: one process per
// attachment, started with the desired state's arguments and handed the
// attachment's maps, its output in leafd's log, restarted with
// exponential backoff when it dies, stopped when the attachment goes.
//
// A companion runs with the least privilege the manifest allows: never as
// root (uid and gid 65534 unless declared), with only the declared
// capabilities (ambient, everything else dropped), in its own cgroup v2
// with the declared memory and CPU limits.
package companion

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/bpffs"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/internal/store"
)

// Spec is a companion that should run.
type Spec struct {
	Attachment string
	Package    *repository.Package
	Args       []string
}

// key changes when the companion must be restarted: another package
// content or other arguments.
func (s Spec) key() string { return s.Package.Digest + "\x00" + strings.Join(s.Args, "\x00") }

// Specs lists the companions the desired state asks for: attachments with
// a companion block that leaf applied, from the package version their
// record pins.
func Specs(st *desired.State, records map[string]*store.Record, repos repository.Set) []Spec {
	var out []Spec
	for _, a := range st.Spec.Attachments {
		rec := records[a.Name]
		if a.Companion == nil || rec == nil {
			continue
		}
		pkg, err := repos.Resolve(rec.Package.Name, rec.Package.Version)
		if err != nil || pkg.Digest != rec.Package.Digest || pkg.Manifest.Companion == nil {
			continue
		}
		out = append(out, Spec{Attachment: a.Name, Package: pkg, Args: a.Companion.Args})
	}
	return out
}

// Config configures a Manager.
type Config struct {
	// Dir is where executables are unpacked; every directory up to it
	// must be searchable by the companions' users.
	Dir    string
	Layout bpffs.Layout
	Logger *slog.Logger
	// Event receives starts, exits, restarts and stops.
	Event func(v1.Event)
	// MinBackoff and MaxBackoff bound the pause before a restart.
	MinBackoff, MaxBackoff time.Duration
	// Cgroup is this leafd's subtree under the cgroup2 mount
	// ("leaf-NAME"), the only place its companions' cgroups go and the
	// only one it sweeps; default CgroupName of "/var/lib/leaf".
	Cgroup string
}

// Manager runs the companions.
type Manager struct {
	cfg     Config
	cgroups cgroupRoots
	cgErr   error

	mu      sync.Mutex
	running map[string]*runner
	wg      sync.WaitGroup
}

// New returns a manager; nothing runs until Sync.
func New(cfg Config) *Manager {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Event == nil {
		cfg.Event = func(v1.Event) {}
	}
	if cfg.Cgroup == "" {
		cfg.Cgroup = CgroupName("/var/lib/leaf")
	}
	m := &Manager{cfg: cfg, running: map[string]*runner{}}
	sealInheritedFiles()
	m.cgroups, m.cgErr = findCgroups()
	if m.cgErr == nil {
		m.cgErr = checkCgroupName(cfg.Cgroup)
	}
	m.cgroups.sub = cfg.Cgroup
	if m.cgErr == nil {
		m.cgroups.removeLeftovers()
	}
	return m
}

// Sync makes exactly the given companions run: it starts new ones,
// restarts changed ones and stops the rest. It does not wait for stops.
func (m *Manager) Sync(specs []Spec) {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[string]Spec{}
	for _, s := range specs {
		want[s.Attachment] = s
	}
	for name, r := range m.running {
		if s, ok := want[name]; !ok || s.key() != r.spec.key() {
			r.stop()
			delete(m.running, name)
		}
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, ok := m.running[name]; ok {
			continue
		}
		r := &runner{m: m, spec: want[name], quit: make(chan struct{}), log: m.cfg.Logger.With("attachment", name, "companion", want[name].Package.Manifest.Companion.Path)}
		m.running[name] = r
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			r.run()
		}()
	}
}

// Status reports the companion of an attachment, or nil when it has none.
func (m *Manager) Status(attachment string) *v1.CompanionStatus {
	m.mu.Lock()
	r := m.running[attachment]
	m.mu.Unlock()
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.status
	if st.State == "" {
		st.State = v1.CompanionStarting
	}
	return &st
}

// Close stops every companion and waits until they are gone.
func (m *Manager) Close() {
	m.Sync(nil)
	m.wg.Wait()
}

// executable unpacks the companion from its package, content-addressed
// by the package digest, and returns its path. Existing files are checked
// byte for byte, so a tampered copy is replaced.
func (m *Manager) executable(s Spec) (string, error) {
	c := s.Package.Manifest.Companion
	data, err := s.Package.ReadFile(c.Path)
	if err != nil {
		return "", fmt.Errorf("read companion %s: %w", c.Path, err)
	}
	sum := sha256.Sum256([]byte(s.Package.Digest))
	dir := filepath.Join(m.cfg.Dir, s.Package.Manifest.Name+"-"+hex.EncodeToString(sum[:6]))
	path := filepath.Join(dir, filepath.Base(c.Path))
	if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, data) {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".unpack-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(0o555); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return path, os.Rename(tmp.Name(), path)
}
