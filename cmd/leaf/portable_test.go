package main

import (
	"os/exec"
	"strings"
	"testing"
)

// leaf is a client and package manager on every OS: it must not link
// leafd or anything that only builds on Linux. make cross-build builds it
// for darwin and windows; this names the culprit when it would not.
func TestLeafDoesNotLinkTheDaemon(t *testing.T) {
	for _, goos := range []string{"linux", "darwin", "windows"} {
		cmd := exec.Command("go", "list", "-deps", ".")
		cmd.Env = append(cmd.Environ(), "GOOS="+goos, "GOARCH=amd64")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("GOOS=%s go list: %v\n%s", goos, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, bad := range []string{"/internal/daemon", "/internal/server", "/internal/reconciler", "/internal/applier",
				"/internal/bpffs", "/internal/companion", "/internal/enforcer", "/internal/observer", "github.com/vishvananda/netlink"} {
				if strings.HasSuffix(dep, bad) || dep == bad {
					t.Errorf("GOOS=%s: leaf links %s", goos, dep)
				}
			}
		}
	}
}
