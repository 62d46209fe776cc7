package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/client"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// resizeRepo holds testdata's resize 1.0.0 (a 16-entry map) and 2.0.0
// (64 entries), and 2.0.0's object again as 2.0.1, declaring the map
// persist, and as 2.0.2, declaring it migrate.
func resizeRepo(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	copyPkg := func(src, dst, version, extra string) {
		os.MkdirAll(filepath.Join(root, dst), 0o755)
		for _, f := range []string{"leaf.yaml", "README.md", "resize.bpf.c", "resize.bpf.o"} {
			data, err := os.ReadFile(filepath.Join("..", "testdata", "packages", src, f))
			if err != nil {
				t.Fatal(err)
			}
			if f == "leaf.yaml" {
				data = []byte(strings.Replace(string(data), "version: 2.0.0", "version: "+version, 1) + extra)
			}
			os.WriteFile(filepath.Join(root, dst, f), data, 0o644)
		}
	}
	copyPkg("resize-1", "resize-1.0.0", "1.0.0", "")
	copyPkg("resize-2", "resize-2.0.0", "2.0.0", "")
	copyPkg("resize-2", "resize-2.0.1", "2.0.1", "maps: [{name: seen, upgrade: persist}]\n")
	copyPkg("resize-2", "resize-2.0.2", "2.0.2", "maps: [{name: seen, upgrade: migrate}]\n")
	return root
}

// TestUpgradeResizesMaps upgrades three attachments of a package whose
// new version resizes a map the kernel then cannot reuse: without a
// policy the dry run and the event log name the map recreated (and its
// counts are gone), with persist the upgrade is refused and nothing
// changes, with migrate the entries are copied into the larger map.
func TestUpgradeResizesMaps(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--repository-allow-unsigned", resizeRepo(t)}})
	att := func(name, version string, prio int) string {
		return fmt.Sprintf("name: %s\npackage: resize@%s\npriority: %d\nhook: {type: xdp, interface: %s, netns: %s}", name, version, prio, p.IfB, p.NsB)
	}
	apply(t, d, doc(att("r-plain", "1.0.0", 10), att("r-persist", "1.0.0", 20), att("r-migrate", "1.0.0", 30)))
	if n := p.Delivered(t, 7501, 5, 2*time.Second); n != 5 {
		t.Fatalf("%d of 5 arrived", n)
	}
	src := p.AddrA.String()
	countOf := func(attachment string) (uint64, uint32) {
		t.Helper()
		rows := cliTable(t, mustCLI(t, d.Socket, "maps", attachment, "seen", "--key-format", "ipv4"), "KEY", "VALUE")
		ml, err := d.Client.Maps(ctx(t), attachment)
		if err != nil {
			t.Fatal(err)
		}
		var max uint32
		for _, m := range ml.Maps {
			if m.Name == "seen" {
				max = m.MaxEntries
			}
		}
		var n uint64
		fmt.Sscan(rows[src]["VALUE"], &n)
		return n, max
	}
	for _, a := range []string{"r-plain", "r-persist", "r-migrate"} {
		if n, max := countOf(a); n < 5 || max != 16 {
			t.Fatalf("%s: %d packets from %s in a map of %d, want ≥ 5 in 16", a, n, src, max)
		}
	}
	before := status(t, d)

	// persist: refused, dry run or not, and nothing changes.
	persist := doc(att("r-plain", "1.0.0", 10), att("r-persist", "2.0.1", 20), att("r-migrate", "1.0.0", 30))
	for _, dry := range []bool{true, false} {
		_, err := d.Client.Apply(ctx(t), persist, dry)
		var apiErr *client.APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 422 || !strings.Contains(err.Error(), "map seen must persist across upgrades, but max_entries 16 → 64") {
			t.Fatalf("upgrade of a persist map (dry run %t): %v; want 422 naming the map", dry, err)
		}
	}
	if after := status(t, d); after["r-persist"].ProgramID != before["r-persist"].ProgramID {
		t.Errorf("a refused upgrade replaced the program")
	}
	if n, _ := countOf("r-persist"); n < 5 {
		t.Errorf("r-persist lost its counts after a refused upgrade: %d", n)
	}

	// No policy and migrate: the dry run says what happens to the map.
	upgrade := doc(att("r-plain", "2.0.0", 10), att("r-persist", "1.0.0", 20), att("r-migrate", "2.0.2", 30))
	res, err := d.Client.Apply(ctx(t), upgrade, true)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"r-plain": "maps not kept: seen (max_entries 16 → 64; recreated empty)", "r-migrate": "maps not kept: seen (max_entries 16 → 64; entries copied)"}
	reasons := map[string]string{}
	for _, a := range res.Actions {
		reasons[a.Attachment] = a.Reason
	}
	for a, w := range want {
		if !strings.Contains(reasons[a], w) {
			t.Errorf("dry run reason for %s: %q, want it to say %q", a, reasons[a], w)
		}
	}
	evs, _ := d.Client.Events(ctx(t), 0)
	since := uint64(0)
	if len(evs) > 0 {
		since = evs[len(evs)-1].Seq
	}
	apply(t, d, upgrade)
	got := map[string]string{}
	evs, _ = d.Client.Events(ctx(t), since)
	for _, e := range evs {
		if e.Type == v1.EventApply {
			got[e.Attachment] = e.Message
		}
	}
	for a, w := range want {
		if !strings.Contains(got[a], w) {
			t.Errorf("event for %s: %q, want it to say %q", a, got[a], w)
		}
	}
	if n, max := countOf("r-plain"); n != 0 || max != 64 {
		t.Errorf("r-plain after the upgrade: %d packets from %s in a map of %d; want the map recreated empty with 64 entries", n, src, max)
	}
	if n, max := countOf("r-migrate"); n < 5 || max != 64 {
		t.Errorf("r-migrate after the upgrade: %d packets from %s in a map of %d; want the counts copied into 64 entries", n, src, max)
	}
}
