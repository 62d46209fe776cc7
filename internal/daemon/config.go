// Package daemon wires leafd together: configuration, start-up (mount,
// open the store, adopt what the kernel holds), the API and metrics
// listeners, and shutdown that never detaches a program.
package daemon

import (
	"fmt"
	"os"

	"github.com/leaf-ebpf/leaf/internal/pkgsource"
	"github.com/leaf-ebpf/leaf/internal/yamljson"
)

// Config is leafd's configuration. A config file (YAML or JSON) holds
// the same fields; command-line flags override it.
type Config struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
	// StateDir holds the state store.
	StateDir string `json:"stateDir"`
	// BPFFS is leaf's root on a bpf file system (mounted if it is not).
	BPFFS string `json:"bpffs"`
	// Socket is the API's unix socket.
	Socket string `json:"socket"`
	// SocketGroup, if set, owns the socket (mode 0660) so its members may
	// use the API.
	SocketGroup string `json:"socketGroup,omitempty"`
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
	// BPFStats asks the kernel for per-program run counts and times.
	BPFStats bool `json:"bpfStats,omitempty"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"logLevel,omitempty"`
}

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
	}
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
	return nil
}
