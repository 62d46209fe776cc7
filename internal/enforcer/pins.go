package enforcer

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// pinWatcher reports pins removed under leaf's bpffs root through inotify,
// which bpffs supports like any file system. It watches the root, the
// attachments and hooks directories and every directory below them, adding
// watches as leaf creates directories.
type pinWatcher struct {
	root    string
	fd      int
	file    *os.File
	trigger func(string)

	mu   sync.Mutex
	dirs map[int32]string // watch descriptor → directory
	done chan struct{}
}

const dirMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_ONLYDIR

func newPinWatcher(root string, trigger func(string)) (*pinWatcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	// A non-blocking descriptor in an os.File goes through Go's poller, so
	// Close wakes the reader.
	w := &pinWatcher{root: root, fd: fd, file: os.NewFile(uintptr(fd), "inotify"), trigger: trigger, dirs: map[int32]string{}, done: make(chan struct{})}
	w.addTree(root)
	go w.read()
	return w, nil
}

// addTree watches dir and every directory below it.
func (w *pinWatcher) addTree(dir string) {
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if wd, err := unix.InotifyAddWatch(w.fd, p, dirMask); err == nil {
			w.mu.Lock()
			w.dirs[int32(wd)] = p
			w.mu.Unlock()
		}
		return nil
	})
}

func (w *pinWatcher) read() {
	defer close(w.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			continue
		}
		w.handle(buf[:n])
	}
}

func (w *pinWatcher) handle(buf []byte) {
	for len(buf) >= unix.SizeofInotifyEvent {
		wd := int32(binary.NativeEndian.Uint32(buf[0:4]))
		mask := binary.NativeEndian.Uint32(buf[4:8])
		nameLen := binary.NativeEndian.Uint32(buf[12:16])
		end := unix.SizeofInotifyEvent + int(nameLen)
		if end > len(buf) {
			return
		}
		name := strings.TrimRight(string(buf[unix.SizeofInotifyEvent:end]), "\x00")
		buf = buf[end:]
		w.mu.Lock()
		dir := w.dirs[wd]
		if mask&unix.IN_IGNORED != 0 {
			delete(w.dirs, wd)
		}
		w.mu.Unlock()
		switch {
		case mask&unix.IN_Q_OVERFLOW != 0:
			w.trigger("pin events overflowed")
		case mask&unix.IN_ISDIR != 0 && mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0 && !staging(name):
			w.addTree(filepath.Join(dir, name))
		case mask&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0 && !staging(name):
			rel, _ := filepath.Rel(w.root, filepath.Join(dir, name))
			w.trigger("pin " + rel + " removed")
		}
	}
}

// staging reports whether a name is one of leaf's own staging pins,
// removed by every apply; removing them is no drift.
func staging(name string) bool {
	return strings.HasPrefix(name, "_") || strings.HasSuffix(name, "_next") || strings.HasSuffix(name, "_prev")
}

func (w *pinWatcher) close() {
	w.file.Close()
	<-w.done
}
