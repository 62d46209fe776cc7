package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/leaf-ebpf/leaf/client"
)

// connFlags say how to reach leafd. Precedence, most specific first:
// command-line flags, then environment (LEAF_SOCKET, LEAF_SERVER,
// LEAF_TOKEN), then the client config's context (--context, else its
// current context), then the default socket.
type connFlags struct {
	configPath, context                  string
	socket, server, ca, cert, key, token string
	tokenFile                            string
}

func (c *connFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&c.configPath, "client-config", "", "client config file (env LEAF_CONFIG, default ~/.config/leaf/config.yaml)")
	fs.StringVar(&c.context, "context", "", "context of the client config to use (default: its current context)")
	fs.StringVar(&c.socket, "socket", "", "leafd's API socket (env LEAF_SOCKET, default "+client.DefaultSocket+")")
	fs.StringVar(&c.server, "server", "", "a remote leafd, https://host:port (env LEAF_SERVER)")
	fs.StringVar(&c.ca, "ca", "", "CA bundle that verifies the remote leafd's certificate")
	// client-cert and client-key, not cert and key: leaf pkg uses --key
	// for signing keys.
	fs.StringVar(&c.cert, "client-cert", "", "client certificate for the remote leafd")
	fs.StringVar(&c.key, "client-key", "", "client certificate's key")
	fs.StringVar(&c.token, "token", "", "bearer token (env LEAF_TOKEN); prefer --token-file, which keeps it out of ps")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding a bearer token")
}

func (c *connFlags) path() string {
	if c.configPath != "" {
		return c.configPath
	}
	return client.ConfigPath()
}

// options resolves the flags, environment and config into client options.
func (c *connFlags) options(fs *pflag.FlagSet) (client.Options, error) {
	var o client.Options
	// A socket given on the command line or in LEAF_SOCKET replaces
	// whatever a context says, so the client config is not needed (and
	// one that cannot be read, say another user's, is no reason to fail)
	// unless a context or config is named explicitly.
	socketGiven := fs.Changed("socket") || os.Getenv("LEAF_SOCKET") != ""
	if !socketGiven || fs.Changed("context") || fs.Changed("client-config") {
		cfg, err := client.LoadConfig(c.path())
		if err != nil {
			return o, err
		}
		x, err := cfg.Context(c.context)
		if err != nil {
			return o, err
		}
		if x != nil {
			if o, err = x.Options(); err != nil {
				return o, err
			}
		}
	}
	// The environment replaces the context's target; a flag replaces both.
	target := func(flag, env string, set func(string)) {
		if fs.Changed(flag) {
			set(fs.Lookup(flag).Value.String())
		} else if v := os.Getenv(env); v != "" {
			set(v)
		}
	}
	target("socket", "LEAF_SOCKET", func(v string) { o = client.Options{Socket: v} })
	target("server", "LEAF_SERVER", func(v string) { o.Server, o.Socket = v, "" })
	target("token", "LEAF_TOKEN", func(v string) { o.Token = v })
	for _, f := range []struct {
		name string
		dst  *string
	}{{"ca", &o.CAFile}, {"client-cert", &o.CertFile}, {"client-key", &o.KeyFile}} {
		if fs.Changed(f.name) {
			*f.dst = fs.Lookup(f.name).Value.String()
		}
	}
	if fs.Changed("token-file") {
		data, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return o, fmt.Errorf("--token-file: %w", err)
		}
		o.Token = strings.TrimSpace(string(data))
	}
	return o, nil
}

func (c *connFlags) connect(fs *pflag.FlagSet, timeout time.Duration) (*client.Client, error) {
	o, err := c.options(fs)
	if err != nil {
		return nil, err
	}
	o.Timeout = timeout + 5*time.Second
	return client.NewWithOptions(o)
}
