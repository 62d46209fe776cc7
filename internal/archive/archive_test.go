package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"strings"
	"testing"
)

type entry struct {
	name string
	typ  byte
	body string
	size int64 // header size when it differs from len(body)
	link string
}

func tarOf(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		size := int64(len(e.body))
		if e.typ != tar.TypeReg {
			size = 0
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: e.typ, Size: size, Mode: 0o644, Linkname: e.link}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return buf.Bytes()
}

func TestReadRefusesHostileEntries(t *testing.T) {
	for _, tc := range []struct {
		name  string
		entry entry
		want  string
	}{
		{"traversal", entry{name: "../etc/passwd", typ: tar.TypeReg, body: "x"}, "leaves the archive"},
		{"nested traversal", entry{name: "a/../../x", typ: tar.TypeReg, body: "x"}, "leaves the archive"},
		{"absolute", entry{name: "/etc/passwd", typ: tar.TypeReg, body: "x"}, "not a relative path"},
		{"symlink", entry{name: "link", typ: tar.TypeSymlink, link: "/etc/passwd"}, "symbolic link"},
		{"hard link", entry{name: "link", typ: tar.TypeLink, link: "x"}, "hard link"},
		{"char device", entry{name: "dev", typ: tar.TypeChar}, "device"},
		{"fifo", entry{name: "fifo", typ: tar.TypeFifo}, "FIFO"},
		{"backslash", entry{name: `a\..\b`, typ: tar.TypeReg, body: "x"}, "not a relative path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tarOf(t, tc.entry)), DefaultLimits)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestReadCaps(t *testing.T) {
	lim := Limits{MaxEntries: 3, MaxFileSize: 10, MaxTotalSize: 15}
	for _, tc := range []struct {
		name    string
		entries []entry
		want    string
	}{
		{"file too big", []entry{{name: "a", typ: tar.TypeReg, body: strings.Repeat("x", 11)}}, "more than the 10 allowed"},
		{"total too big", []entry{{name: "a", typ: tar.TypeReg, body: "0123456789"}, {name: "b", typ: tar.TypeReg, body: "0123456789"}}, "bytes in all"},
		{"too many entries", []entry{{name: "a", typ: tar.TypeDir}, {name: "b", typ: tar.TypeDir}, {name: "c", typ: tar.TypeDir}, {name: "d", typ: tar.TypeDir}}, "more than 3 entries"},
		{"duplicate", []entry{{name: "a", typ: tar.TypeReg, body: "1"}, {name: "./a", typ: tar.TypeReg, body: "2"}}, "appears twice"},
		{"file and dir", []entry{{name: "a", typ: tar.TypeReg, body: "1"}, {name: "a/b", typ: tar.TypeReg, body: "2"}}, "both a file and a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tarOf(t, tc.entries...)), lim)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestRoundTripAndStripTop(t *testing.T) {
	files := Files{"pkg/leaf.yaml": []byte("a"), "pkg/sub/obj.o": []byte("bb")}
	var plain, zipped bytes.Buffer
	if err := Write(&plain, files); err != nil {
		t.Fatal(err)
	}
	if err := WriteGzip(&zipped, files); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	Write(&again, files)
	if !bytes.Equal(plain.Bytes(), again.Bytes()) {
		t.Errorf("Write is not deterministic")
	}
	for _, data := range [][]byte{plain.Bytes(), zipped.Bytes()} {
		got, err := Read(bytes.NewReader(data), DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		stripped, err := StripTop(got)
		if err != nil {
			t.Fatal(err)
		}
		if string(stripped["leaf.yaml"]) != "a" || string(stripped["sub/obj.o"]) != "bb" || len(stripped) != 2 {
			t.Errorf("got %v", stripped.Names())
		}
	}
	if _, err := StripTop(Files{"a/x": nil, "b/y": nil}); err == nil {
		t.Errorf("two top-level directories accepted")
	}
	if _, err := StripTop(Files{"x": nil}); err == nil {
		t.Errorf("a file outside any directory accepted")
	}
}

func TestGzipBomb(t *testing.T) {
	// 100 MiB of zeros compresses to about 100 KiB; the caps refuse it from
	// its header, before it is inflated.
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: 100 << 20, Mode: 0o644})
	zero := make([]byte, 1<<20)
	for i := 0; i < 100; i++ {
		tw.Write(zero)
	}
	tw.Close()
	zw.Close()
	if _, err := Read(&buf, DefaultLimits); err == nil || !strings.Contains(err.Error(), "allowed") {
		t.Errorf("got %v", err)
	}
}

// FuzzRead: whatever the bytes, Read never panics, and what it accepts
// holds only clean relative names within the caps.
func FuzzRead(f *testing.F) {
	f.Add(tarOf(f, entry{name: "a/b", typ: tar.TypeReg, body: "x"}))
	f.Add(tarOf(f, entry{name: "../x", typ: tar.TypeReg, body: "x"}))
	f.Add(tarOf(f, entry{name: "l", typ: tar.TypeSymlink, link: "/"}))
	var z bytes.Buffer
	WriteGzip(&z, Files{"p/leaf.yaml": []byte("x")})
	f.Add(z.Bytes())
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	lim := Limits{MaxEntries: 16, MaxFileSize: 1 << 16, MaxTotalSize: 1 << 18}
	f.Fuzz(func(t *testing.T, data []byte) {
		files, err := Read(bytes.NewReader(data), lim)
		if err != nil {
			return
		}
		var total int
		for name, d := range files {
			if name == "" || name == "." || strings.HasPrefix(name, "/") {
				t.Fatalf("accepted name %q", name)
			}
			for _, part := range strings.Split(name, "/") {
				if part == ".." {
					t.Fatalf("accepted name %q", name)
				}
			}
			total += len(d)
		}
		if total > int(lim.MaxTotalSize) || len(files) > lim.MaxEntries {
			t.Fatalf("caps exceeded: %d bytes, %d files", total, len(files))
		}
	})
}

// gzipBomb is a small gzip of a tar of entries small by their headers,
// each carrying a PAX record of pax bytes: nothing a header-based cap
// counts, but the decompressor has to produce every byte.
func gzipBomb(t testing.TB, entries, pax int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	filler := strings.Repeat("0", pax)
	for i := 0; i < entries; i++ {
		hdr := &tar.Header{Name: fmt.Sprintf("pkg/f%d", i), Typeflag: tar.TypeReg, Size: 2, Mode: 0o644, Format: tar.FormatPAX,
			PAXRecords: map[string]string{"LEAF.filler": filler}}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte("{}"))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestReadBoundsDecompressedBytes(t *testing.T) {
	lim := Limits{MaxEntries: 32, MaxFileSize: 1 << 20, MaxTotalSize: 64 << 10}
	bomb := gzipBomb(t, 32, 64<<10)
	t.Logf("bomb: %d bytes of gzip, 64 bytes of files by the headers, 2 MiB of tar", len(bomb))
	_, err := Read(bytes.NewReader(bomb), lim)
	if err == nil || !strings.Contains(err.Error(), "decompresses to more than its limits allow") {
		t.Fatalf("got %v, want the decompression bound", err)
	}
	// Within the bound, the same shape reads.
	files, err := Read(bytes.NewReader(gzipBomb(t, 4, 1<<10)), lim)
	if err != nil || string(files["pkg/f3"]) != "{}" {
		t.Fatalf("small archive: %v %v", files.Names(), err)
	}
}
