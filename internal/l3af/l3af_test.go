package l3af

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/leaf-ebpf/leaf/internal/archive"
	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/pkgsource"
	"github.com/leaf-ebpf/leaf/internal/repository"
)

// TestMapArgsShapes: both shapes l3afd has used decode, and encode back in
// the shape given.
func TestMapArgsShapes(t *testing.T) {
	for _, in := range []string{
		`{"rl_config_map":"2","rl_ports_map":"8080,8081"}`,
		`[{"name":"rl_ports_map","args":[{"key":8080,"value":1},{"key":8081,"value":1}]}]`,
		`null`,
	} {
		var m MapArgs
		if err := json.Unmarshal([]byte(in), &m); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		out, _ := json.Marshal(m)
		if string(out) != in {
			t.Errorf("round trip %s → %s", in, out)
		}
	}
	var m MapArgs
	if err := json.Unmarshal([]byte(`{"rl_config_map": 2}`), &m); err != nil || m.Strings["rl_config_map"] != "2" {
		t.Errorf("a number in the object shape: %v %v", m, err)
	}
	for _, bad := range []string{`"8080"`, `{"m": [1]}`, `[{"name": "m", "args": [{"key": "x"}]}]`} {
		if err := json.Unmarshal([]byte(bad), &m); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// TestMapParams: map_args become typed parameter values of the package's
// derived parameters, from the real fixture object's BTF.
func TestMapParams(t *testing.T) {
	obj, err := os.ReadFile(filepath.Join("..", "..", "testdata", "l3af", "portdrop", "portdrop.bpf.o"))
	if err != nil {
		t.Fatal(err)
	}
	h := pkgsource.KFaaSHint{Object: "portdrop.bpf.o", Function: "_xdp_portdrop", ProgType: "xdp", ChainMap: "xdp_portdrop_next", Maps: []string{"portdrop_config", "portdrop_ports"}}
	m, err := pkgsource.DeriveManifest("portdrop", "0.0.0-latest", archive.Files{"portdrop.bpf.o": obj}, h)
	if err != nil {
		t.Fatal(err)
	}
	if p := m.Param("portdrop_ports"); p == nil || p.Type != "list<u16>" || p.Map.As != "keys" {
		t.Fatalf("portdrop_ports: %+v", p)
	}
	if p := m.Param("portdrop_config"); p == nil || p.Type != "u32" || p.Map.As != "value" {
		t.Fatalf("portdrop_config: %+v", p)
	}
	if m.Param("portdrop_drop_count") != nil || m.Programs[0].Chain.Map != "xdp_portdrop_next" {
		t.Errorf("derived: %+v", m)
	}
	got, err := mapParams(MapArgs{Strings: map[string]string{"portdrop_ports": "7001, 7002", "portdrop_config": "1"}}, m)
	want := map[string]any{"portdrop_ports": []any{int64(7001), int64(7002)}, "portdrop_config": int64(1)}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("object shape: %v %v", got, err)
	}
	got, err = mapParams(MapArgs{List: []MapArg{{Name: "portdrop_ports", Args: []KeyValue{{7001, 1}}}, {Name: "portdrop_config", Args: []KeyValue{{0, 3}}}}}, m)
	want = map[string]any{"portdrop_ports": []any{int64(7001)}, "portdrop_config": int64(3)}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("list shape: %v %v", got, err)
	}
	for _, bad := range []MapArgs{
		{Strings: map[string]string{"portdrop_ports": "80,x"}},
		{Strings: map[string]string{"portdrop_config": "1,2"}},
		{Strings: map[string]string{"nosuch": "1"}},
		{List: []MapArg{{Name: "portdrop_ports", Args: []KeyValue{{80, 5}}}}},
		{List: []MapArg{{Name: "portdrop_config", Args: []KeyValue{{1, 5}}}}},
	} {
		if _, err := mapParams(bad, m); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	// A type the ELF does not hold, or a chain map it lacks, is refused.
	for _, h := range []pkgsource.KFaaSHint{{ProgType: "tc"}, {ChainMap: "portdrop_ports"}, {Function: "nope"}, {Object: "x.o"}} {
		if _, err := pkgsource.DeriveManifest("portdrop", "1.0.0", archive.Files{"portdrop.bpf.o": obj}, h); err == nil {
			t.Errorf("hint %+v accepted", h)
		}
	}
}

func TestNames(t *testing.T) {
	for in, want := range map[string]string{"latest": "0.0.0-latest", "1.2.3": "1.2.3", "v2.0.1": "2.0.1", "2024.01": "0.0.0-2024.01"} {
		if got, err := PackageVersion(in); err != nil || got != want {
			t.Errorf("PackageVersion(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := PackageVersion("../x"); err == nil {
		t.Error("PackageVersion accepted a path")
	}
	if n, err := PackageName("connection_limit"); err != nil || n != "connection-limit" {
		t.Errorf("PackageName: %q %v", n, err)
	}
	if n := AttachmentName("eth0", HookTCEgress, "Rate_Limit"); n != "l3af-eth0-tce-rate-limit" {
		t.Errorf("AttachmentName: %q", n)
	}
	long := AttachmentName("eth0", HookXDPIngress, strings.Repeat("x", 80))
	if len(long) > 63 || long == AttachmentName("eth0", HookXDPIngress, strings.Repeat("x", 81)) {
		t.Errorf("long names: %q", long)
	}
}

// TestMergeRemove: add replaces a program of the same name and appends
// others; delete removes by name and refuses unknown names.
func TestMergeRemove(t *testing.T) {
	prog := func(name string, seq int) *Program { return &Program{Name: name, SeqID: seq} }
	cur := Config{{Iface: "eth0", BPFPrograms: &Programs{XDPIngress: []*Program{prog("a", 1), prog("b", 2)}}}}
	next := merge(cur, Config{{Iface: "eth0", BPFPrograms: &Programs{XDPIngress: []*Program{prog("b", 5), prog("c", 3)}}}, {Iface: "eth1", BPFPrograms: &Programs{TCEgress: []*Program{prog("d", 1)}}}})
	var names []string
	for _, e := range next.sorted().entries() {
		names = append(names, e.iface+"/"+e.prog.Name)
	}
	if strings.Join(names, " ") != "eth0/a eth0/c eth0/b eth1/d" {
		t.Errorf("merged: %v", names)
	}
	out, err := remove(next, []Names{{Iface: "eth1", BPFPrograms: &ProgramNames{TCEgress: []string{"d"}}}})
	if err != nil || len(out) != 1 {
		t.Errorf("remove: %v %v", out, err)
	}
	if _, err := remove(next, []Names{{Iface: "eth1", BPFPrograms: &ProgramNames{TCIngress: []string{"d"}}}}); err == nil {
		t.Error("removed a program from the wrong hook")
	}
}

func TestCheck(t *testing.T) {
	s := New(Options{HostName: "h"}, nil, nil, &Catalog{})
	ok := Config{{HostName: "h", Iface: "eth0", BPFPrograms: &Programs{XDPIngress: []*Program{{Name: "a", Version: "latest", Artifact: "a.tar.gz", ProgType: "xdp"}}}}}
	if err := s.check(ok); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(c Config){
		"host":      func(c Config) { c[0].HostName = "other" },
		"iface":     func(c Config) { c[0].Iface = "../x" },
		"prog_type": func(c Config) { c[0].BPFPrograms.XDPIngress[0].ProgType = "tc" },
		"aggregator": func(c Config) {
			c[0].BPFPrograms.XDPIngress[0].MonitorMaps = []MonitorMap{{Name: "m", Aggregator: "sum"}}
		},
		"probes": func(c Config) { c[0].BPFPrograms.Probes = []*Program{{Name: "p"}} },
		"duplicate": func(c Config) {
			c[0].BPFPrograms.XDPIngress = append(c[0].BPFPrograms.XDPIngress, c[0].BPFPrograms.XDPIngress[0])
		},
	} {
		var c Config
		data, _ := json.Marshal(ok)
		json.Unmarshal(data, &c)
		mut(c)
		if err := s.check(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestAggregators follow l3afd: max-rate is the largest change between
// samples in the window, avg the window's mean.
func TestAggregators(t *testing.T) {
	var rate, avg, scalar sampled
	for _, v := range []float64{10, 15, 35, 40} {
		rate.add(AggMaxRate, v, 3)
		avg.add(AggAvg, v, 2)
		scalar.add(AggScalar, v, 2)
	}
	if rate.value != 20 || avg.value != 37.5 || scalar.value != 40 {
		t.Errorf("max-rate %v avg %v scalar %v", rate.value, avg.value, scalar.value)
	}
}

// TestMigrateTLS: l3afd's mTLS listener becomes leafd's TLS listener,
// its SAN rules subject rules, with the difference reported.
func TestMigrateTLS(t *testing.T) {
	ini, err := ParseINI([]byte(`[l3af-configs]
restapi-addr: 0.0.0.0:7080
[mtls]
enabled: true
min-tls-version: TLS_1_2
cert-dir: /etc/l3af/certs
cacert-filename: ca.pem
server-crt-filename: server.crt
server-key-filename: server.key
san-match-rules: .+l3afd.l3af.io, ^l3afd.l3af.io$
`))
	if err != nil {
		t.Fatal(err)
	}
	m := &Migration{Daemon: map[string]any{}}
	migrateTLS(m, func(s, k string) string { return ini[s][k] }, func(f string, a ...any) { m.Report = append(m.Report, f) })
	tls := m.Daemon["tls"].(map[string]any)
	if tls["address"] != "0.0.0.0:7080" || tls["certFile"] != "/etc/l3af/certs/server.crt" || tls["clientCAFile"] != "/etc/l3af/certs/ca.pem" || tls["minVersion"] != "1.2" {
		t.Errorf("tls: %v", tls)
	}
	if subj := tls["subjects"].([]map[string]any); len(subj) != 2 || subj[1]["regex"] != "^l3afd.l3af.io$" || len(m.Report) != 1 {
		t.Errorf("subjects %v, report %v", subj, m.Report)
	}
	if _, err := ParseINI([]byte("key: outside a section\n")); err == nil {
		t.Error("a key outside a section was accepted")
	}
}

// TestAttachmentHooks: l3afd's hook lists map to leaf's hooks, seq_id to
// priority, and the package is pinned by digest in the repository named.
func TestAttachmentHooks(t *testing.T) {
	obj, err := os.ReadFile(filepath.Join("..", "..", "testdata", "l3af", "portdrop", "portdrop.bpf.o"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := pkgsource.DeriveManifest("portdrop", "0.0.0-latest", archive.Files{"portdrop.bpf.o": obj}, pkgsource.KFaaSHint{})
	if err != nil {
		t.Fatal(err)
	}
	pkg := repository.NewPackage(m, "sha256:"+strings.Repeat("a", 64), "kfaas", nil, nil)
	for hook, want := range map[string]desired.Hook{
		HookXDPIngress: {Type: "xdp", Interface: "eth0", Netns: "ns"},
		HookTCIngress:  {Type: "tc", Interface: "eth0", Netns: "ns", Direction: "ingress"},
		HookTCEgress:   {Type: "tc", Interface: "eth0", Netns: "ns", Direction: "egress"},
	} {
		a, err := attachment(entry{iface: "eth0", hook: hook, prog: &Program{Name: "portdrop", SeqID: 3}}, target{"kfaas", "portdrop", "0.0.0-latest"}, pkg, "ns")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a.Hook, want) || *a.Priority != 3 || a.Repository != "kfaas" || a.Package != "portdrop@0.0.0-latest@"+pkg.Digest {
			t.Errorf("%s: %+v", hook, a)
		}
	}
}
