package e2e

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/client"
	"github.com/leaf-ebpf/leaf/internal/testenv"
	"github.com/leaf-ebpf/leaf/internal/testenv/registry"
)

// pushToRegistry builds the package directories (by name@version) into
// a layout and pushes them to reg.
func pushToRegistry(t *testing.T, reg *registry.Registry, pkgs map[string]string) {
	t.Helper()
	layoutDir := filepath.Join(t.TempDir(), "layout")
	regFlags := []string{"--registry", reg.Host + "/leaf", "--ca-file", reg.CAFile, "--username", reg.Username, "--password-file", reg.PasswordFile}
	for ref, dir := range pkgs {
		leafPkg(t, "build", "--no-compile", "--layout", layoutDir, dir)
		leafPkg(t, append([]string{"push", ref, "--from-layout", layoutDir}, regFlags...)...)
	}
}

// registryConfig is a leafd configuration with reg as its one
// repository (unsigned packages allowed), reached through host (reg's
// own address, or a proxy in front of it).
func registryConfig(t *testing.T, reg *registry.Registry, host string) string {
	t.Helper()
	return cliFile(t, "leafd.yaml", []byte(fmt.Sprintf(`apiVersion: leaf.dev/v1alpha1
kind: DaemonConfig
repositories:
  - {name: registry, type: oci, url: %s/leaf, caFile: %s, username: %s, passwordFile: %s, trust: {allowUnsigned: true}}
`, host, reg.CAFile, reg.Username, reg.PasswordFile)))
}

