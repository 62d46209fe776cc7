package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/rlimit"
	sd "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/auth"
	"github.com/leaf-ebpf/leaf/internal/bpffs"
	"github.com/leaf-ebpf/leaf/internal/companion"
	"github.com/leaf-ebpf/leaf/internal/config"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/drift"
	"github.com/leaf-ebpf/leaf/internal/enforcer"
	"github.com/leaf-ebpf/leaf/internal/events"
	"github.com/leaf-ebpf/leaf/internal/hook"
	"github.com/leaf-ebpf/leaf/internal/l3af"
	"github.com/leaf-ebpf/leaf/internal/metrics"
	"github.com/leaf-ebpf/leaf/internal/pkgcache"
	"github.com/leaf-ebpf/leaf/internal/pkgsource"
	"github.com/leaf-ebpf/leaf/internal/reconciler"
	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/internal/server"
	"github.com/leaf-ebpf/leaf/internal/store"
	"github.com/leaf-ebpf/leaf/internal/tail"
	"github.com/leaf-ebpf/leaf/packages"
)

// Run starts leafd and serves until ctx is done. Returning never detaches
// anything: programs stay attached through their pinned links.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("memlock rlimit: %w", err)
	}
	if err := bpffs.Ensure(cfg.BPFFS); err != nil {
		return err
	}
	if err := ensureTracefs(); err != nil {
		log.Warn("tracefs unavailable: tracepoint hooks will fail", "error", err)
	}
	st, err := store.Open(cfg.StateDir)
	if err != nil {
		return err
	}
	defer st.Close()
	cache, err := pkgcache.Open(filepath.Join(cfg.StateDir, "packages"))
	if err != nil {
		return err
	}
	hints := &l3af.Catalog{}
	l3afRepos := withL3AFHints(&cfg, hints)
	repos, err := openRepositories(cfg, cache, log)
	if err != nil {
		return err
	}
	// Before anything is applied: a key file others can read, or a
	// certificate that does not load, stops leafd here.
	sec, err := newSecurity(cfg, st, log)
	if err != nil {
		return err
	}

	// Listing leafd's pins through held descriptors keeps its applies free
	// of bpffs path walks before they attach (bpffs.Dirs).
	layout := bpffs.Layout{Root: cfg.BPFFS, Dirs: &bpffs.Dirs{}}
	defer layout.Dirs.Close()
	var rec *reconciler.Reconciler
	statusSrc := statusFunc(func() (*v1Status, error) { return rec.Status() })
	objectsSrc := objectsFunc(func() ([]reconciler.Objects, error) { return rec.Objects() })
	m := metrics.New(statusSrc, objectsSrc)
	evlog := events.New(events.DefaultCapacity, m.Event)
	companionDir := cfg.CompanionDir
	if companionDir == "" {
		companionDir = config.DefaultCompanionDir
	}
	cgroup := cfg.CompanionCgroup
	if cgroup == "" {
		cgroup = companion.CgroupName(cfg.StateDir)
	}
	companions := companion.New(companion.Config{Dir: companionDir, Layout: layout, Logger: log, Event: func(e v1.Event) { evlog.Add(e) }, Cgroup: cgroup})
	defer companions.Close()
	enf := enforcer.New(enforcer.Config{BPFFS: cfg.BPFFS, Interval: time.Duration(cfg.DriftScanInterval), Logger: log})
	stats := &reconciler.Stats{}
	rec, err = reconciler.New(reconciler.Config{
		Layout: layout, Store: st, Repos: repos, Logger: log, Observe: m, Stats: stats, Events: evlog, Companions: companions.Status,
		Policy: drift.Policy{Secure: cfg.Secure, Allow: cfg.AllowForeign},
		Limits: desired.Limits{MaxAttachments: cfg.MaxAttachments, MaxChainLength: cfg.MaxChainLength},
		Applied: func(s *desired.State, records map[string]*store.Record, admitted repository.Set) {
			enf.Watch(s.Namespaces())
			enf.Trigger("desired state applied") // secure mode or allowlists may have changed
			companions.Sync(companion.Specs(s, records, admitted))
		},
	})
	if err != nil {
		return err
	}
	enf.SetTarget(rec)
	l3afSvc, err := newL3AF(cfg, l3afRepos, rec, repos, hints)
	if err != nil {
		return err
	}
	m.Registry.MustRegister(l3afSvc.Collector())
	// Restored before the start-up reconcile: chain members count their
	// runs only while statistics are on, so a restart that forgot them
	// would rebuild every chain.
	stored, err := st.BPFStats()
	if err != nil {
		return err
	}
	if cfg.BPFStats || stored {
		if err := stats.Restore(true); err != nil {
			return err
		}
	}
	stats.SetPersist(st.SetBPFStats)
	defer stats.Restore(false)
	if sec.watcher != nil {
		m.Registry.MustRegister(sec.watcher)
	}

	// Serve first, so that /healthz answers during a long start-up
	// reconcile and /readyz tells the two apart.
	var ready atomic.Bool
	done := make(chan struct{})
	srv := &server.Server{Reconciler: rec, Stats: stats, Repos: repos, Logger: log, Events: evlog, Ready: ready.Load, Done: done,
		Auth: sec.auth, Tokens: sec.tokens, Limiter: sec.limiter, L3AF: l3afSvc, Tail: tail.NewStats()}
	m.Registry.MustRegister(srv.Tail)
	// The console's charts: the last minutes of every attachment's
	// declared metrics, sampled from start-up on.
	history := metrics.NewHistory(statusSrc, objectsSrc, metrics.DefaultHistoryInterval, metrics.DefaultHistorySamples)
	srv.History = history
	if sec.watcher != nil {
		srv.Certificates = sec.watcher.Certificates
	}
	if cfg.Kubernetes != nil {
		srv.ManagedBy = ManagedByKubernetes
	}
	servers, listeners, err := listen(cfg, srv, sec, m, log)
	if err != nil {
		return err
	}
	errc := make(chan error, len(servers))
	for i := range servers {
		go func(s *http.Server, ln net.Listener) {
			if err := s.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}(servers[i], listeners[i])
	}
	stop := func() {
		notify(log, sd.SdNotifyStopping)
		close(done)
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, s := range servers {
			s.Shutdown(shutdown)
		}
		os.Remove(cfg.Socket)
	}
	if err := startState(ctx, cfg, rec, l3afSvc, log); err != nil {
		stop()
		return err
	}
	ready.Store(true)
	go pruneCache(ctx, cache, st, log)
	go l3afSvc.Run(ctx)
	go pruneTokens(ctx, st, log)
	go history.Run(ctx)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	sec.watch(watchCtx, time.Duration(cfg.CertCheckInterval))
	enfCtx, cancelEnf := context.WithCancel(ctx)
	enfDone := make(chan struct{})
	enf.Watch(rec.Namespaces())
	go func() { defer close(enfDone); enf.Run(enfCtx) }()
	kubeDone, err := startKubernetes(enfCtx, cfg.Kubernetes, rec, log)
	if err != nil {
		cancelEnf()
		<-enfDone
		stop()
		return err
	}
	go watchdog(enfCtx, func() error { _, err := rec.Status(); return err }, log)
	notify(log, "READY=1\nSTATUS=first reconciliation done; serving the API")
	log.Info("leafd ready", "socket", cfg.Socket, "tls", tlsAddress(cfg), "metrics", cfg.MetricsAddress, "bpffs", cfg.BPFFS, "state", cfg.StateDir,
		"drift_scan_interval", time.Duration(cfg.DriftScanInterval).String(), "secure", cfg.Secure)
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancelEnf()
	<-enfDone
	<-kubeDone
	stop()
	log.Info("leafd stopped; programs stay attached")
	return err
}

