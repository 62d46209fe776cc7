package companion

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// sealInheritedFiles marks every descriptor leafd holds from 3 up
// close-on-exec, so companions never inherit what leafd itself inherited
// from whoever started it (Go opens its own files close-on-exec; a parent
// may not have). Companions get their maps through ExtraFiles, which the
// child re-creates without the flag at 3, 4, ….
func sealInheritedFiles() {
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return
	}
	// Kernels before 5.11: one by one.
	entries, _ := os.ReadDir("/proc/self/fd")
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
}

// dupCloexec duplicates a map descriptor close-on-exec: between this dup
// and the companion's start, another runner may fork a companion, which
// must not receive this map.
func dupCloexec(fd int) (int, error) {
	return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
}

// dropBoundingSet removes from the calling thread's capability bounding
// set every capability the companion does not declare. The thread is the
// locked one companions are forked from, so the children inherit the
// smaller set: even a file-capability binary or a later capset cannot
// give a companion more than its manifest says.
func dropBoundingSet(keep []uintptr) error {
	last := lastCap()
	kept := map[uintptr]bool{}
	for _, c := range keep {
		kept[c] = true
	}
	for c := uintptr(0); c <= last; c++ {
		if kept[c] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil && err != unix.EINVAL {
			return err
		}
	}
	return nil
}

func lastCap() uintptr {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 40 // CAP_CHECKPOINT_RESTORE, the last one Linux 5.9+ knows
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 40
	}
	return uintptr(n)
}
