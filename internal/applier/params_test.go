package applier

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/internal/manifest"
	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/packages"
)

func requireBPF(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create BPF maps")
	}
}

// newMap creates a real kernel map, closed when the test ends.
func newMap(t *testing.T, typ ebpf.MapType, keySize, valueSize, maxEntries uint32) *ebpf.Map {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "leaf_test", Type: typ, KeySize: keySize, ValueSize: valueSize, MaxEntries: maxEntries})
	if err != nil {
		t.Skipf("create %s map: %v", typ, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func u16(v uint16) []byte { return binary.NativeEndian.AppendUint16(nil, v) }

// keysOf returns the map's u16 keys, sorted, and checks every value is 1.
func keysOf(t *testing.T, m *ebpf.Map) []uint16 {
	t.Helper()
	var out []uint16
	var k uint16
	var v uint8
	it := m.Iterate()
	for it.Next(&k, &v) {
		if v != 1 {
			t.Errorf("key %d has value %d, want 1", k, v)
		}
		out = append(out, k)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func equalKeys(a []uint16, b ...uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSetKeys(t *testing.T) {
	requireBPF(t)
	m := newMap(t, ebpf.Hash, 2, 1, 16)
	steps := []struct {
		set  [][]byte
		want []uint16
	}{
		{[][]byte{u16(80), u16(443)}, []uint16{80, 443}},
		{[][]byte{u16(443), u16(8080), u16(443)}, []uint16{443, 8080}}, // duplicates are one key
		{[][]byte{u16(8080), u16(443)}, []uint16{443, 8080}},           // same set: unchanged
		{[][]byte{u16(1), u16(2), u16(65535)}, []uint16{1, 2, 65535}},  // all replaced
		{nil, nil},                      // emptied
		{[][]byte{u16(0)}, []uint16{0}}, // zero is a key like any other
	}
	for i, s := range steps {
		if err := setKeys(m, s.set); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := keysOf(t, m); !equalKeys(got, s.want...) {
			t.Fatalf("step %d: keys %v, want %v", i, got, s.want)
		}
	}
}

// TestSetKeysReplacesFullSet checks that a set may be replaced by another
// that fits the map even when both together do not.
func TestSetKeysReplacesFullSet(t *testing.T) {
	requireBPF(t)
	m := newMap(t, ebpf.Hash, 2, 1, 4)
	if err := setKeys(m, [][]byte{u16(1), u16(2), u16(3), u16(4)}); err != nil {
		t.Fatal(err)
	}
	if err := setKeys(m, [][]byte{u16(4), u16(5), u16(6), u16(7)}); err != nil {
		t.Fatalf("replace a full set: %v", err)
	}
	if got := keysOf(t, m); !equalKeys(got, 4, 5, 6, 7) {
		t.Errorf("keys %v", got)
	}
	// Room for both: the union is written first; the result is the same.
	if err := setKeys(m, [][]byte{u16(7)}); err != nil {
		t.Fatal(err)
	}
	if err := setKeys(m, [][]byte{u16(8), u16(9)}); err != nil {
		t.Fatal(err)
	}
	if got := keysOf(t, m); !equalKeys(got, 8, 9) {
		t.Errorf("keys %v", got)
	}
}

// TestSetKeysKeepsValues checks that a kept key keeps the value the
// program holds under it (a counter, say), and only new keys get 1.
func TestSetKeysKeepsValues(t *testing.T) {
	requireBPF(t)
	m := newMap(t, ebpf.Hash, 2, 1, 16)
	if err := m.Put(uint16(80), uint8(7)); err != nil {
		t.Fatal(err)
	}
	if err := setKeys(m, [][]byte{u16(80), u16(81)}); err != nil {
		t.Fatal(err)
	}
	var v uint8
	if err := m.Lookup(uint16(80), &v); err != nil || v != 7 {
		t.Errorf("kept key 80 holds %d (%v), want its value 7 kept", v, err)
	}
	if err := m.Lookup(uint16(81), &v); err != nil || v != 1 {
		t.Errorf("new key 81 holds %d (%v), want 1", v, err)
	}
}

func TestSetKeysWideValue(t *testing.T) {
	requireBPF(t)
	m := newMap(t, ebpf.Hash, 4, 8, 16)
	if err := setKeys(m, [][]byte{binary.NativeEndian.AppendUint32(nil, 7)}); err != nil {
		t.Fatal(err)
	}
	var v uint64
	if err := m.Lookup(uint32(7), &v); err != nil {
		t.Fatal(err)
	}
	// The value's first byte is 1, the rest 0.
	want := binary.NativeEndian.Uint64([]byte{1, 0, 0, 0, 0, 0, 0, 0})
	if v != want {
		t.Errorf("value %#x, want %#x", v, want)
	}
}

// TestSetKeysNeverAbsent checks, with a reader running against the real
// map, that a key in both the old and the new set is never missing while
// the set changes.
func TestSetKeysNeverAbsent(t *testing.T) {
	requireBPF(t)
	m := newMap(t, ebpf.Hash, 2, 1, 64)
	sets := [][][]byte{{u16(22)}, {u16(22)}}
	for i := 1; i <= 40; i++ {
		sets[0] = append(sets[0], u16(uint16(1000+i)))
		sets[1] = append(sets[1], u16(uint16(2000+i)))
	}
	if err := setKeys(m, sets[0]); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var missing, lookups atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var v uint8
		for !stop.Load() {
			lookups.Add(1)
			if err := m.Lookup(uint16(22), &v); err != nil {
				missing.Add(1)
			}
		}
	}()
	for i := 0; i < 200; i++ {
		if err := setKeys(m, sets[i%2]); err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if missing.Load() != 0 {
		t.Errorf("key 22 was missing in %d of %d lookups", missing.Load(), lookups.Load())
	}
	if lookups.Load() == 0 {
		t.Error("the reader never ran")
	}
}

func TestSetKeysErrors(t *testing.T) {
	requireBPF(t)
	m := newMap(t, ebpf.Hash, 2, 1, 2)
	err := setKeys(m, [][]byte{u16(1), u16(2), u16(3)})
	if err == nil || !strings.Contains(err.Error(), "add key") {
		t.Errorf("overfull map: %v", err)
	}
	err = setKeys(m, [][]byte{{1, 2, 3, 4}})
	if err == nil || !strings.Contains(err.Error(), "add key 01020304") {
		t.Errorf("wrong key size: %v", err)
	}
}

func portfilterManifest(t *testing.T) *manifest.Manifest {
	t.Helper()
	l, err := repository.OpenFS("builtin", packages.FS)
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.Resolve("portfilter", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	return p.Manifest
}

func nums(vs ...string) []any {
	out := []any{}
	for _, v := range vs {
		out = append(out, json.Number(v))
	}
	return out
}

func TestWriteMapParamsKeys(t *testing.T) {
	requireBPF(t)
	m := portfilterManifest(t)
	ports := newMap(t, ebpf.Hash, 2, 1, 1024)
	maps := map[string]*ebpf.Map{"blocked_ports": ports}
	if err := writeMapParams(m, maps, map[string]any{"ports": nums("8080", "9999")}); err != nil {
		t.Fatal(err)
	}
	if got := keysOf(t, ports); !equalKeys(got, 8080, 9999) {
		t.Fatalf("keys %v", got)
	}
	// Numbers as the store or API may hand them over.
	if err := writeMapParams(m, maps, map[string]any{"ports": []any{float64(53), 8080}}); err != nil {
		t.Fatal(err)
	}
	if got := keysOf(t, ports); !equalKeys(got, 53, 8080) {
		t.Fatalf("keys %v", got)
	}
	if err := writeMapParams(m, maps, map[string]any{"ports": []any{}}); err != nil {
		t.Fatal(err)
	}
	if got := keysOf(t, ports); len(got) != 0 {
		t.Fatalf("keys %v after emptying", got)
	}
	// Nothing to write is fine.
	if err := writeMapParams(m, maps, nil); err != nil {
		t.Fatal(err)
	}
}

func TestWriteMapParamsValue(t *testing.T) {
	requireBPF(t)
	m := &manifest.Manifest{Params: []manifest.Param{
		{Name: "limit", Type: "u64", Map: &manifest.MapTarget{Name: "limits", As: "value", Key: 3}},
		{Name: "level", Type: "i8", Map: &manifest.MapTarget{Name: "levels", As: "value"}},
	}}
	limits := newMap(t, ebpf.Array, 4, 8, 4)
	levels := newMap(t, ebpf.Hash, 4, 1, 4)
	maps := map[string]*ebpf.Map{"limits": limits, "levels": levels}
	if err := writeMapParams(m, maps, map[string]any{"limit": json.Number("18446744073709551615"), "level": json.Number("-2")}); err != nil {
		t.Fatal(err)
	}
	var v uint64
	if err := limits.Lookup(uint32(3), &v); err != nil || v != 1<<64-1 {
		t.Errorf("limits[3] = %d, %v", v, err)
	}
	for _, k := range []uint32{0, 1, 2} {
		if err := limits.Lookup(k, &v); err != nil || v != 0 {
			t.Errorf("limits[%d] = %d, %v; want untouched 0", k, v, err)
		}
	}
	var b int8
	if err := levels.Lookup(uint32(0), &b); err != nil || b != -2 {
		t.Errorf("levels[0] = %d, %v", b, err)
	}
	// A new value overwrites.
	if err := writeMapParams(m, maps, map[string]any{"limit": json.Number("5")}); err != nil {
		t.Fatal(err)
	}
	if err := limits.Lookup(uint32(3), &v); err != nil || v != 5 {
		t.Errorf("limits[3] = %d, %v", v, err)
	}
}

func TestWriteMapParamsErrors(t *testing.T) {
	requireBPF(t)
	m := portfilterManifest(t)
	ports := newMap(t, ebpf.Hash, 2, 1, 1024)
	if err := ports.Put(uint16(22), uint8(1)); err != nil {
		t.Fatal(err)
	}
	maps := map[string]*ebpf.Map{"blocked_ports": ports}
	for _, tc := range []struct {
		name   string
		maps   map[string]*ebpf.Map
		values map[string]any
		want   string
	}{
		{"undeclared", maps, map[string]any{"bogus": nums("1")}, "parameter bogus is not a map parameter"},
		{"const param", maps, map[string]any{"filter_tcp": false}, "parameter filter_tcp is not a map parameter"},
		{"map not loaded", map[string]*ebpf.Map{}, map[string]any{"ports": nums("1")}, "parameter ports: map blocked_ports not loaded"},
		{"out of range", maps, map[string]any{"ports": nums("1", "70000")}, "parameter ports: item 1: 70000 out of range for u16"},
		{"not a list", maps, map[string]any{"ports": json.Number("80")}, "parameter ports: expected a list of u16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := writeMapParams(m, tc.maps, tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			// A refused value leaves the map as it was.
			if got := keysOf(t, ports); !equalKeys(got, 22) {
				t.Errorf("map changed to %v", got)
			}
		})
	}
	// A kernel error names the parameter and map.
	small := newMap(t, ebpf.Hash, 2, 1, 1)
	err := writeMapParams(m, map[string]*ebpf.Map{"blocked_ports": small}, map[string]any{"ports": nums("1", "2")})
	if err == nil || !strings.Contains(err.Error(), "parameter ports: map blocked_ports: add key") {
		t.Errorf("overfull map: %v", err)
	}
	value := &manifest.Manifest{Params: []manifest.Param{{Name: "limit", Type: "u64", Map: &manifest.MapTarget{Name: "limits", As: "value", Key: 9}}}}
	arr := newMap(t, ebpf.Array, 4, 8, 4)
	err = writeMapParams(value, map[string]*ebpf.Map{"limits": arr}, map[string]any{"limit": json.Number("1")})
	if err == nil || !strings.Contains(err.Error(), "parameter limit: write map limits") || !errors.Is(err, ebpf.ErrKeyNotExist) && !strings.Contains(err.Error(), "argument list too long") {
		t.Errorf("key beyond array: %v", err)
	}
}
