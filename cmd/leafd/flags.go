package main

import (
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/leaf-ebpf/leaf/internal/config"
	"github.com/leaf-ebpf/leaf/internal/pkgsource"
)

// repoFlag appends a directory repository with a policy: --repository
// and --repository-allow-unsigned share one list so their order holds.
type repoFlag struct {
	list          *[]pkgsource.Config
	allowUnsigned bool
}

func (r repoFlag) String() string { return "" }
func (r repoFlag) Type() string   { return "dir" }
func (r repoFlag) Set(v string) error {
	*r.list = append(*r.list, pkgsource.Config{Type: pkgsource.RepoDir, Path: v, Trust: pkgsource.TrustConfig{AllowUnsigned: r.allowUnsigned}})
	return nil
}

// flagOnly holds what flags give that the config does not take as is:
// sections created only when one of their flags is given, and lists a
// flag replaces rather than extends.
type flagOnly struct {
	config                  string
	repos                   []pkgsource.Config
	keys, allow             []string
	version                 bool
	tls                     config.TLSConfig
	tokenFile, tokenCredent string
	kube                    config.KubernetesConfig
	kubeOn                  bool
}

// bindFlags defines leafd's flags on fs, bound to cfg: each flag's default
// is cfg's current value, so a flag left out keeps what the config file
// said.
func bindFlags(fs *pflag.FlagSet, cfg *config.Config, x *flagOnly) {
	if cfg.TLS != nil {
		x.tls = *cfg.TLS
	}
	if cfg.Kubernetes != nil {
		x.kube, x.kubeOn = *cfg.Kubernetes, true
	}
	fs.StringVar(&x.config, "config", "", "config file (YAML or JSON, kind DaemonConfig)")
	fs.BoolVar(&x.version, "version", false, "print leafd's version and exit")
	fs.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "directory of the state store")
	fs.StringVar(&cfg.BPFFS, "bpffs", cfg.BPFFS, "leaf's root on a bpf file system (mounted if needed)")
	fs.StringVar(&cfg.Socket, "socket", cfg.Socket, "API unix socket")
	fs.StringVar(&cfg.SocketGroup, "socket-group", cfg.SocketGroup, "group owning the API socket (mode 0660)")
	fs.StringVar(&cfg.SocketOwner, "socket-owner", cfg.SocketOwner, "user owning the API socket")
	fs.StringVar(&x.tls.Address, "tls-address", x.tls.Address, "also serve the API on this TCP address, with TLS and client certificates")
	fs.StringVar(&x.tls.CertFile, "tls-cert", x.tls.CertFile, "server certificate (PEM)")
	fs.StringVar(&x.tls.KeyFile, "tls-key", x.tls.KeyFile, "server key (PEM)")
	fs.StringVar(&x.tls.ClientCAFile, "tls-client-ca", x.tls.ClientCAFile, "CA bundle client certificates must chain to (PEM)")
	fs.StringVar(&x.tls.CRLFile, "tls-crl", x.tls.CRLFile, "certificate revocation list (PEM or DER)")
	fs.StringVar(&x.tls.MinVersion, "tls-min-version", x.tls.MinVersion, "minimum TLS version: 1.2 or 1.3 (default 1.3)")
	fs.StringVar(&x.tokenFile, "token-key-file", "", "Ed25519 token signing key (PEM, mode 0600)")
	fs.StringVar(&x.tokenCredent, "token-key-credential", "", "systemd credential holding the token signing key")
	fs.Var(&cfg.CertWarningWindow, "cert-warning-window", "warn about certificates expiring within this")
	fs.Var(&cfg.CertCheckInterval, "cert-check-interval", "how often to check certificate expiry and reload certificates")
	fs.StringVar(&cfg.MetricsAddress, "metrics-address", cfg.MetricsAddress, "address serving /metrics (empty disables)")
	fs.StringVar(&cfg.DesiredState, "desired-state", cfg.DesiredState, "desired-state file applied at start")
	fs.Var(repoFlag{list: &x.repos}, "repository", "package repository directory (plain or OCI layout), searched before the built-in one; packages must be signed by a --trusted-key (repeatable)")
	fs.Var(repoFlag{list: &x.repos, allowUnsigned: true}, "repository-allow-unsigned", "package repository directory whose unsigned packages are accepted (repeatable)")
	fs.StringArrayVar(&x.keys, "trusted-key", nil, "public key (PEM) trusted for author signatures in --repository directories (repeatable)")
	fs.BoolVar(&cfg.NoBuiltinRepository, "no-builtin-repository", cfg.NoBuiltinRepository, "leave out the built-in packages")
	fs.BoolVar(&cfg.BPFStats, "bpf-stats", cfg.BPFStats, "enable kernel BPF run statistics")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.Var(&cfg.DriftScanInterval, "drift-scan-interval", "how often to scan the kernel for drift besides netlink and pin events (0 disables)")
	fs.BoolVar(&cfg.Secure, "secure", cfg.Secure, "secure mode on every managed XDP/TC hook: remove programs leaf does not own")
	fs.StringArrayVar(&x.allow, "allow-foreign", nil, "foreign program secure mode keeps: name:NAME, tag:TAG or id:ID (repeatable)")
	fs.StringVar(&cfg.CompanionDir, "companion-dir", cfg.CompanionDir, "where companion executables are unpacked (default /run/leaf/companions)")
	fs.BoolVar(&x.kubeOn, "kubernetes", x.kubeOn, "take the desired state from LeafPolicy objects (local applies are refused; docs/kubernetes.md)")
	fs.StringVar(&x.kube.Kubeconfig, "kubeconfig", x.kube.Kubeconfig, "Kubernetes client configuration (default: in-cluster)")
	fs.StringVar(&x.kube.NodeName, "kubernetes-node-name", x.kube.NodeName, "this host's Node and LeafNode name (default $NODE_NAME, else the host name)")
	fs.StringToStringVar(&x.kube.Labels, "kubernetes-labels", x.kube.Labels, "register as an external host (not a Kubernetes node) with these labels: key=value,...")
	fs.StringVar(&x.kube.DefaultNetns, "kubernetes-netns", x.kube.DefaultNetns, "network namespace for xdp and tc hooks of policies that name none")
	fs.BoolVar(&x.kube.Controller, "controller", x.kube.Controller, "run the rollout controller instead of the agent (needs no BPF; implies --kubernetes)")
	fs.StringVar(&x.kube.ControllerNamespace, "controller-namespace", x.kube.ControllerNamespace, "namespace of the controller's lease (default leaf-system)")
}

