// Package config is leafd's configuration: the config file's schema, its
// defaults and validation. It is shared by leafd and the leaf CLI (which
// reads the repositories of a leafd config), so it must stay portable:
// nothing here may import a Linux-only package.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/leaf-ebpf/leaf/internal/desired"

	"github.com/leaf-ebpf/leaf/internal/auth"
	"github.com/leaf-ebpf/leaf/internal/pkgsource"
	"github.com/leaf-ebpf/leaf/internal/yamljson"
)

// TLSConfig is the TCP listener. TLS is not optional on it.
type TLSConfig struct {
	// Address to listen on, host:port.
	Address string `json:"address"`
	// CertFile and KeyFile are the server's certificate (chain) and key.
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
	// ClientCAFile is the PEM bundle of CAs client certificates must chain
	// to: the only trusted roots, never the system pool.
	ClientCAFile string `json:"clientCAFile"`
	// CRLFile is an optional CRL signed by a CA of the bundle.
	CRLFile string `json:"crlFile,omitempty"`
	// RefuseStaleCRL refuses every client certificate while the CRL's
	// nextUpdate has passed; by default a stale CRL is still used, with a
	// warning and the leaf_tls_crl_next_update_seconds metric below 0.
	RefuseStaleCRL bool `json:"refuseStaleCRL,omitempty"`
	// MinVersion is 1.2 or 1.3 (default).
	MinVersion string `json:"minVersion,omitempty"`
	// Subjects map client certificate SANs to roles. Empty: every
	// certificate from the CA gets AnyCertRole.
	Subjects []auth.SubjectRule `json:"subjects,omitempty"`
	// AnyCertRole is the role of every certificate from the CA when
	// Subjects is empty (default reader).
	AnyCertRole auth.Role `json:"anyCertRole,omitempty"`
}

// TokensConfig is where the token signing key comes from: a file only
// leafd's user can read, or a systemd credential. Exactly one is set.
type TokensConfig struct {
	// KeyFile is an Ed25519 key (PKCS #8 PEM, mode 0600, owned by leafd's
	// user); KeyCredential names a systemd credential holding one
	// ($CREDENTIALS_DIRECTORY/NAME, set by LoadCredential=).
	KeyFile       string `json:"keyFile,omitempty"`
	KeyCredential string `json:"keyCredential,omitempty"`
	// DefaultTTL (24h) applies when a request gives none; MaxTTL (30 days)
	// caps any.
	DefaultTTL Duration `json:"defaultTTL,omitempty"`
	MaxTTL     Duration `json:"maxTTL,omitempty"`
}

// RateLimitConfig is a token bucket per caller for mutating calls.
type RateLimitConfig struct {
	// PerSecond is the refill rate, Burst the bucket size.
	PerSecond float64 `json:"perSecond,omitempty"`
	Burst     int     `json:"burst,omitempty"`
}

