package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/internal/auth"
)

func TestSecurityConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leafd.yaml")
	os.WriteFile(path, []byte(`apiVersion: leaf.dev/v1alpha1
kind: DaemonConfig
socketRoles:
  - {group: "3000", role: reader}
tls:
  address: 127.0.0.1:9443
  certFile: /c
  keyFile: /k
  clientCAFile: /ca
  minVersion: "1.2"
  subjects:
    - {glob: "spiffe://leaf.test/*", role: admin}
tokens: {keyFile: /t, maxTTL: 48h}
certWarningWindow: 240h
rateLimit: {perSecond: 2, burst: 5}
`), 0o600)
	cfg := Defaults()
	if err := LoadFile(path, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.SocketRoles[0].Role != auth.Reader || cfg.TLS.Subjects[0].Role != auth.Admin || time.Duration(cfg.Tokens.MaxTTL) != 48*time.Hour ||
		time.Duration(cfg.CertWarningWindow) != 240*time.Hour || cfg.RateLimit.Burst != 5 || time.Duration(cfg.CertCheckInterval) != time.Hour {
		t.Errorf("config %+v", cfg)
	}
}

func TestSecurityConfigErrors(t *testing.T) {
	for name, c := range map[string]struct {
		yaml, want string
	}{
		"bad role":          {"socketRoles: [{user: root, role: god}]", "god"},
		"bad duration":      {"certWarningWindow: 30", "duration"},
		"tls min 1.1":       {"tls: {address: ':1', certFile: a, keyFile: b, clientCAFile: c, minVersion: '1.1'}", "tls.minVersion"},
		"tls no CA":         {"tls: {address: ':1', certFile: a, keyFile: b}", "clientCAFile"},
		"tokens both":       {"tokens: {keyFile: a, keyCredential: b}", "exactly one"},
		"tokens none":       {"tokens: {}", "exactly one"},
		"rate limit zero":   {"rateLimit: {perSecond: 0, burst: 1}", "rateLimit"},
		"unknown tls field": {"tls: {address: ':1', cert: a}", "cert"},
		"default over max":  {"tokens: {keyFile: a, defaultTTL: 48h, maxTTL: 24h}", "defaultTTL"},
	} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(path, []byte(c.yaml+"\n"), 0o600)
		cfg := Defaults()
		err := LoadFile(path, &cfg)
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", name, err, c.want)
		}
	}
}
