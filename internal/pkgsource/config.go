package pkgsource

import (
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"strings"
)

// Repository types.
const (
	RepoDir      = "dir"     // plain directory or OCI image layout
	RepoRegistry = "oci"     // OCI registry
	RepoHTTP     = "http"    // static HTTP(S) index
	RepoKFaaS    = "kfaas"   // L3AF KFaaS tree
	BuiltinName  = "builtin" // the packages compiled into leafd
)

// Config is one package repository and its trust policy.
type Config struct {
	// Name is how desired state pins the repository and status reports
	// it; default: the path or URL.
	Name string `json:"name,omitempty"`
	// Type is dir (default), oci, http or kfaas.
	Type string `json:"type,omitempty"`
	// Path is a local directory (dir; kfaas served from disk).
	Path string `json:"path,omitempty"`
	// URL is host[:port]/prefix for oci, the base URL (holding
	// leaf-index.json) for http, the root URL for kfaas.
	URL string `json:"url,omitempty"`
	// CAFile holds the only CAs trusted for the server's certificate.
	CAFile string `json:"caFile,omitempty"`
	// Username and PasswordFile authenticate to a registry; the password
	// lives in a file readable by leafd only, never in the config.
	Username     string `json:"username,omitempty"`
	PasswordFile string `json:"passwordFile,omitempty"`
	// PlainHTTP talks HTTP to a registry (loopback development only).
	PlainHTTP bool `json:"plainHTTP,omitempty"`
	// Platform and Artifact shape KFaaS paths:
	// <url>/<name>/<version>/<platform>/<artifact>; defaults: the host's
	// distribution codename (VERSION_CODENAME in /etc/os-release, else
	// linux) and <name>.tar.gz ({name} and {version} are replaced).
	Platform string      `json:"platform,omitempty"`
	Artifact string      `json:"artifact,omitempty"`
	Trust    TrustConfig `json:"trust"`
	// Hints gives KFaaS packages' l3afd payload details (leafd's L3AF
	// API sets it; never read from the file).
	Hints KFaaSHints `json:"-"`
}

// TrustConfig is a repository's trust policy.
type TrustConfig struct {
	// AuthorKeys and RepositoryKeys are PEM public key files.
	AuthorKeys     []string `json:"authorKeys,omitempty"`
	RepositoryKeys []string `json:"repositoryKeys,omitempty"`
	// Require is author (default), repository or both.
	Require string `json:"require,omitempty"`
	// AllowUnsigned accepts packages that do not meet Require. Off by
	// default.
	AllowUnsigned bool `json:"allowUnsigned,omitempty"`
}

// UnmarshalJSON accepts a plain string as a directory repository.
func (r *Config) UnmarshalJSON(data []byte) error {
	var path string
	if err := json.Unmarshal(data, &path); err == nil {
		*r = Config{Type: RepoDir, Path: path}
		return nil
	}
	type plain Config
	var p plain
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return err
	}
	*r = Config(p)
	return nil
}

// DisplayName is the configured name, else the path or URL.
func (r *Config) DisplayName() string {
	switch {
	case r.Name != "":
		return r.Name
	case r.Path != "":
		return r.Path
	}
	return r.URL
}

// Validate checks the fields the type needs.
func (r *Config) Validate() error {
	switch r.Type {
	case "", RepoDir:
		if r.Path == "" {
			return fmt.Errorf("repository %s: type dir needs path", r.DisplayName())
		}
	case RepoRegistry, RepoHTTP:
		if r.URL == "" {
			return fmt.Errorf("repository %s: type %s needs url", r.DisplayName(), r.Type)
		}
	case RepoKFaaS:
		if r.URL == "" && r.Path == "" {
			return fmt.Errorf("repository %s: type kfaas needs url or path", r.DisplayName())
		}
		if _, err := kfaasBase(r); err != nil {
			return fmt.Errorf("repository %s: %w", r.DisplayName(), err)
		}
	default:
		return fmt.Errorf("repository %s: type must be dir, oci, http or kfaas, got %q", r.DisplayName(), r.Type)
	}
	return nil
}

// kfaasBase is where a KFaaS tree is: an http(s) URL, or a directory,
// given as path or as a file:// URL (l3afd's default scheme), which must
// be absolute.
func kfaasBase(r *Config) (string, error) {
	if r.URL == "" {
		return r.Path, nil
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return "", fmt.Errorf("url %q: %w", r.URL, err)
	}
	switch u.Scheme {
	case "http", "https":
		return r.URL, nil
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return "", fmt.Errorf("url %q: a file URL names a local path (file:///dir), not host %q", r.URL, u.Host)
		}
		if !path.IsAbs(u.Path) {
			return "", fmt.Errorf("url %q: a file URL must hold an absolute path (file:///dir)", r.URL)
		}
		return path.Clean(u.Path), nil
	}
	return "", fmt.Errorf("url %q: scheme must be http, https or file", r.URL)
}
