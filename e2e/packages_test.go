package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leaf-ebpf/leaf/client"
	"github.com/leaf-ebpf/leaf/internal/archive"
	"github.com/leaf-ebpf/leaf/internal/pkgsource"
	"github.com/leaf-ebpf/leaf/internal/signature"
	"github.com/leaf-ebpf/leaf/internal/testenv"
	"github.com/leaf-ebpf/leaf/internal/testenv/registry"
)

// pkgDir writes portfilter at version into a fresh directory.
func pkgDir(t *testing.T, version string) string {
	t.Helper()
	return filepath.Join(versionedRepo(t, version), "portfilter-"+version)
}

// leafPkg runs `leaf pkg ...` (no leafd needed) and returns its output.
func leafPkg(t *testing.T, args ...string) string {
	t.Helper()
	return mustCLI(t, "/nonexistent.sock", append([]string{"pkg"}, args...)...)
}

func keyID(t *testing.T, pubFile string) string {
	t.Helper()
	k, err := signature.LoadPublicKey(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	return k.ID
}

// TestDeployFromEveryRepositoryKind publishes portfilter with the leaf
// CLI to an OCI layout, a registry (TLS, basic auth), a static HTTP index
// and a KFaaS tree, all signed by one author key, and has leafd run one
// version from each, every attachment pinned to its repository: four
// programs in one XDP chain, each dropping its own port. A package signed
// by an untrusted key, or not matching its pinned digest, is refused with
// the reason and nothing running changes.
func TestDeployFromEveryRepositoryKind(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	work := t.TempDir()
	author := filepath.Join(work, "author")
	leafPkg(t, "keygen", "--out", author)
	stranger := filepath.Join(work, "stranger")
	leafPkg(t, "keygen", "--out", stranger)
	layoutDir := filepath.Join(work, "layout")

	// Build and sign each version in a local layout.
	digests := map[string]string{}
	for _, v := range []string{"2.0.0", "2.1.0", "2.2.0", "2.3.0", "2.9.0"} {
		out := leafPkg(t, "build", "--no-compile", "--layout", layoutDir, pkgDir(t, v))
		digests[v] = strings.Fields(out)[1]
		key := author
		if v == "2.9.0" {
			key = stranger
		}
		leafPkg(t, "sign", "portfilter@"+v, "--layout", layoutDir, "--key", key+".key")
	}
	leafPkg(t, "verify", "portfilter@2.0.0@"+digests["2.0.0"], "--layout", layoutDir, "--key", author+".pub")

	// Registry: push 2.1.0 and the stranger's 2.9.0.
	reg := registry.Start(t)
	regFlags := []string{"--registry", reg.Host + "/leaf", "--ca-file", reg.CAFile, "--username", reg.Username, "--password-file", reg.PasswordFile}
	for _, v := range []string{"2.1.0", "2.9.0"} {
		leafPkg(t, append([]string{"push", "portfilter@" + v, "--from-layout", layoutDir}, regFlags...)...)
	}
	// The signature travelled with the package.
	leafPkg(t, append([]string{"verify", "portfilter@2.1.0", "--key", author + ".pub"}, regFlags...)...)

	// Static HTTP index of the layout.
	web := filepath.Join(work, "web")
	leafPkg(t, "index", "--layout", layoutDir, "-o", web, "--key", author+".pub")
	webSrv := httptest.NewServer(http.FileServer(http.Dir(web)))
	t.Cleanup(webSrv.Close)

	// KFaaS: <root>/portfilter/2.3.0/linux/portfilter.tar.gz, signature
	// beside it.
	kfaas := filepath.Join(work, "kfaas")
	writeKFaaS(t, kfaas, pkgDir(t, "2.3.0"))
	bundle := filepath.Join(kfaas, "portfilter", "2.3.0", "linux", "portfilter.tar.gz.author.sigstore.json")
	leafPkg(t, "sign", "portfilter@2.3.0", "--layout", layoutDir, "--key", author+".key", "--bundle", bundle)
	kfaasSrv := httptest.NewServer(http.FileServer(http.Dir(kfaas)))
	t.Cleanup(kfaasSrv.Close)

	trust := fmt.Sprintf("trust: {authorKeys: [%s]}", author+".pub")
	cfg := cliFile(t, "leafd.yaml", []byte(fmt.Sprintf(`apiVersion: leaf.dev/v1alpha1
kind: DaemonConfig
repositories:
  - {name: layout, path: %s, %s}
  - {name: registry, type: oci, url: %s/leaf, caFile: %s, username: %s, passwordFile: %s, %s}
  - {name: web, type: http, url: %s, %s}
  - {name: kfaas, type: kfaas, url: %s, platform: linux, %s}
`, layoutDir, trust, reg.Host, reg.CAFile, reg.Username, reg.PasswordFile, trust, webSrv.URL, trust, kfaasSrv.URL, trust)))
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--config", cfg}})

	from := map[string]struct{ repo, version string }{
		"f-layout": {"layout", "2.0.0"}, "f-registry": {"registry", "2.1.0"},
		"f-web": {"web", "2.2.0"}, "f-kfaas": {"kfaas", "2.3.0"},
	}
	ports := map[string]int{"f-layout": 7101, "f-registry": 7102, "f-web": 7103, "f-kfaas": 7104}
	var atts []string
	for name, f := range from {
		atts = append(atts, pinned(p, name, f.repo, "portfilter@"+f.version+"@"+digests[f.version], ports[name]))
	}
	apply(t, d, doc(atts...))
	st := status(t, d)
	wantKey := keyID(t, author+".pub")
	for name, f := range from {
		s := st[name]
		if s.State != "attached" || s.Repository != f.repo || s.Digest != digests[f.version] || s.Trust != "signed" || len(s.Signers) != 1 || s.Signers[0].KeyID != wantKey || s.Signers[0].Role != "author" {
			t.Errorf("%s: state %s repository %s digest %s trust %s signers %+v; want attached from %s, %s, signed by %s", name, s.State, s.Repository, s.Digest, s.Trust, s.Signers, f.repo, digests[f.version], wantKey)
		}
	}
	for name, port := range ports {
		if got := p.Delivered(t, port, 5, 300*time.Millisecond); got != 0 {
			t.Errorf("%s: %d of 5 datagrams to port %d delivered, want 0 (dropped)", name, got, port)
		}
	}
	if got := p.Delivered(t, 7199, 5, 2*time.Second); got != 5 {
		t.Errorf("unlisted port: %d of 5 delivered", got)
	}

	before := status(t, d)
	for _, tc := range []struct {
		name, att, want string
	}{
		{"untrusted signer", pinned(p, "f-bad", "registry", "portfilter@2.9.0", 7105), "signed by none of the trusted keys"},
		{"digest pin", pinned(p, "f-bad", "registry", "portfilter@2.1.0@"+digests["2.0.0"], 7105), "pins " + digests["2.0.0"]},
		{"unknown repository", pinned(p, "f-bad", "nowhere", "portfilter@2.1.0", 7105), `no repository named "nowhere"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.Client.Apply(ctx(t), doc(append(atts, tc.att)...), false)
			var apiErr *client.APIError
			if !errors.As(err, &apiErr) || apiErr.StatusCode != 422 || len(apiErr.Body.Details) == 0 || apiErr.Body.Details[0].Field != "package" || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("apply: %v; want 422 on field package saying %q", err, tc.want)
			}
			after := status(t, d)
			for name := range from {
				if after[name].ProgramID != before[name].ProgramID || after[name].State != "attached" {
					t.Errorf("%s changed after a refused apply: %+v", name, after[name])
				}
			}
			if _, ok := after["f-bad"]; ok {
				t.Errorf("refused attachment appears in status")
			}
		})
	}
}

func pinned(p *testenv.Pair, name, repo, ref string, port int) string {
	return fmt.Sprintf(`name: %s
package: %s
repository: %s
hook: {type: xdp, interface: %s, netns: %s}
params: {ports: [%d]}`, name, ref, repo, p.IfB, p.NsB, port)
}

func writeKFaaS(t *testing.T, root, pkg string) {
	t.Helper()
	files := archive.Files{}
	entries, _ := os.ReadDir(pkg)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(pkg, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = data
	}
	var buf bytes.Buffer
	if err := pkgsource.WriteKFaaS(&buf, "portfilter", files); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "portfilter", "2.3.0", "linux")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "portfilter.tar.gz"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPackageSignaturesWithCosign: `leaf pkg sign` verifies with cosign
// verify-blob, and a bundle cosign sign-blob makes over the package's
// manifest, attached with `leaf pkg sign --attach-bundle`, verifies with
// `leaf pkg verify`. Offline throughout.
func TestPackageSignaturesWithCosign(t *testing.T) {
	cosign := testenv.Cosign(t)
	work := t.TempDir()
	layoutDir := filepath.Join(work, "layout")
	leafPkg(t, "build", "--no-compile", "--layout", layoutDir, pkgDir(t, "3.0.0"))
	leafPkg(t, "keygen", "--out", filepath.Join(work, "leaf"))
	leafPkg(t, "sign", "portfilter@3.0.0", "--layout", layoutDir, "--key", filepath.Join(work, "leaf.key"))
	cdir := filepath.Join(work, "for-cosign")
	leafPkg(t, "verify", "portfilter@3.0.0", "--layout", layoutDir, "--key", filepath.Join(work, "leaf.pub"), "--cosign-dir", cdir)

	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(cosign, args...)
		cmd.Dir = cdir
		cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=pw")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := run("verify-blob", "--key", filepath.Join(work, "leaf.pub"), "--bundle", "signature-1-author.sigstore.json",
		"--new-bundle-format", "--insecure-ignore-tlog=true", "--trusted-root", "trusted_root.json", "manifest.json")
	if !strings.Contains(out, "Verified OK") {
		t.Fatalf("cosign: %s", out)
	}

	run("generate-key-pair")
	run("sign-blob", "--key", "cosign.key", "--bundle", "cosign.sigstore.json", "--new-bundle-format", "--tlog-upload=false", "--yes", "manifest.json")
	leafPkg(t, "sign", "portfilter@3.0.0", "--layout", layoutDir, "--role", "repository", "--attach-bundle", filepath.Join(cdir, "cosign.sigstore.json"), "--public-key", filepath.Join(cdir, "cosign.pub"))
	out = leafPkg(t, "verify", "portfilter@3.0.0", "--layout", layoutDir, "--key", filepath.Join(work, "leaf.pub"), "--repository-key", filepath.Join(cdir, "cosign.pub"), "--require", "both")
	if !strings.Contains(out, "signed") || !strings.Contains(out, keyID(t, filepath.Join(cdir, "cosign.pub"))) {
		t.Fatalf("leaf pkg verify of cosign's countersignature:\n%s", out)
	}
	// The role comes from the key that verifies, not from the annotation:
	// with the keys swapped, leaf's "author" signature meets a policy
	// that requires a repository signature.
	r := runCLI(t, "/nonexistent.sock", nil, "pkg", "verify", "portfilter@3.0.0", "--layout", layoutDir, "--repository-key", filepath.Join(work, "leaf.pub"), "--require", "repository", "--key", filepath.Join(cdir, "cosign.pub"))
	if r.Code != 0 {
		t.Fatalf("verify: %s", r.Stderr)
	}
}

// TestPackageLint runs the automated review: the built-in package passes
// every check, the verifier included; a package the verifier rejects
// fails with the verifier's reason.
func TestPackageLint(t *testing.T) {
	testenv.RequireKernel(t)
	out := leafPkg(t, "lint", filepath.Join("..", "packages", "portfilter"))
	for _, check := range []string{"manifest", "elf:port_filter", "btf:port_filter", "license:port_filter", "verifier:port_filter", "params"} {
		if !strings.Contains(out, "ok  "+check) {
			t.Errorf("lint output lacks a passing %s check:\n%s", check, out)
		}
	}
	r := runCLI(t, "/nonexistent.sock", nil, "pkg", "lint", filepath.Join("..", "testdata", "packages", "badverifier"))
	if r.Code == 0 || !strings.Contains(r.Stdout, "FAIL  verifier:") {
		t.Errorf("lint of badverifier: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
}
