package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/internal/testenv"
	"github.com/leaf-ebpf/leaf/internal/testenv/registry"
)

// TestRegistrySignedPushCountersignDeploy walks what an author and an
// operator do with the CLI against each registry flavour (distribution
// v3 in process, and Debian's distribution 2.8 binary, neither with the
// referrers API): build, sign as author, push, countersign in the
// registry, verify both, list with --password-file, and deploy with
// leafd requiring both signatures. The author's signature survives the
// countersign and a second push.
func TestRegistrySignedPushCountersignDeploy(t *testing.T) {
	testenv.RequireKernel(t)
	for _, fl := range registry.Flavours {
		t.Run(fl.Name, func(t *testing.T) {
			reg := fl.Start(t)
			work := t.TempDir()
			author, repoKey := filepath.Join(work, "author"), filepath.Join(work, "repo")
			leafPkg(t, "keygen", "--out", author)
			leafPkg(t, "keygen", "--out", repoKey)
			layoutDir := filepath.Join(work, "layout")
			digest := strings.Fields(leafPkg(t, "build", "--no-compile", "--layout", layoutDir, pkgDir(t, "3.0.0")))[1]
			leafPkg(t, "sign", "portfilter@3.0.0", "--layout", layoutDir, "--key", author+".key")

			regFlags := []string{"--registry", reg.Host + "/leaf", "--ca-file", reg.CAFile, "--username", reg.Username, "--password-file", reg.PasswordFile}
			leafPkg(t, append([]string{"push", "portfilter@3.0.0", "--from-layout", layoutDir}, regFlags...)...)
			leafPkg(t, append([]string{"sign", "portfilter@3.0.0", "--role", "repository", "--key", repoKey + ".key"}, regFlags...)...)
			// Pushing again (the author re-publishes) keeps the countersignature.
			leafPkg(t, append([]string{"push", "portfilter@3.0.0", "--from-layout", layoutDir}, regFlags...)...)
			out := leafPkg(t, append([]string{"verify", "portfilter@3.0.0@" + digest, "--key", author + ".pub", "--repository-key", repoKey + ".pub", "--require", "both"}, regFlags...)...)
			if !strings.Contains(out, "author") || !strings.Contains(out, "repository") {
				t.Errorf("verify printed %q, want both signers", out)
			}
			list := leafPkg(t, append([]string{"list"}, regFlags...)...)
			if !strings.Contains(list, "portfilter@3.0.0") || !strings.Contains(list, digest) {
				t.Errorf("list with --password-file:\n%s", list)
			}

			cfg := cliFile(t, "leafd.yaml", []byte(fmt.Sprintf(`apiVersion: leaf.dev/v1alpha1
kind: DaemonConfig
repositories:
  - {name: registry, type: oci, url: %s/leaf, caFile: %s, username: %s, passwordFile: %s, trust: {authorKeys: [%s], repositoryKeys: [%s], require: both}}
`, reg.Host, reg.CAFile, reg.Username, reg.PasswordFile, author+".pub", repoKey+".pub")))
			d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--config", cfg}})
			p := testenv.NewPair(t)
			apply(t, d, doc(pinned(p, "f-signed", "registry", "portfilter@3.0.0@"+digest, 7201)))
			s := status(t, d)["f-signed"]
			roles := map[string]bool{}
			for _, sg := range s.Signers {
				roles[sg.Role] = true
			}
			if s.State != "attached" || s.Trust != "signed" || !roles["author"] || !roles["repository"] {
				t.Errorf("status %+v; want attached, signed by author and repository", s)
			}
			if got := p.Delivered(t, 7201, 5, 300*time.Millisecond); got != 0 {
				t.Errorf("%d of 5 datagrams to the filtered port delivered, want 0", got)
			}
		})
	}
}

// TestPkgListRegistryErrors: listing a registry that cannot be reached,
// or with a wrong password, fails with the reason instead of printing an
// empty table.
func TestPkgListRegistryErrors(t *testing.T) {
	reg := registry.Start(t)
	wrong := cliFile(t, "password", []byte("wrong\n"))
	for name, args := range map[string][]string{
		"unreachable":    {"--registry", "127.0.0.1:1/leaf", "--ca-file", reg.CAFile},
		"wrong password": {"--registry", reg.Host + "/leaf", "--ca-file", reg.CAFile, "--username", reg.Username, "--password-file", wrong},
	} {
		for _, cmd := range [][]string{{"pkg", "list"}, {"pkg", "search", "port"}} {
			r := runCLI(t, "/nonexistent.sock", nil, append(cmd, args...)...)
			if r.Code == 0 || !strings.Contains(r.Stderr, "list repository") {
				t.Errorf("%s: leaf %s: exit %d, stderr %q; want a failure naming the repository", name, strings.Join(cmd, " "), r.Code, r.Stderr)
			}
		}
	}
}
