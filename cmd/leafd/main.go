// Command leafd keeps this host's eBPF programs in the state the operator
// declared. See docs/leafd.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/leaf-ebpf/leaf/internal/daemon"
	"github.com/leaf-ebpf/leaf/internal/pkgsource"
)

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "leafd:", err)
		os.Exit(2)
	}
	log, err := newLogger(cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "leafd:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := daemon.Run(ctx, cfg, log); err != nil {
		log.Error("leafd failed", "error", err)
		os.Exit(1)
	}
}

// repoFlag appends a directory repository with a policy: --repository
// and --repository-allow-unsigned share one list so their order holds.
type repoFlag struct {
	list          *[]pkgsource.Config
	allowUnsigned bool
}

func (r repoFlag) String() string { return "" }
func (r repoFlag) Set(v string) error {
	*r.list = append(*r.list, pkgsource.Config{Type: pkgsource.RepoDir, Path: v, Trust: pkgsource.TrustConfig{AllowUnsigned: r.allowUnsigned}})
	return nil
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// parseFlags reads the config file first, then lets flags given on the
// command line override it.
func parseFlags(args []string) (daemon.Config, error) {
	cfg := daemon.Defaults()
	fs := flag.NewFlagSet("leafd", flag.ContinueOnError)
	configFile := fs.String("config", "", "config file (YAML or JSON, kind DaemonConfig)")
	var flags daemon.Config
	var repos []pkgsource.Config
	var keys stringList
	var tlsFlags daemon.TLSConfig
	var tokenFlags daemon.TokensConfig
	var window, interval time.Duration
	var allow stringList
	var scan time.Duration
	fs.StringVar(&flags.StateDir, "state-dir", cfg.StateDir, "directory of the state store")
	fs.StringVar(&flags.BPFFS, "bpffs", cfg.BPFFS, "leaf's root on a bpf file system (mounted if needed)")
	fs.StringVar(&flags.Socket, "socket", cfg.Socket, "API unix socket")
	fs.StringVar(&flags.SocketGroup, "socket-group", "", "group owning the API socket (mode 0660)")
	fs.StringVar(&flags.SocketOwner, "socket-owner", "", "user owning the API socket")
	fs.StringVar(&tlsFlags.Address, "tls-address", "", "also serve the API on this TCP address, with TLS and client certificates")
	fs.StringVar(&tlsFlags.CertFile, "tls-cert", "", "server certificate (PEM)")
	fs.StringVar(&tlsFlags.KeyFile, "tls-key", "", "server key (PEM)")
	fs.StringVar(&tlsFlags.ClientCAFile, "tls-client-ca", "", "CA bundle client certificates must chain to (PEM)")
	fs.StringVar(&tlsFlags.CRLFile, "tls-crl", "", "certificate revocation list (PEM or DER)")
	fs.StringVar(&tlsFlags.MinVersion, "tls-min-version", "", "minimum TLS version: 1.2 or 1.3 (default 1.3)")
	fs.StringVar(&tokenFlags.KeyFile, "token-key-file", "", "Ed25519 token signing key (PEM, mode 0600)")
	fs.StringVar(&tokenFlags.KeyCredential, "token-key-credential", "", "systemd credential holding the token signing key")
	fs.DurationVar(&window, "cert-warning-window", time.Duration(cfg.CertWarningWindow), "warn about certificates expiring within this")
	fs.DurationVar(&interval, "cert-check-interval", time.Duration(cfg.CertCheckInterval), "how often to check certificate expiry and reload certificates")
	fs.StringVar(&flags.MetricsAddress, "metrics-address", cfg.MetricsAddress, "address serving /metrics (empty disables)")
	fs.StringVar(&flags.DesiredState, "desired-state", "", "desired-state file applied at start")
	fs.Var(repoFlag{list: &repos}, "repository", "package repository directory (plain or OCI layout), searched before the built-in one; packages must be signed by a --trusted-key (repeatable)")
	fs.Var(repoFlag{list: &repos, allowUnsigned: true}, "repository-allow-unsigned", "package repository directory whose unsigned packages are accepted (repeatable)")
	fs.Var(&keys, "trusted-key", "public key (PEM) trusted for author signatures in --repository directories (repeatable)")
	fs.BoolVar(&flags.NoBuiltinRepository, "no-builtin-repository", false, "leave out the built-in packages")
	fs.BoolVar(&flags.BPFStats, "bpf-stats", false, "enable kernel BPF run statistics")
	fs.StringVar(&flags.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.DurationVar(&scan, "drift-scan-interval", time.Duration(cfg.DriftScanInterval), "how often to scan the kernel for drift besides netlink and pin events (0 disables)")
	fs.BoolVar(&flags.Secure, "secure", false, "secure mode on every managed XDP/TC hook: remove programs leaf does not own")
	fs.Var(&allow, "allow-foreign", "foreign program secure mode keeps: name:NAME, tag:TAG or id:ID (repeatable)")
	fs.StringVar(&flags.CompanionDir, "companion-dir", "", "where companion executables are unpacked (default /run/leaf/companions)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *configFile != "" {
		if err := daemon.LoadFile(*configFile, &cfg); err != nil {
			return cfg, err
		}
	}
	var visitErr error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "state-dir":
			cfg.StateDir = flags.StateDir
		case "bpffs":
			cfg.BPFFS = flags.BPFFS
		case "socket":
			cfg.Socket = flags.Socket
		case "socket-group":
			cfg.SocketGroup = flags.SocketGroup
		case "socket-owner":
			cfg.SocketOwner = flags.SocketOwner
		case "tls-address", "tls-cert", "tls-key", "tls-client-ca", "tls-crl", "tls-min-version":
			setTLSFlag(&cfg, f.Name, tlsFlags)
		case "token-key-file", "token-key-credential":
			// A flag replaces the key source of the config file.
			if cfg.Tokens == nil {
				cfg.Tokens = &daemon.TokensConfig{}
			}
			cfg.Tokens.KeyFile, cfg.Tokens.KeyCredential = tokenFlags.KeyFile, tokenFlags.KeyCredential
		case "cert-warning-window":
			cfg.CertWarningWindow = daemon.Duration(window)
		case "cert-check-interval":
			cfg.CertCheckInterval = daemon.Duration(interval)
		case "metrics-address":
			cfg.MetricsAddress = flags.MetricsAddress
		case "desired-state":
			cfg.DesiredState = flags.DesiredState
		case "repository", "repository-allow-unsigned":
			cfg.Repositories = repos
		case "no-builtin-repository":
			cfg.NoBuiltinRepository = flags.NoBuiltinRepository
		case "bpf-stats":
			cfg.BPFStats = flags.BPFStats
		case "log-level":
			cfg.LogLevel = flags.LogLevel
		case "drift-scan-interval":
			cfg.DriftScanInterval = daemon.Duration(scan)
		case "secure":
			cfg.Secure = flags.Secure
		case "companion-dir":
			cfg.CompanionDir = flags.CompanionDir
		case "allow-foreign":
			cfg.AllowForeign = nil
			for _, v := range allow {
				m, err := daemon.ParseProgramMatch(v)
				if err != nil {
					visitErr = err
				}
				cfg.AllowForeign = append(cfg.AllowForeign, m)
			}
		}
	})
	for i := range repos {
		repos[i].Trust.AuthorKeys = keys
	}
	if visitErr != nil {
		return cfg, visitErr
	}
	if scan < 0 {
		return cfg, fmt.Errorf("--drift-scan-interval must not be negative")
	}
	return cfg, nil
}

// setTLSFlag sets one TLS field from its flag, creating the TLS section
// the first time.
func setTLSFlag(cfg *daemon.Config, name string, f daemon.TLSConfig) {
	if cfg.TLS == nil {
		cfg.TLS = &daemon.TLSConfig{}
	}
	t := cfg.TLS
	switch name {
	case "tls-address":
		t.Address = f.Address
	case "tls-cert":
		t.CertFile = f.CertFile
	case "tls-key":
		t.KeyFile = f.KeyFile
	case "tls-client-ca":
		t.ClientCAFile = f.ClientCAFile
	case "tls-crl":
		t.CRLFile = f.CRLFile
	case "tls-min-version":
		t.MinVersion = f.MinVersion
	}
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