// listen opens the API's unix socket, the TLS listener if configured, and
// the metrics listener, which serves /metrics only and needs no role: it
// reveals counts, never state, and changes nothing.
func listen(cfg config.Config, srv *server.Server, sec *security, m *metrics.Metrics, log *slog.Logger) ([]*http.Server, []net.Listener, error) {
	var servers []*http.Server
	var listeners []net.Listener
	closeAll := func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}
	api := srv.Handler()
	apiLn, err := listenSocket(cfg.Socket, cfg.SocketOwner, cfg.SocketGroup)
	if err != nil {
		return nil, nil, err
	}
	unixSrv := newHTTPServer(api, log)
	// Peer credentials are read once per connection, at accept.
	unixSrv.ConnContext = auth.ConnContext
	servers, listeners = append(servers, unixSrv), append(listeners, apiLn)
	if cfg.TLS != nil {
		ln, err := sec.listenTLS(cfg.TLS.Address)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		servers, listeners = append(servers, newHTTPServer(api, log)), append(listeners, ln)
	}
	if cfg.MetricsAddress != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddress)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("metrics listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.Handler())
		// Liveness and readiness too, for probes that cannot reach the
		// unix socket (a DaemonSet's httpGet); they reveal no state.
		mux.Handle("GET "+v1.PathHealth, api)
		mux.Handle("GET "+v1.PathReady, api)
		servers, listeners = append(servers, newHTTPServer(mux, log)), append(listeners, mln)
	}
	return servers, listeners, nil
}

func tlsAddress(cfg config.Config) string {
	if cfg.TLS == nil {
		return ""
	}
	return cfg.TLS.Address
}

