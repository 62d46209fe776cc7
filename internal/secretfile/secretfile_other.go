//go:build !linux

package secretfile

import (
	"fmt"
	"os"
)

// Read, where leafd does not run (the leaf CLI on macOS or Windows),
// reads path once from one descriptor and checks, on it, that it is a
// regular file; owner, mode and directory checks are leafd's (Linux).
func Read(path string, kind Kind) (File, error) {
	return ReadMax(path, kind, DefaultMaxSize)
}

// ReadMax is Read with a bound other than DefaultMaxSize.
func ReadMax(path string, _ Kind, max int64) (File, error) {
	f, err := os.Open(path)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return File{}, fmt.Errorf("%s: not a regular file", path)
	}
	data, err := readBounded(f, path, max)
	if err != nil {
		return File{}, err
	}
	return File{Data: data, Stat: Stat{Size: uint64(fi.Size()), Mtime: fi.ModTime().UnixNano()}}, nil
}

// StatPath returns the identity of the file path names now, for change
// detection only.
func StatPath(path string) (Stat, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Stat{}, err
	}
	return Stat{Size: uint64(fi.Size()), Mtime: fi.ModTime().UnixNano()}, nil
}
