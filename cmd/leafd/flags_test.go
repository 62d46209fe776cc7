package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/internal/config"
)

func TestHelpAndVersionExitZero(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 0 || !strings.Contains(out.String(), "--state-dir string") || errOut.Len() != 0 {
			t.Errorf("leafd %v: exit %d, stdout %q, stderr %q", args, code, out.String(), errOut.String())
		}
	}
	var out bytes.Buffer
	if code := run([]string{"--version"}, &out, &out); code != 0 || !strings.HasPrefix(out.String(), "leafd ") {
		t.Errorf("leafd --version: exit %d, %q", code, out.String())
	}
}

func TestBadFlagsExitTwo(t *testing.T) {
	for args, want := range map[string]string{
		"-socket=/x":              "unknown shorthand flag",
		"--socket":                "flag needs an argument",
		"--nosuch":                "unknown flag: --nosuch",
		"--allow-foreign=bad":     `--allow-foreign "bad"`,
		"--drift-scan-interval=x": "invalid argument",
	} {
		var out, errOut bytes.Buffer
		code := run(strings.Fields(args), &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), want) || out.Len() != 0 {
			t.Errorf("leafd %s: exit %d, stderr %q, want %q", args, code, errOut.String(), want)
		}
	}
}

// Flags are GNU style (--flag value and --flag=value) and override the
// config file; fields no flag names keep the file's value.
func TestFlagsOverrideConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "leafd.yaml")
	os.WriteFile(file, []byte("apiVersion: leaf.dev/v1alpha1\nkind: DaemonConfig\nsocket: /file.sock\nstateDir: /file-state\nlogLevel: debug\n"), 0o600)
	cfg, _, err := parseFlags([]string{"--config", file, "--socket=/flag.sock", "--cert-warning-window", "240h",
		"--allow-foreign", "name:a", "--allow-foreign=id:7", "--tls-address", "127.0.0.1:9443"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Socket != "/flag.sock" || cfg.StateDir != "/file-state" || cfg.LogLevel != "debug" {
		t.Errorf("socket %q state %q log %q", cfg.Socket, cfg.StateDir, cfg.LogLevel)
	}
	if time.Duration(cfg.CertWarningWindow) != 240*time.Hour || len(cfg.AllowForeign) != 2 || cfg.AllowForeign[1].ID != 7 {
		t.Errorf("window %v allow %+v", time.Duration(cfg.CertWarningWindow), cfg.AllowForeign)
	}
	if cfg.TLS == nil || cfg.TLS.Address != "127.0.0.1:9443" {
		t.Errorf("tls %+v", cfg.TLS)
	}
	def, _, err := parseFlags(nil)
	if err != nil || def.Socket != config.Defaults().Socket || def.TLS != nil {
		t.Errorf("no flags: %+v %v", def, err)
	}
}