// detachXDP detaches leaf's XDP link behind leafd's back and waits for
// the repair; it returns the repair latency leafd reports.
func detachXDP(t *testing.T, d *testenv.Daemon, name string) float64 {
	t.Helper()
	seq := lastSeq(t, d)
	lid := hookLinkID(t, d, name)
	l, err := link.NewFromID(lid)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Detach(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	ev := waitEvent(t, d, seq, v1.EventRestored, "link-detached")
	waitUntil(t, name+" attached on a new link", func() bool {
		s := status(t, d)[name]
		return s.State == v1.StateAttached && s.LinkID != uint32(lid)
	})
	if ev.LatencyMs == nil {
		t.Fatalf("restored event without a latency: %+v", ev)
	}
	return *ev.LatencyMs
}

// TestRepositoryDown applies from a real OCI registry (distribution
// 2.8), then stops it. Drift is repaired as it was with the registry up,
// a restart of leafd adopts everything from its store and package cache
// (the same programs, nothing reloaded, the companion running again),
// repair still works after the restart, and an apply that needs the
// registry is refused as unavailable (503) with nothing changed.
func TestRepositoryDown(t *testing.T) {
	testenv.RequireKernel(t)
	reg := registry.StartDistribution2(t)
	pushToRegistry(t, reg, map[string]string{
		"portfilter@2.0.0": pkgDir(t, "2.0.0"),
		"pktmon@1.0.0":     filepath.Join(companionRepo(t), "pktmon"),
	})
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--config", registryConfig(t, reg, reg.Host), "--companion-dir", companionDir(t)}})
	document := doc(
		fmt.Sprintf("name: f\npackage: portfilter@2.0.0\nrepository: registry\nhook: {type: xdp, interface: %s, netns: %s}\nparams: {ports: [7401]}", p.IfB, p.NsB),
		fmt.Sprintf("name: mon\npackage: pktmon@1.0.0\nprogram: count_tc\nhook: {type: tc, direction: ingress, interface: %s, netns: %s}\ncompanion: {args: [-map, counters, -interval, 50ms]}", p.IfB, p.NsB),
	)
	apply(t, d, document)
	first := waitEvent(t, d, 0, v1.EventCompanion, "started")
	up := detachXDP(t, d, "f")

	reg.Stop()
	down := detachXDP(t, d, "f")
	if !alive(first.PID) || status(t, d)["mon"].Companion.PID != first.PID {
		t.Errorf("the companion (pid %d) did not keep running with the registry stopped: %+v", first.PID, status(t, d)["mon"].Companion)
	}
	t.Logf("repair of a detached XDP link: %.1f ms with the registry up, %.1f ms with it stopped", up, down)
	// Loose on purpose (a shared machine): a repair that waited on the
	// registry would take its timeout, minutes, not a few times longer.
	if down > 10*up+2000 {
		t.Errorf("repair took %.1f ms with the registry stopped, %.1f ms with it up", down, up)
	}

	before := status(t, d)
	d.Stop()
	d.Restart()
	after := status(t, d)
	for _, n := range []string{"f", "mon"} {
		if after[n].State != v1.StateAttached || after[n].ProgramID != before[n].ProgramID || after[n].Digest != before[n].Digest || after[n].Trust != before[n].Trust || after[n].Repository != "registry" {
			t.Errorf("%s after a restart with the registry stopped: %+v; before: %+v", n, after[n], before[n])
		}
	}
	if strings.Contains(d.Logs(), "asking the repositories") || strings.Contains(d.Logs(), "drift repair waits") {
		t.Errorf("start-up went to the repositories for what the cache holds:\n%s", d.Logs())
	}
	ev := waitEvent(t, d, 0, v1.EventCompanion, "started")
	waitUntil(t, "the companion runs after the restart", func() bool {
		c := status(t, d)["mon"].Companion
		return c != nil && c.State == v1.CompanionRunning && c.PID == ev.PID && alive(ev.PID)
	})
	afterRestart := detachXDP(t, d, "f")
	t.Logf("repair after a restart with the registry stopped: %.1f ms", afterRestart)
	if !alive(ev.PID) {
		t.Error("the companion stopped during the repair")
	}
	if n := p.Delivered(t, 7401, 5, 300*time.Millisecond); n != 0 {
		t.Errorf("%d of 5 datagrams to the blocked port delivered after the repair", n)
	}

	// What the cache does not hold needs the registry: refused, and
	// nothing running changes.
	before = status(t, d)
	_, err := d.Client.Apply(ctx(t), doc(fmt.Sprintf("name: f\npackage: portfilter@2.1.0\nrepository: registry\nhook: {type: xdp, interface: %s, netns: %s}\nparams: {ports: [7401]}", p.IfB, p.NsB)), false)
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 || apiErr.Kind() != "unavailable" || len(apiErr.Body.Details) != 1 || apiErr.Body.Details[0].Attachment != "f" || apiErr.Body.Details[0].Field != "package" {
		t.Fatalf("apply of a version the cache lacks, registry stopped: %v (%+v); want 503, kind unavailable, attachment f, field package", err, apiErr)
	}
	if now := status(t, d); running(now) != running(before) {
		t.Errorf("a refused apply changed what runs:\nbefore %s\nafter  %s", running(before), running(now))
	}

	// A restart that applies a desired-state file naming the same
	// versions needs no registry either.
	d.Stop()
	d.Args = append(d.Args, "--desired-state", cliFile(t, "state.yaml", document))
	d.Restart()
	if now := status(t, d); running(now) != running(before) {
		t.Errorf("a restart with --desired-state, registry stopped, changed what runs:\nbefore %s\nafter  %s", running(before), running(now))
	}
	if strings.Contains(d.Logs(), "asking the repositories") {
		t.Errorf("start-up with --desired-state went to the repositories for what the cache holds:\n%s", d.Logs())
	}
}

// running sums up what the kernel runs per attachment.
func running(st map[string]v1.AttachmentStatus) string {
	var b strings.Builder
	names := make([]string, 0, len(st))
	for n := range st {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a := st[n]
		fmt.Fprintf(&b, "%s: %s %s %s prog %d link %d; ", n, a.Package, a.Digest, a.State, a.ProgramID, a.LinkID)
	}
	return b.String()
}
