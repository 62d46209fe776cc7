package applier

import (
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/leaf-ebpf/leaf/internal/repository"
	"github.com/leaf-ebpf/leaf/packages"
)

// bpfMapMappings counts this process's memory mappings of BPF maps.
func bpfMapMappings(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "anon_inode:bpf-map")
}

// TestNewCollectionMapsNoDataSection loads portfilter with a constant
// changed: the constant reaches the kernel's .rodata, and the load leaves
// no memory mapping behind (one would keep the .rodata map in the kernel
// after the program is gone, until Go's garbage collector ran).
func TestNewCollectionMapsNoDataSection(t *testing.T) {
	requireBPF(t)
	l, err := repository.OpenFS("builtin", packages.FS)
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := l.Resolve("portfilter", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	spec, _, err := pkg.LoadSpec("")
	if err != nil {
		t.Fatal(err)
	}
	v := spec.Variables["filter_udp"]
	if v == nil {
		t.Fatal("portfilter declares no filter_udp constant")
	}
	if err := v.Set(uint8(0)); err != nil {
		t.Fatal(err)
	}
	before := bpfMapMappings(t)
	coll, err := newCollection(spec, ebpf.CollectionOptions{})
	if err != nil {
		t.Skipf("load portfilter: %v", err)
	}
	defer coll.Close()
	if got := bpfMapMappings(t); got != before {
		t.Errorf("loading mapped %d BPF maps into memory, want none", got-before)
	}
	rodata := coll.Maps[v.SectionName]
	if rodata == nil {
		t.Fatalf("no %s map loaded", v.SectionName)
	}
	var raw []byte
	if err := rodata.Lookup(uint32(0), &raw); err != nil {
		t.Fatal(err)
	}
	if raw[v.Offset] != 0 {
		t.Errorf("filter_udp in the kernel's %s = %d, want 0 as set", v.SectionName, raw[v.Offset])
	}
	if tcp := spec.Variables["filter_tcp"]; raw[tcp.Offset] != 1 {
		t.Errorf("filter_tcp in the kernel's %s = %d, want its default 1", v.SectionName, raw[tcp.Offset])
	}
	if len(spec.Variables) == 0 || spec.Maps[v.SectionName].Contents[0].Value.([]byte)[v.Offset] != 1 {
		t.Error("newCollection changed the spec it was given")
	}
}
