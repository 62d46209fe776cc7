// Package secretfile reads the files leafd trusts — private keys, the
// client CA bundle, CRLs, signing keys, password files — so that what is
// checked is what is read: the file is opened once, without following a
// symbolic link, and the owner, type and mode are checked on that
// descriptor before the bytes are read from it. The directories leading to
// the file are checked as well: a key in a directory another user can
// write is refused, because that user could swap the file (or a link to
// it) between any two of leafd's steps.
package secretfile

import (
	"fmt"
	"io"
	"os"
)

// Kind says how private a file must be.
type Kind int

const (
	// Private files (keys, passwords) must be readable by their owner
	// only: no access at all for group or others.
	Private Kind = iota
	// Public files (CA bundles, CRLs, certificates, public keys) may be
	// read by anyone, but only their owner may change them.
	Public
)

// DefaultMaxSize bounds what Read reads: every secret leafd uses is far
// smaller, and a bound keeps a wrong path (a log, a device) from filling
// memory.
const DefaultMaxSize = 16 << 20

// File is what Read read and the descriptor's identity at that moment (so
// a caller can tell later whether the file changed).
type File struct {
	Data []byte
	Stat Stat
}

// Stat identifies a version of a file. ctime is in it because a chmod
// changes nothing else, and a key made readable by others must be
// re-checked.
type Stat struct {
	Dev, Ino, Size uint64
	Mtime, Ctime   int64 // nanoseconds
	Mode, UID      uint32
}

// readBounded reads at most max bytes of f, failing beyond.
func readBounded(f *os.File, path string, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, max)
	}
	return data, nil
}
