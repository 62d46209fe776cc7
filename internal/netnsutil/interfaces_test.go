package netnsutil_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/leaf-ebpf/leaf/internal/netnsutil"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// TestInterfacesLookup: lookups through one Interfaces agree with the
// kernel's own, by name and by altname, whether answered by a query or
// from the namespace's dump (second lookup on); a name the dump lacks is
// asked for, so an interface made after the dump is found, and a missing
// one is an error naming it.
func TestInterfacesLookup(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	path := testenv.NetnsPath(p.NsB)
	alt := "alt" + strings.TrimPrefix(p.IfB, "vb")
	if out, err := exec.Command("ip", "-n", p.NsB, "link", "property", "add", "dev", p.IfB, "altname", alt).CombinedOutput(); err != nil {
		t.Skipf("altnames: %v: %s", err, out)
	}
	want, _, err := netnsutil.Interface(path, p.IfB)
	if err != nil {
		t.Fatal(err)
	}
	var ifs netnsutil.Interfaces
	defer ifs.Close()
	for i, name := range []string{p.IfB, alt, p.IfB, "lo"} {
		idx, main, err := ifs.Lookup(path, name)
		if name == "lo" {
			if err != nil || idx != 1 || main != "lo" {
				t.Errorf("lookup %d of lo: %d %q %v", i, idx, main, err)
			}
			continue
		}
		if err != nil || idx != want || main != p.IfB {
			t.Errorf("lookup %d of %s: %d %q %v, want %d %q", i, name, idx, main, err, want, p.IfB)
		}
	}
	// Made after the dump.
	if out, err := exec.Command("ip", "-n", p.NsB, "link", "add", "leaflate0", "type", "veth", "peer", "name", "leaflate1").CombinedOutput(); err != nil {
		t.Fatalf("add a veth pair: %v: %s", err, out)
	}
	if idx, main, err := ifs.Lookup(path, "leaflate0"); err != nil || idx == 0 || main != "leaflate0" {
		t.Errorf("an interface made after the dump: %d %q %v", idx, main, err)
	}
	if _, _, err := ifs.Lookup(path, "leafnone0"); err == nil || !strings.Contains(err.Error(), `"leafnone0"`) {
		t.Errorf("a missing interface: %v", err)
	}
}
