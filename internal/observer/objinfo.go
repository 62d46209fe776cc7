package observer

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// The leading fields of the kernel's struct bpf_prog_info and struct
// bpf_map_info (include/uapi/linux/bpf.h). The kernel fills as much of
// its info as info_len asks for, so these prefixes are all observing
// needs; TestPinnedInfo and TestPinnedLink check them against
// cilium/ebpf's reading.
type progInfo struct {
	Type uint32
	ID   uint32
	Tag  [8]byte
}

type mapInfo struct {
	Type uint32
	ID   uint32
}

// The leading fields of struct bpf_link_info: the union after prog_id is
// 8-byte aligned, and its first member for XDP and TCX links is the
// ifindex (u32), for cgroup links the cgroup ID (u64).
type linkInfo struct {
	Type   uint32
	ID     uint32
	ProgID uint32
	_      uint32
	Target [8]byte
}

// pinnedLink returns the ID of the link pinned at path, the program it
// runs, and whether it still holds its hook: a network link whose
// interface went away, or that someone detached, has no target left.
func pinnedLink(path string) (link.ID, ebpf.ProgramID, bool, error) {
	var info linkInfo
	if err := pinnedInfo(path, "bpf-link", 0, unsafe.Pointer(&info), unsafe.Sizeof(info)); err != nil {
		return 0, 0, false, err
	}
	attached := true
	switch link.Type(info.Type) {
	case link.XDPType, link.TCXType:
		attached = binary.NativeEndian.Uint32(info.Target[:4]) != 0
	case link.CgroupType:
		attached = binary.NativeEndian.Uint64(info.Target[:]) != 0
	}
	return link.ID(info.ID), ebpf.ProgramID(info.ProgID), attached, nil
}

// pinnedProgram returns the ID and tag of the program pinned at path.
//
// Observing runs on every apply and every drift check, for every
// attachment. cilium/ebpf's LoadPinnedProgram and Info each read the
// kernel's info twice and /proc/self/fdinfo once (about twenty system
// calls per object); this is one BPF_OBJ_GET and one
// BPF_OBJ_GET_INFO_BY_FD (and a readlink to check what was pinned).
func pinnedProgram(path string) (ebpf.ProgramID, string, error) {
	var info progInfo
	if err := pinnedInfo(path, "bpf-prog", 0, unsafe.Pointer(&info), unsafe.Sizeof(info)); err != nil {
		return 0, "", err
	}
	return ebpf.ProgramID(info.ID), hex.EncodeToString(info.Tag[:]), nil
}

// pinnedMapID returns the ID of the map pinned at path (opened
// read-only).
func pinnedMapID(path string) (ebpf.MapID, error) {
	var info mapInfo
	if err := pinnedInfo(path, "bpf-map", unix.BPF_F_RDONLY, unsafe.Pointer(&info), unsafe.Sizeof(info)); err != nil {
		return 0, err
	}
	return ebpf.MapID(info.ID), nil
}

// pinnedInfo opens the object pinned at path with flags, checks that it
// is of kind ("bpf-prog", "bpf-map", "bpf-link") and reads the first size bytes of
// its info into info.
func pinnedInfo(path, kind string, flags uint32, info unsafe.Pointer, size uintptr) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	get := struct {
		pathname  uint64
		bpfFD     uint32
		fileFlags uint32
		pathFD    int32
		_         uint32
	}{pathname: uint64(uintptr(unsafe.Pointer(p))), fileFlags: flags}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_OBJ_GET, uintptr(unsafe.Pointer(&get)), unsafe.Sizeof(get))
	runtime.KeepAlive(p)
	if errno != 0 {
		return fmt.Errorf("open pin %s: %w", path, errno)
	}
	defer unix.Close(int(fd))
	// The kernel answers BPF_OBJ_GET_INFO_BY_FD for any kind of object:
	// a map pinned where a program belongs must not read as a program.
	if got, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); err != nil || got != "anon_inode:"+kind {
		return fmt.Errorf("pin %s holds %q, not a %s", path, got, kind)
	}
	if err := fdInfo(int(fd), info, size); err != nil {
		return fmt.Errorf("info of %s: %w", path, err)
	}
	return nil
}

// fdInfo reads the first size bytes of the info of the object fd holds.
func fdInfo(fd int, info unsafe.Pointer, size uintptr) error {
	req := struct {
		bpfFD   uint32
		infoLen uint32
		info    uint64
	}{bpfFD: uint32(fd), infoLen: uint32(size), info: uint64(uintptr(info))}
	if _, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_OBJ_GET_INFO_BY_FD, uintptr(unsafe.Pointer(&req)), unsafe.Sizeof(req)); errno != 0 {
		return errno
	}
	return nil
}

// ProgramIDTag returns the ID and tag of prog with one
// BPF_OBJ_GET_INFO_BY_FD (cilium/ebpf's Info also reads fdinfo, which
// records of a fresh load do not need).
func ProgramIDTag(prog *ebpf.Program) (ebpf.ProgramID, string, error) {
	var info progInfo
	err := fdInfo(prog.FD(), unsafe.Pointer(&info), unsafe.Sizeof(info))
	runtime.KeepAlive(prog)
	if err != nil {
		return 0, "", fmt.Errorf("program info: %w", err)
	}
	return ebpf.ProgramID(info.ID), hex.EncodeToString(info.Tag[:]), nil
}

// MapID returns the ID of m with one BPF_OBJ_GET_INFO_BY_FD.
func MapID(m *ebpf.Map) (ebpf.MapID, error) {
	var info mapInfo
	err := fdInfo(m.FD(), unsafe.Pointer(&info), unsafe.Sizeof(info))
	runtime.KeepAlive(m)
	if err != nil {
		return 0, fmt.Errorf("map info: %w", err)
	}
	return ebpf.MapID(info.ID), nil
}
