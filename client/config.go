package client

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/leaf-ebpf/leaf/internal/yamljson"
)

// Client config file identity.
const (
	ConfigAPIVersion = "leaf.dev/v1alpha1"
	ConfigKind       = "ClientConfig"
)

// Config is the client config file: named contexts, like kubectl's, each
// saying how to reach one leafd.
type Config struct {
	APIVersion     string    `json:"apiVersion,omitempty"`
	Kind           string    `json:"kind,omitempty"`
	CurrentContext string    `json:"currentContext,omitempty"`
	Contexts       []Context `json:"contexts,omitempty"`
}

// Context is one leafd: a unix socket, or a server with TLS material and
// an optional token. Paths may start with ~/.
type Context struct {
	Name   string `json:"name"`
	Socket string `json:"socket,omitempty"`
	Server string `json:"server,omitempty"`
	CA     string `json:"ca,omitempty"`
	Cert   string `json:"cert,omitempty"`
	Key    string `json:"key,omitempty"`
	// TokenFile holds a bearer token; prefer it to Token, which puts the
	// secret in this file.
	TokenFile string `json:"tokenFile,omitempty"`
	Token     string `json:"token,omitempty"`
}

// ConfigPath is $LEAF_CONFIG, else ~/.config/leaf/config.yaml (following
// $XDG_CONFIG_HOME).
func ConfigPath() string {
	if p := os.Getenv("LEAF_CONFIG"); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "leaf", "config.yaml")
}

// LoadConfig reads a client config file; a missing file is an empty
// config.
func LoadConfig(path string) (*Config, error) {
	cfg := &Config{}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return nil, fmt.Errorf("client config: %w", err)
	}
	if err := yamljson.Decode(data, cfg); err != nil {
		return nil, fmt.Errorf("client config %s: %w", path, err)
	}
	if cfg.Kind != "" && cfg.Kind != ConfigKind {
		return nil, fmt.Errorf("client config %s: kind must be %q, got %q", path, ConfigKind, cfg.Kind)
	}
	seen := map[string]bool{}
	for i, c := range cfg.Contexts {
		if c.Name == "" {
			return nil, fmt.Errorf("client config %s: contexts[%d]: name is required", path, i)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("client config %s: context %q is defined twice", path, c.Name)
		}
		seen[c.Name] = true
	}
	return cfg, nil
}

// Save writes the config with mode 0600 (it may hold a token), replacing
// the file in one rename.
func (c *Config) Save(path string) error {
	c.APIVersion, c.Kind = ConfigAPIVersion, ConfigKind
	data, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("client config: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("client config: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("client config: %w", err)
	}
	return nil
}

// Context returns the named context, or the current one if name is empty
// (nil if there is no current context).
func (c *Config) Context(name string) (*Context, error) {
	if name == "" {
		name = c.CurrentContext
		if name == "" {
			return nil, nil
		}
	}
	for i := range c.Contexts {
		if c.Contexts[i].Name == name {
			return &c.Contexts[i], nil
		}
	}
	return nil, fmt.Errorf("no context %q in the client config (have: %s)", name, strings.Join(c.names(), ", "))
}

func (c *Config) names() []string {
	var out []string
	for _, x := range c.Contexts {
		out = append(out, x.Name)
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}

// Options turns the context into client options, reading the token file.
func (x *Context) Options() (Options, error) {
	o := Options{Socket: expand(x.Socket), Server: x.Server, CAFile: expand(x.CA), CertFile: expand(x.Cert), KeyFile: expand(x.Key), Token: x.Token}
	if x.TokenFile != "" {
		if x.Token != "" {
			return o, fmt.Errorf("context %q: set token or tokenFile, not both", x.Name)
		}
		data, err := os.ReadFile(expand(x.TokenFile))
		if err != nil {
			return o, fmt.Errorf("context %q: token file: %w", x.Name, err)
		}
		o.Token = strings.TrimSpace(string(data))
	}
	return o, nil
}

func expand(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	return p
}