// startState applies the configured desired-state file, or adopts the
// stored state: same programs, same IDs, stale pins removed.
func startState(ctx context.Context, cfg config.Config, rec *reconciler.Reconciler, l3afSvc *l3af.Service, log *slog.Logger) error {
	if cfg.DesiredState != "" {
		data, err := os.ReadFile(cfg.DesiredState)
		if err != nil {
			return fmt.Errorf("desired state: %w", err)
		}
		doc, err := desired.Parse(data)
		if err != nil {
			return fmt.Errorf("desired state %s: %w", cfg.DesiredState, err)
		}
		if err := l3afSvc.Learn(doc); err != nil {
			return fmt.Errorf("desired state %s: %w", cfg.DesiredState, err)
		}
		res, err := rec.Start(ctx, doc)
		if err != nil {
			return fmt.Errorf("apply %s: %w", cfg.DesiredState, err)
		}
		log.Info("applied desired state at start", "file", cfg.DesiredState, "changed", res.Changed)
		return nil
	}
	res, err := rec.Start(ctx, nil)
	if err != nil {
		// Keep serving: what runs stays running and the operator can fix
		// the state through the API.
		log.Error("reconcile stored state", "error", err)
		return nil
	}
	for _, a := range res.Actions {
		log.Info("start-up reconcile", "attachment", a.Attachment, "action", a.Kind, "reason", a.Reason)
	}
	return nil
}

// openRepositories opens the configured repositories, in order, each
// behind its trust policy, then the built-in one.
func openRepositories(cfg config.Config, cache *pkgcache.Cache, log *slog.Logger) (repository.Set, error) {
	var set repository.Set
	seen := map[string]bool{}
	for _, rc := range cfg.Repositories {
		r, err := pkgsource.Open(rc, cache, log)
		if err != nil {
			return nil, err
		}
		if seen[r.Name()] {
			return nil, fmt.Errorf("two repositories are named %q: give one a name", r.Name())
		}
		seen[r.Name()] = true
		set = append(set, r)
	}
	if !cfg.NoBuiltinRepository {
		r, err := pkgsource.OpenBuiltin(config.BuiltinRepository, packages.FS)
		if err != nil {
			return nil, err
		}
		set = append(set, r)
	}
	return set, nil
}

// pruneInterval is how often leafd drops cached packages nothing uses.
const pruneInterval = time.Hour

// pruneCache removes cached packages no attachment runs: at start, then
// every pruneInterval.
func pruneCache(ctx context.Context, cache *pkgcache.Cache, st *store.Store, log *slog.Logger) {
	t := time.NewTicker(pruneInterval)
	defer t.Stop()
	for {
		if err := PruneCache(ctx, cache, st, log); err != nil {
			log.Warn("prune package cache", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// tokenRetention is how long leafd keeps listing a token after it expired.
const tokenRetention = 7 * 24 * time.Hour

// pruneTokens forgets tokens expired for longer than tokenRetention: at
// start, then every pruneInterval.
func pruneTokens(ctx context.Context, st *store.Store, log *slog.Logger) {
	t := time.NewTicker(pruneInterval)
	defer t.Stop()
	for {
		n, err := st.PruneTokens(time.Now().Add(-tokenRetention))
		if err != nil {
			log.Warn("prune token records", "error", err)
		} else if n > 0 {
			log.Info("pruned expired token records", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// PruneCache removes cached packages that no applied attachment records
// and no journaled apply names.
func PruneCache(ctx context.Context, cache *pkgcache.Cache, st *store.Store, log *slog.Logger) error {
	records, err := st.Records()
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, r := range records {
		keep[r.Package.Digest] = true
	}
	// An apply in flight, or one a crash interrupted, needs its packages
	// to finish from the cache.
	in, err := st.OpenIntent()
	if err != nil {
		return err
	}
	if in != nil {
		for _, p := range in.Packages {
			keep[p.Digest] = true
		}
	}
	removed, err := cache.Prune(ctx, keep)
	for _, d := range removed {
		log.Info("pruned cached package", "digest", d)
	}
	return err
}

// newHTTPServer bounds every phase of a request so a slow or stuck client
// cannot hold a connection; net/http's own messages (failed TLS
// handshakes: unknown CA, revoked or expired certificate) go to leafd's
// log.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// listenSocket listens on a unix socket with mode 0660, removing a stale
// socket file but refusing to steal one a live leafd answers on.
func listenSocket(path, owner, group string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("socket %s is in use: is another leafd running?", path)
	}
	os.Remove(path)
	old := unix.Umask(0o117)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := chownSocket(path, owner, group); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// ensureTracefs mounts tracefs where tracepoint lookups expect it.
func ensureTracefs() error {
	if _, err := os.Stat(filepath.Join(hook.TracefsRoot, "events")); err == nil {
		return nil
	}
	if err := os.MkdirAll(hook.TracefsRoot, 0o755); err != nil {
		return err
	}
	return unix.Mount("tracefs", hook.TracefsRoot, "tracefs", 0, "")
}

// chownSocket gives the socket to owner and group (names or IDs), if set.
func chownSocket(path, owner, group string) error {
	uid, gid := -1, -1
	if owner != "" {
		u, err := auth.LookupUID(owner)
		if err != nil {
			return fmt.Errorf("socket owner: %w", err)
		}
		uid = int(u)
	}
	if group != "" {
		g, err := auth.LookupGID(group)
		if err != nil {
			return fmt.Errorf("socket group: %w", err)
		}
		gid = int(g)
	}
	if uid == -1 && gid == -1 {
		return nil
	}
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("socket owner/group: %w", err)
	}
	return nil
}
