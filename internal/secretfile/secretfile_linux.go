//go:build linux

package secretfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Read opens path once and returns its contents after checking, on the
// open descriptor, that it is a regular file owned by root or by leafd's
// user and (for Private) that group and others have no access, or (for
// Public) that they cannot write it. Every directory from / to the file
// must be owned by root or leafd's user and writable by nobody else
// (a sticky directory owned by root, like /tmp, is allowed: others
// cannot replace what they do not own there). Symbolic links in the
// directories are resolved once, before the walk, and the walk itself
// follows none, so a link swapped later is refused, never followed.
func Read(path string, kind Kind) (File, error) {
	return ReadMax(path, kind, DefaultMaxSize)
}

// ReadMax is Read with a bound other than DefaultMaxSize.
func ReadMax(path string, kind Kind, max int64) (File, error) {
	fd, err := open(path, os.Geteuid())
	if err != nil {
		return File{}, err
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	if err := checkFile(path, &st, kind, os.Geteuid()); err != nil {
		return File{}, err
	}
	data, err := readBounded(f, path, max)
	if err != nil {
		return File{}, err
	}
	return File{Data: data, Stat: statOf(&st)}, nil
}

// StatPath returns the identity of the file path names now, following
// links, for change detection only: a changed Stat means "read again with
// Read", never "trust this".
func StatPath(path string) (Stat, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return Stat{}, err
	}
	return statOf(&st), nil
}

func statOf(st *unix.Stat_t) Stat {
	return Stat{Dev: st.Dev, Ino: st.Ino, Size: uint64(st.Size), Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(), Mode: st.Mode, UID: st.Uid}
}

// open resolves the links in path's directories once, then walks the
// resolved directories from / with O_NOFOLLOW, checking each on its
// descriptor, and opens the file in the last one without following a
// link.
func open(path string, euid int) (int, error) {
	if path == "" {
		return -1, errors.New("empty file name")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return -1, fmt.Errorf("%s: %w", path, err)
	}
	dir, base := filepath.Split(abs)
	if base == "" || base == "." || base == ".." {
		return -1, fmt.Errorf("%s: not a file name", path)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return -1, fmt.Errorf("%s: %w", path, err)
	}
	dirfd, err := walk(path, realDir, euid)
	if err != nil {
		return -1, err
	}
	defer unix.Close(dirfd)
	// O_NONBLOCK: a FIFO put in the key's place must not hang leafd; the
	// fstat that follows refuses anything but a regular file.
	fd, err := unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return -1, fmt.Errorf("%s: is a symbolic link; name the file itself", path)
		}
		return -1, fmt.Errorf("%s: %w", path, &os.PathError{Op: "open", Path: path, Err: err})
	}
	return fd, nil
}

// walk opens each directory of the resolved dir from /, refusing one that
// someone other than root or euid could change.
func walk(path, dir string, euid int) (int, error) {
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("%s: open /: %w", path, err)
	}
	cur := "/"
	if err := checkDir(path, cur, fd, euid); err != nil {
		unix.Close(fd)
		return -1, err
	}
	for _, name := range strings.Split(strings.Trim(dir, "/"), "/") {
		if name == "" {
			continue
		}
		cur = filepath.Join(cur, name)
		next, err := unix.Openat(fd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			// ENOTDIR here (with O_NOFOLLOW) means the directory became a
			// link after it was resolved.
			return -1, fmt.Errorf("%s: directory %s: %w (was it replaced by a link?)", path, cur, err)
		}
		fd = next
		if err := checkDir(path, cur, fd, euid); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	return fd, nil
}

func checkDir(path, dir string, fd, euid int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("%s: directory %s: %w", path, dir, err)
	}
	if st.Uid != 0 && int(st.Uid) != euid {
		return fmt.Errorf("%s: directory %s is owned by uid %d, not by root or leafd's uid %d: that user could replace the file", path, dir, st.Uid, euid)
	}
	perm := st.Mode & 0o7777
	if perm&0o022 != 0 && !(perm&unix.S_ISVTX != 0 && st.Uid == 0) {
		return fmt.Errorf("%s: directory %s (mode %04o) is writable by group or others, who could replace the file; chmod go-w %s", path, dir, perm, dir)
	}
	return nil
}

func checkFile(path string, st *unix.Stat_t, kind Kind, euid int) error {
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s: not a regular file", path)
	}
	if st.Uid != 0 && int(st.Uid) != euid {
		return fmt.Errorf("%s: owned by uid %d, not by root or leafd's uid %d", path, st.Uid, euid)
	}
	perm := st.Mode & 0o777
	switch kind {
	case Private:
		if perm&0o077 != 0 {
			return fmt.Errorf("%s: mode %04o lets group or others read or write it; chmod 600 %s", path, perm, path)
		}
	default:
		if perm&0o022 != 0 {
			return fmt.Errorf("%s: mode %04o lets group or others change it; chmod go-w %s", path, perm, path)
		}
	}
	return nil
}
