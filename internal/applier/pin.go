package applier

import (
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pinFD pins a BPF object file descriptor at path with BPF_OBJ_PIN. leaf
// pins by raw descriptor instead of through cilium/ebpf's Pin methods
// because those remember one pin path per object and move it on the next
// Pin; leaf needs plain, explicit pins it can stage and rename.
func pinFD(path string, fd int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	attr := struct {
		pathname  uint64
		bpfFD     uint32
		fileFlags uint32
		pathFD    int32
		_         uint32
	}{pathname: uint64(uintptr(unsafe.Pointer(p))), bpfFD: uint32(fd)}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_OBJ_PIN, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno != 0 {
		return fmt.Errorf("pin %s: %w", path, errno)
	}
	return nil
}
