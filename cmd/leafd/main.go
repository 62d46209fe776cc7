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
	fs.StringVar(&flags.StateDir, "state-dir", cfg.StateDir, "directory of the state store")
	fs.StringVar(&flags.BPFFS, "bpffs", cfg.BPFFS, "leaf's root on a bpf file system (mounted if needed)")
	fs.StringVar(&flags.Socket, "socket", cfg.Socket, "API unix socket")
	fs.StringVar(&flags.SocketGroup, "socket-group", "", "group owning the API socket (mode 0660)")
	fs.StringVar(&flags.MetricsAddress, "metrics-address", cfg.MetricsAddress, "address serving /metrics (empty disables)")
	fs.StringVar(&flags.DesiredState, "desired-state", "", "desired-state file applied at start")
	fs.Var(repoFlag{list: &repos}, "repository", "package repository directory (plain or OCI layout), searched before the built-in one; packages must be signed by a --trusted-key (repeatable)")
	fs.Var(repoFlag{list: &repos, allowUnsigned: true}, "repository-allow-unsigned", "package repository directory whose unsigned packages are accepted (repeatable)")
	fs.Var(&keys, "trusted-key", "public key (PEM) trusted for author signatures in --repository directories (repeatable)")
	fs.BoolVar(&flags.NoBuiltinRepository, "no-builtin-repository", false, "leave out the built-in packages")
	fs.BoolVar(&flags.BPFStats, "bpf-stats", false, "enable kernel BPF run statistics")
	fs.StringVar(&flags.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
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
		}
	})
	for i := range repos {
		repos[i].Trust.AuthorKeys = keys
	}
	return cfg, nil
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