// parseFlags reads the config file first, then lets flags given on the
// command line override it. The first pass checks the flags and finds
// --config; the second binds them to the loaded config.
func parseFlags(args []string) (config.Config, flagOnly, error) {
	scratch := config.Defaults()
	first := newFlagSet()
	var x flagOnly
	bindFlags(first, &scratch, &x)
	if err := first.Parse(args); err != nil {
		return scratch, x, err
	}
	if first.NArg() > 0 {
		return scratch, x, fmt.Errorf("unexpected arguments: %v", first.Args())
	}
	if x.version {
		return scratch, x, nil
	}
	cfg := config.Defaults()
	if x.config != "" {
		if err := config.LoadFile(x.config, &cfg); err != nil {
			return cfg, x, err
		}
	}
	fs := newFlagSet()
	x = flagOnly{}
	bindFlags(fs, &cfg, &x)
	if err := fs.Parse(args); err != nil {
		return cfg, x, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *pflag.Flag) { given[f.Name] = true })
	if given["tls-address"] || given["tls-cert"] || given["tls-key"] || given["tls-client-ca"] || given["tls-crl"] || given["tls-min-version"] {
		cfg.TLS = &x.tls
	}
	if given["token-key-file"] || given["token-key-credential"] {
		// A flag replaces the key source of the config file.
		if cfg.Tokens == nil {
			cfg.Tokens = &config.TokensConfig{}
		}
		cfg.Tokens.KeyFile, cfg.Tokens.KeyCredential = x.tokenFile, x.tokenCredent
	}
	if given["repository"] || given["repository-allow-unsigned"] {
		for i := range x.repos {
			x.repos[i].Trust.AuthorKeys = x.keys
		}
		cfg.Repositories = x.repos
	}
	if given["allow-foreign"] {
		cfg.AllowForeign = nil
		for _, v := range x.allow {
			m, err := config.ParseProgramMatch(v)
			if err != nil {
				return cfg, x, err
			}
			cfg.AllowForeign = append(cfg.AllowForeign, m)
		}
	}
	if x.kubeOn || x.kube.Controller {
		cfg.Kubernetes = &x.kube
	} else if given["kubernetes"] {
		cfg.Kubernetes = nil
	}
	if given["drift-scan-interval"] && cfg.DriftScanInterval < 0 {
		return cfg, x, fmt.Errorf("--drift-scan-interval must not be negative")
	}
	return cfg, x, nil
}

// newFlagSet is leafd's flag set: GNU-style long flags, errors returned
// rather than printed (run prints them once).
func newFlagSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("leafd", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	return fs
}

// usage is leafd --help.
func usage() string {
	fs := newFlagSet()
	cfg := config.Defaults()
	bindFlags(fs, &cfg, &flagOnly{})
	return "Usage: leafd [flags]\n\nleafd keeps this host's eBPF programs in the declared state.\n" +
		"Flags override the --config file; every field is in docs/leafd.md.\n\nFlags:\n" + fs.FlagUsages()
}
