// Package archive reads tar and tar.gz archives that come from outside
// (package exports, KFaaS artifacts) into memory. Archives are hostile
// input: only regular files and directories are accepted, every name must
// stay inside the archive, and sizes and entry counts are capped before
// anything is read past them.
package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"testing/fstest"
)

// Limits cap what an archive may hold.
type Limits struct {
	MaxEntries   int   // files and directories
	MaxFileSize  int64 // one file
	MaxTotalSize int64 // all files
}

// DefaultLimits fit any sane package: the same caps as a package directory.
var DefaultLimits = Limits{MaxEntries: 1024, MaxFileSize: 64 << 20, MaxTotalSize: 256 << 20}

// Files maps a clean relative path to its content.
type Files map[string][]byte

// FS returns the files as a read-only file system.
func (f Files) FS() fstest.MapFS {
	m := fstest.MapFS{}
	for name, data := range f {
		m[name] = &fstest.MapFile{Data: data, Mode: 0o444}
	}
	return m
}

// Names returns the paths, sorted.
func (f Files) Names() []string {
	names := make([]string, 0, len(f))
	for n := range f {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

var gzipMagic = []byte{0x1f, 0x8b}

// Read reads a tar archive, gzip-compressed or not, into memory. What
// comes out of the decompressor is counted as it is produced, headers,
// padding and skipped bytes included: a bomb is stopped by what it
// writes, not by what its headers claim.
func Read(r io.Reader, lim Limits) (Files, error) {
	br := bufio.NewReader(r)
	if magic, err := br.Peek(2); err == nil && bytes.Equal(magic, gzipMagic) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("archive: gzip: %w", err)
		}
		defer zr.Close()
		return readTar(&boundedReader{r: zr, left: lim.streamBound()}, lim)
	}
	return readTar(&boundedReader{r: br, left: lim.streamBound()}, lim)
}

// streamBound is the most a valid archive within the limits can take as
// a tar stream: the files, plus per entry a header, a PAX header of
// ordinary size and padding, plus the end-of-archive blocks.
func (lim Limits) streamBound() int64 {
	const perEntry = 4 << 10
	return lim.MaxTotalSize + int64(lim.MaxEntries+1)*perEntry + 10<<10
}

// ErrTooLarge is returned once an archive's stream has produced more bytes
// than its limits allow.
var ErrTooLarge = errors.New("archive: decompresses to more than its limits allow")

// boundedReader fails once more than left bytes were read through it.
type boundedReader struct {
	r    io.Reader
	left int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, ErrTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func readTar(r io.Reader, lim Limits) (Files, error) {
	tr := tar.NewReader(r)
	files := Files{}
	dirs := map[string]bool{}
	var total int64
	for entries := 0; ; entries++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, ErrTooLarge) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("archive: %w", err)
		}
		if entries >= lim.MaxEntries {
			return nil, fmt.Errorf("archive: more than %d entries", lim.MaxEntries)
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return nil, err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if _, isFile := files[name]; isFile {
				return nil, fmt.Errorf("archive: %q is both a file and a directory", hdr.Name)
			}
			dirs[name] = true
			continue
		case tar.TypeReg:
		default:
			// Links could point anywhere; devices and FIFOs have no place
			// in a package.
			return nil, fmt.Errorf("archive: %q is a %s, only regular files and directories are allowed", hdr.Name, typeName(hdr.Typeflag))
		}
		if name == "." {
			return nil, fmt.Errorf("archive: a file cannot be named %q", hdr.Name)
		}
		if _, dup := files[name]; dup || dirs[name] {
			return nil, fmt.Errorf("archive: %q appears twice", hdr.Name)
		}
		if hdr.Size < 0 || hdr.Size > lim.MaxFileSize {
			return nil, fmt.Errorf("archive: %q is %d bytes, more than the %d allowed", hdr.Name, hdr.Size, lim.MaxFileSize)
		}
		total += hdr.Size
		if total > lim.MaxTotalSize {
			return nil, fmt.Errorf("archive: more than %d bytes in all", lim.MaxTotalSize)
		}
		data, err := io.ReadAll(io.LimitReader(tr, hdr.Size))
		if errors.Is(err, ErrTooLarge) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("archive: %q: %w", hdr.Name, err)
		}
		if int64(len(data)) != hdr.Size {
			return nil, fmt.Errorf("archive: %q is truncated", hdr.Name)
		}
		files[name] = data
	}
	// A file that is also a parent directory of another would make the
	// tree ambiguous.
	for name := range files {
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if _, clash := files[dir]; clash {
				return nil, fmt.Errorf("archive: %q is both a file and a directory", dir)
			}
		}
	}
	return files, nil
}

// cleanName refuses absolute names and any name that leaves the archive
// root, and returns the cleaned relative path.
func cleanName(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("archive: entry name %q is not a relative path", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("archive: entry name %q leaves the archive", name)
		}
	}
	return path.Clean(name), nil
}

func typeName(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar, tar.TypeBlock:
		return "device"
	case tar.TypeFifo:
		return "FIFO"
	}
	return fmt.Sprintf("tar entry of type %q", t)
}

// StripTop removes the single top-level directory every file must be in,
// as KFaaS artifacts have (name/...). Anything outside it is an error.
func StripTop(files Files) (Files, error) {
	top := ""
	out := Files{}
	for name, data := range files {
		first, rest, ok := strings.Cut(name, "/")
		if !ok {
			return nil, fmt.Errorf("archive: %q is not inside a top-level directory", name)
		}
		if top != "" && first != top {
			return nil, fmt.Errorf("archive: more than one top-level directory (%q and %q)", top, first)
		}
		top = first
		out[rest] = data
	}
	if top == "" {
		return nil, fmt.Errorf("archive: empty")
	}
	return out, nil
}

// Write writes files as a tar archive with fixed metadata, in name order,
// so the same files always give the same bytes.
func Write(w io.Writer, files Files) error {
	tw := tar.NewWriter(w)
	written := map[string]bool{}
	for _, name := range files.Names() {
		if err := writeParents(tw, name, written); err != nil {
			return err
		}
		data := files[name]
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	return tw.Close()
}

func writeParents(tw *tar.Writer, name string, written map[string]bool) error {
	dir := path.Dir(name)
	if dir == "." || written[dir] {
		return nil
	}
	if err := writeParents(tw, dir, written); err != nil {
		return err
	}
	written[dir] = true
	return tw.WriteHeader(&tar.Header{Name: dir + "/", Mode: 0o755, Typeflag: tar.TypeDir, Format: tar.FormatPAX})
}

// WriteGzip writes files as a gzip-compressed tar (see Write).
func WriteGzip(w io.Writer, files Files) error {
	zw := gzip.NewWriter(w)
	if err := Write(zw, files); err != nil {
		return err
	}
	return zw.Close()
}
