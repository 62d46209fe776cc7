package observer

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/internal/netnsutil"
	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// TestPinnedInfo checks the info prefixes leaf reads itself against what
// cilium/ebpf reads for the same pinned program and map, and that a pin
// holding another kind of object is refused.
func TestPinnedInfo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for BPF objects and a bpffs")
	}
	dir := testenv.BPFFS(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "leaf_test", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "leaf_test", Type: ebpf.XDP, License: "GPL", Instructions: asm.Instructions{
		asm.LoadMapPtr(asm.R1, m.FD()), // a map reference gives the tag something to hash
		asm.Mov.Imm(asm.R0, 2),
		asm.Return(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	progPin, mapPin := filepath.Join(dir, "prog"), filepath.Join(dir, "map")
	if err := prog.Pin(progPin); err != nil {
		t.Fatal(err)
	}
	if err := m.Pin(mapPin); err != nil {
		t.Fatal(err)
	}
	pinfo, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	wantProg, _ := pinfo.ID()
	id, tag, err := pinnedProgram(progPin)
	if err != nil {
		t.Fatal(err)
	}
	if id != wantProg || tag != pinfo.Tag || tag == "0000000000000000" {
		t.Errorf("pinnedProgram = %d, %s; cilium/ebpf reads %d, %s", id, tag, wantProg, pinfo.Tag)
	}
	minfo, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	wantMap, _ := minfo.ID()
	if got, err := pinnedMapID(mapPin); err != nil || got != wantMap {
		t.Errorf("pinnedMapID = %d, %v; cilium/ebpf reads %d", got, err, wantMap)
	}
	// The descriptor readers the applier records fresh loads with.
	if id, tag, err := ProgramIDTag(prog); err != nil || id != wantProg || tag != pinfo.Tag {
		t.Errorf("ProgramIDTag = %d, %s, %v; cilium/ebpf reads %d, %s", id, tag, err, wantProg, pinfo.Tag)
	}
	if got, err := MapID(m); err != nil || got != wantMap {
		t.Errorf("MapID = %d, %v; cilium/ebpf reads %d", got, err, wantMap)
	}
	if _, _, err := pinnedProgram(mapPin); err == nil {
		t.Error("a map pin read as a program")
	}
	if _, err := pinnedMapID(progPin); err == nil {
		t.Error("a program pin read as a map")
	}
	if _, err := pinnedMapID(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing pin: %v, want ENOENT", err)
	}
}

// TestPinnedLink checks the link info prefix against cilium/ebpf's reading
// for an XDP link on a veth: its ID and program, attached while it holds
// the interface, not attached once detached.
func TestPinnedLink(t *testing.T) {
	testenv.RequireKernel(t)
	dir := testenv.BPFFS(t)
	p := testenv.NewPair(t)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "leaf_test", Type: ebpf.XDP, License: "GPL", Instructions: asm.Instructions{
		asm.Mov.Imm(asm.R0, 2),
		asm.Return(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	var lk link.Link
	err = netnsutil.Do(testenv.NetnsPath(p.NsB), func() error {
		ifindex, err := netnsutil.Ifindex("", p.IfB)
		if err != nil {
			return err
		}
		lk, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPGenericMode})
		return err
	})
	if err != nil {
		t.Skipf("attach XDP: %v", err)
	}
	defer lk.Close()
	pin := filepath.Join(dir, "link")
	if err := lk.Pin(pin); err != nil {
		t.Fatal(err)
	}
	info, err := lk.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, progID, attached, err := pinnedLink(pin)
	if err != nil || id != info.ID || progID != info.Program || !attached {
		t.Errorf("pinnedLink = %d, %d, %v, %v; cilium/ebpf reads link %d running %d, attached", id, progID, attached, err, info.ID, info.Program)
	}
	if err := lk.Detach(); err != nil {
		t.Fatal(err)
	}
	if _, _, attached, err := pinnedLink(pin); err != nil || attached {
		t.Errorf("after detach: attached %v, %v", attached, err)
	}
	if _, _, _, err := pinnedLink(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing pin: %v", err)
	}
}