// L3AFConfig shapes the L3AF API. Its programs come from the kfaas
// repositories, the first being l3afd's default ebpf-repo-url.
type L3AFConfig struct {
	// HostName is the host_name payloads must carry (default: the
	// kernel's host name, as l3afd).
	HostName string `json:"hostName,omitempty"`
	// Netns holds the payloads' interfaces (default: leafd's own).
	Netns string `json:"netns,omitempty"`
	// PollInterval is how often monitor_maps are sampled (default 30s).
	PollInterval Duration `json:"pollInterval,omitempty"`
	// Samples is how many samples max-rate and avg span (default 20).
	Samples int `json:"samples,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("720h").
type Duration time.Duration

// UnmarshalJSON reads "720h", "30m", ...
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"720h\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// String and Set make a Duration a command-line flag value.
func (d *Duration) String() string { return time.Duration(*d).String() }

// Type names the flag value's kind in --help.
func (d *Duration) Type() string { return "duration" }

// Set reads a flag value such as "720h".
func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Config is leafd's configuration. A config file (YAML or JSON) holds
// the same fields; command-line flags override it.
type Config struct {
	// APIVersion and Kind, if given, must be leaf.dev/v1alpha1 and
	// DaemonConfig.
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
	// StateDir holds the state store.
	StateDir string `json:"stateDir"`
	// BPFFS is leaf's root on a bpf file system (mounted if it is not).
	BPFFS string `json:"bpffs"`
	// Socket is the API's unix socket.
	Socket string `json:"socket"`
	// SocketOwner and SocketGroup, if set, own the socket (mode 0660): a
	// user or group name, or a numeric ID. Being able to connect is not
	// enough to use the API: SocketRoles says what each caller may do.
	SocketOwner string `json:"socketOwner,omitempty"`
	SocketGroup string `json:"socketGroup,omitempty"`
	// SocketRoles grant roles to socket callers by user or group, read
	// from the kernel (SO_PEERCRED, SO_PEERGROUPS). root and leafd's own
	// user are always admin.
	SocketRoles []auth.UnixRule `json:"socketRoles,omitempty"`
	// TLS, if set, also serves the API on TCP with TLS and client
	// certificates (or bearer tokens).
	TLS *TLSConfig `json:"tls,omitempty"`
	// Tokens, if set, lets leafd issue and accept bearer tokens.
	Tokens *TokensConfig `json:"tokens,omitempty"`
	// CertWarningWindow: certificates with less time left are warned about
	// (log and metric). CertCheckInterval is how often leafd looks.
	CertWarningWindow Duration `json:"certWarningWindow,omitempty"`
	CertCheckInterval Duration `json:"certCheckInterval,omitempty"`
	// RateLimit caps mutating API calls per caller.
	RateLimit RateLimitConfig `json:"rateLimit,omitzero"`
	// MetricsAddress serves /metrics over HTTP; empty disables it.
	MetricsAddress string `json:"metricsAddress"`
	// DesiredState is a document applied at start-up, replacing the stored
	// one.
	DesiredState string `json:"desiredState,omitempty"`
	// Repositories are searched, in order, before the built-in packages.
	// A plain string is a directory (see pkgsource.Config).
	Repositories []pkgsource.Config `json:"repositories,omitempty"`
	// NoBuiltinRepository leaves out the packages built into leafd.
	NoBuiltinRepository bool `json:"noBuiltinRepository,omitempty"`
	// L3AF shapes l3afd's API, which leafd serves (docs/l3af.md).
	L3AF L3AFConfig `json:"l3af,omitempty"`
	// BPFStats asks the kernel for per-program run counts and times.
	BPFStats bool `json:"bpfStats,omitempty"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"logLevel,omitempty"`
	// DriftScanInterval is how often the kernel is scanned for drift
	// besides the netlink and pin events that wake a check at once; 0
	// turns the scan off.
	DriftScanInterval Duration `json:"driftScanInterval,omitempty"`
	// MaxAttachments is the most attachments one desired-state document
	// may hold; a larger one is refused at validation (default 1000).
	MaxAttachments int `json:"maxAttachments,omitempty"`
	// MaxChainLength is the most programs on one XDP or TC hook (default
	// and upper bound 32, the kernel's tail-call limit).
	MaxChainLength int `json:"maxChainLength,omitempty"`
	// Secure turns secure mode on for every XDP and TC hook leaf manages:
	// programs leaf does not own are removed from them.
	Secure bool `json:"secure,omitempty"`
	// AllowForeign lists foreign programs secure mode leaves in place, on
	// every hook.
	AllowForeign []desired.ProgramMatch `json:"allowForeign,omitempty"`
	// CompanionDir is where companion executables are unpacked from
	// their packages; default /run/leaf/companions.
	CompanionDir string `json:"companionDir,omitempty"`
	// CompanionCgroup is this leafd's cgroup subtree below the cgroup2
	// mount, the only one it creates, sweeps and removes companions'
	// cgroups in; default "leaf-" and the state directory with "/"
	// turned into "-" (leaf-var-lib-leaf).
	CompanionCgroup string `json:"companionCgroup,omitempty"`
	// Kubernetes, if set, takes the desired state from LeafPolicy objects
	// (docs/kubernetes.md); local applies are then refused.
	Kubernetes *KubernetesConfig `json:"kubernetes,omitempty"`
}

// KubernetesConfig is leafd's Kubernetes mode.
type KubernetesConfig struct {
	// Kubeconfig is the client configuration; empty means in-cluster
	// (the pod's service account).
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// NodeName names this host's Node and LeafNode (default: $NODE_NAME,
	// else the host name).
	NodeName string `json:"nodeName,omitempty"`
	// Labels make this host an external one (not a Kubernetes node): its
	// LeafNode carries them and policies select on them.
	Labels map[string]string `json:"labels,omitempty"`
	// DefaultNetns is given to xdp and tc hooks that name no netns, for
	// an agent that manages one network namespace.
	DefaultNetns string `json:"defaultNetns,omitempty"`
	// Controller runs the rollout controller instead of the agent (no
	// BPF, no local API): leafd --controller, as the controller
	// Deployment does.
	Controller bool `json:"controller,omitempty"`
	// ControllerNamespace holds the controller's lease (default
	// leaf-system).
	ControllerNamespace string `json:"controllerNamespace,omitempty"`
}

// ParseProgramMatch reads a --allow-foreign value: name:N, tag:T or id:N.
func ParseProgramMatch(v string) (desired.ProgramMatch, error) {
	kind, val, _ := strings.Cut(v, ":")
	var m desired.ProgramMatch
	switch kind {
	case "name":
		m.Name = val
	case "tag":
		m.Tag = val
	case "id":
		id, err := strconv.ParseUint(val, 10, 32)
		if err != nil {
			return m, fmt.Errorf("--allow-foreign %q: id must be a program ID", v)
		}
		m.ID = uint32(id)
	default:
		return m, fmt.Errorf("--allow-foreign %q: want name:NAME, tag:TAG or id:ID", v)
	}
	if msg := m.Validate(); msg != "" {
		return m, fmt.Errorf("--allow-foreign %q: %s", v, msg)
	}
	return m, nil
}

// BuiltinRepository names the packages compiled into leafd.
const BuiltinRepository = "builtin"

// DefaultCompanionDir is where companion executables are unpacked. It is
// outside the state directory, which only root may enter: companions run
// as other users, and exec needs every directory on the way searchable.
const DefaultCompanionDir = "/run/leaf/companions"

// Config file identity.
const (
	ConfigAPIVersion = "leaf.dev/v1alpha1"
	ConfigKind       = "DaemonConfig"
)

// Defaults returns the default configuration.
func Defaults() Config {
	return Config{
		StateDir:       "/var/lib/leaf",
		BPFFS:          "/sys/fs/bpf/leaf",
		Socket:         "/run/leaf/leafd.sock",
		MetricsAddress: "127.0.0.1:9464",
		LogLevel:       "info",
		// 30 days, as CAs and monitoring commonly warn.
		CertWarningWindow: Duration(30 * 24 * time.Hour),
		CertCheckInterval: Duration(time.Hour),
		// Generous for people and scripts, tight for a runaway loop that
		// would keep the kernel reloading programs.
		RateLimit:         RateLimitConfig{PerSecond: 10, Burst: 40},
		DriftScanInterval: Duration(time.Second),
	}
}

// Validate checks what decoding cannot, before anything starts, naming
// the field that is wrong.
func (c *Config) Validate() error {
	var errs []error
	for i, m := range c.AllowForeign {
		if msg := m.Validate(); msg != "" {
			errs = append(errs, fmt.Errorf("allowForeign[%d]: %s", i, msg))
		}
	}
	if c.DriftScanInterval < 0 {
		errs = append(errs, errors.New("driftScanInterval must not be negative"))
	}
	if c.MaxAttachments < 0 {
		errs = append(errs, errors.New("maxAttachments must not be negative"))
	}
	if c.MaxChainLength < 0 || c.MaxChainLength > 32 {
		errs = append(errs, errors.New("maxChainLength must be between 1 and 32 (0: the default, 32)"))
	}
	if c.CertWarningWindow < 0 {
		errs = append(errs, errors.New("certWarningWindow must not be negative"))
	}
	if c.CertCheckInterval <= 0 {
		errs = append(errs, errors.New("certCheckInterval must be positive"))
	}
	if c.RateLimit.PerSecond <= 0 || c.RateLimit.Burst < 1 {
		errs = append(errs, errors.New("rateLimit: perSecond must be positive and burst at least 1"))
	}
	if t := c.TLS; t != nil {
		if t.Address == "" {
			errs = append(errs, errors.New("tls.address is required"))
		}
		if t.CertFile == "" || t.KeyFile == "" || t.ClientCAFile == "" {
			errs = append(errs, errors.New("tls: certFile, keyFile and clientCAFile are all required"))
		}
		// tlsauth parses it at start; checked here by value so this
		// package stays free of the TLS server code the CLI does not need.
		switch t.MinVersion {
		case "", "1.2", "1.3":
		default:
			errs = append(errs, fmt.Errorf("tls.minVersion %q: want 1.2 or 1.3 (older versions are not supported)", t.MinVersion))
		}
	}
	if t := c.Tokens; t != nil {
		if (t.KeyFile == "") == (t.KeyCredential == "") {
			errs = append(errs, errors.New("tokens: set exactly one of keyFile and keyCredential"))
		}
		if t.DefaultTTL < 0 || t.MaxTTL < 0 || (t.MaxTTL > 0 && t.DefaultTTL > t.MaxTTL) {
			errs = append(errs, errors.New("tokens: defaultTTL and maxTTL must be positive, defaultTTL at most maxTTL"))
		}
	}
	if k := c.Kubernetes; k != nil && c.DesiredState != "" {
		errs = append(errs, errors.New("desiredState and kubernetes exclude each other: in Kubernetes mode the desired state comes from LeafPolicy objects"))
	}
	return errors.Join(errs...)
}

// LoadFile reads a config file over cfg.
func LoadFile(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := yamljson.Decode(data, cfg); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if cfg.APIVersion != "" && cfg.APIVersion != ConfigAPIVersion {
		return fmt.Errorf("config %s: apiVersion must be %q, got %q", path, ConfigAPIVersion, cfg.APIVersion)
	}
	if cfg.Kind != "" && cfg.Kind != ConfigKind {
		return fmt.Errorf("config %s: kind must be %q, got %q", path, ConfigKind, cfg.Kind)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}
