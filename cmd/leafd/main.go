// Command leafd keeps this host's eBPF programs in the state the operator
// declared. See docs/leafd.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/leaf-ebpf/leaf/internal/config"
	"github.com/leaf-ebpf/leaf/internal/daemon"
	"github.com/leaf-ebpf/leaf/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is leafd's command line: --help and --version answer on stdout and
// exit 0, a bad flag exits 2, a failed daemon 1.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, x, err := parseFlags(args)
	switch {
	case errors.Is(err, pflag.ErrHelp):
		fmt.Fprint(stdout, usage())
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "leafd: %v\nRun 'leafd --help' for the flags.\n", err)
		return 2
	case x.version:
		fmt.Fprintln(stdout, "leafd", version.Get())
		return 0
	}
	log, err := newLogger(cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(stderr, "leafd:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	run := daemon.Run
	if k := cfg.Kubernetes; k != nil && k.Controller {
		// The rollout controller: no BPF, no local API.
		run = func(ctx context.Context, _ config.Config, log *slog.Logger) error {
			return daemon.RunController(ctx, k, log)
		}
	}
	if err := run(ctx, cfg, log); err != nil {
		log.Error("leafd failed", "error", err)
		return 1
	}
	return 0
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
