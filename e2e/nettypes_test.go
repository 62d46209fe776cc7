package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/client"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// TestNetworkTypesEndToEnd deploys testdata's netparams (parameters of
// network types, counters keyed by IPv4 source, UDP port and IP
// protocol) and lintcases (a 65 536-entry array) with leafd, sends UDP
// from the pair's other end, and checks the declared metrics' label
// formats (ipv4, port) and skipZero, and `leaf maps` with formats,
// --key, --nonzero, --limit and paging past 10 000 entries.
func TestNetworkTypesEndToEnd(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	testdata, _ := filepath.Abs(filepath.Join("..", "testdata", "packages"))
	addr := fmt.Sprintf("127.0.0.1:%d", metricsPort(t))
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--repository-allow-unsigned", testdata, "--metrics-address", addr}})
	hook := fmt.Sprintf("hook: {type: xdp, interface: %s, netns: %s}", p.IfB, p.NsB)
	apply(t, d, doc(
		"name: np\npackage: netparams@1.0.0\npriority: 10\n"+hook+"\nparams: {nets: [192.168.0.0/16, 100.64.0.0/10], addrs6: ['2001:db8::1'], macs: ['02:00:00:00:00:aa'], port: 7399, action: drop}",
		"name: lc\npackage: lintcases@1.0.0\npriority: 20\n"+hook,
	))
	if n := p.Delivered(t, 7301, 5, 2*time.Second); n != 5 {
		t.Fatalf("%d of 5 datagrams arrived", n)
	}
	src := p.AddrA.String()

	fam := scrapeMetrics(t, addr)
	if v := metricValue(t, fam, "leaf_pkg_netparams_packets_by_port_total", map[string]string{"attachment": "np", "port": "7301"}); v != 5 {
		t.Errorf("packets_by_port_total{port=7301} = %v, want 5", v)
	}
	if v := metricValue(t, fam, "leaf_pkg_netparams_packets_by_source_total", map[string]string{"attachment": "np", "source": src}); v < 5 {
		t.Errorf("packets_by_source_total{source=%s} = %v, want at least 5", src, v)
	}
	protos := fam["leaf_pkg_netparams_packets_by_protocol_total"].GetMetric()
	if len(protos) == 0 || len(protos) > 3 {
		t.Errorf("packets_by_protocol_total has %d series; want the protocols seen (UDP), not 256", len(protos))
	}
	for _, m := range protos {
		if m.GetCounter().GetValue() == 0 {
			t.Errorf("skipZero exported a zero series: %v", m)
		}
	}
	if v := metricValue(t, fam, "leaf_pkg_netparams_packets_by_protocol_total", map[string]string{"attachment": "np", "protocol": "17"}); v < 5 {
		t.Errorf("packets_by_protocol_total{protocol=17} = %v", v)
	}

	sock := d.Socket
	if out := mustCLI(t, sock, "maps", "np", "nets", "--key-format", "cidr"); !strings.Contains(out, "192.168.0.0/16") || !strings.Contains(out, "100.64.0.0/10") {
		t.Errorf("leaf maps np nets --key-format cidr:\n%s", out)
	}
	if out := mustCLI(t, sock, "maps", "np", "macs", "--key-format", "mac"); !strings.Contains(out, "02:00:00:00:00:aa") {
		t.Errorf("leaf maps np macs --key-format mac:\n%s", out)
	}
	if out := mustCLI(t, sock, "maps", "np", "by_source", "--key-format", "ipv4"); !strings.Contains(out, src) {
		t.Errorf("leaf maps np by_source --key-format ipv4 lacks %s:\n%s", src, out)
	}
	rows := cliTable(t, mustCLI(t, sock, "maps", "np", "by_port", "--key-format", "port", "--key", "7301"), "KEY", "VALUE")
	if len(rows) != 1 || rows["7301"]["VALUE"] != "5" {
		t.Errorf("leaf maps np by_port --key 7301: %v, want one row 7301 → 5", rows)
	}

	// 65 536 entries: every one, page by page.
	all := strings.Split(strings.TrimSpace(mustCLI(t, sock, "maps", "lc", "big")), "\n")
	if len(all) != 65536+1 || strings.Fields(all[len(all)-1])[0] != "65535" {
		t.Errorf("leaf maps lc big printed %d lines (last %q), want a header and 65536 entries", len(all), all[len(all)-1])
	}
	nz := cliTable(t, mustCLI(t, sock, "maps", "lc", "big", "--nonzero"), "KEY", "VALUE")
	if len(nz) != 1 || !cliAtLeast(nz["0"]["VALUE"], 5) {
		t.Errorf("--nonzero: %v, want key 0 only, counting at least 5 packets", nz)
	}
	if out := mustCLI(t, sock, "maps", "lc", "big", "--limit", "3"); len(strings.Split(strings.TrimSpace(out), "\n")) != 5 || !strings.Contains(out, "(more entries follow)") {
		t.Errorf("--limit 3:\n%s", out)
	}
	page, err := d.Client.DumpMapQuery(ctx(t), "lc", "big", v1.MapQuery{Limit: 10, After: "05000000"})
	if err != nil || len(page.Entries) != 10 || *page.Entries[0].KeyUint != 6 || page.Next != "0f000000" {
		t.Errorf("page after key 5: %v entries, next %q, %v; want keys 6..15, next 0f000000", len(page.Entries), page.Next, err)
	}
	var apiErr *client.APIError
	if _, err := d.Client.DumpMapQuery(ctx(t), "lc", "big", v1.MapQuery{Key: "0500"}); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest {
		t.Errorf("a 2-byte key for a 4-byte map: %v, want 400", err)
	}
	if r := runCLI(t, sock, nil, "maps", "np", "by_source", "--key-format", "ipv4", "--key", "300.1.1.1"); r.Code == 0 || !strings.Contains(r.Stderr, "not an ipv4 address") {
		t.Errorf("bad --key: exit %d, %s", r.Code, r.Stderr)
	}
}
