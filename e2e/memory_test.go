package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// vmHWM is a process's peak resident set in bytes (VmHWM in
// /proc/PID/status).
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// writeBomb writes a KFaaS artifact that is a few hundred KiB of gzip
// and 240 MiB of files, all within archive.DefaultLimits (4 files of
// 60 MiB of zeros).
func writeBomb(t *testing.T, root, name, version string) int {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	zeros := make([]byte, 1<<20)
	for i := range 4 {
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("%s/blob%d.o", name, i), Typeflag: tar.TypeReg, Size: 60 << 20, Mode: 0o644})
		for range 60 {
			tw.Write(zeros)
		}
	}
	tw.Close()
	zw.Close()
	dir := filepath.Join(root, name, version, "linux")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".tar.gz"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return buf.Len()
}

// TestListingABombStaysSmall is issue 10's outage: readers listing a
// repository that holds a decompression bomb made leafd unpack it once
// per call (six calls: 33 MB to 2.95 GB). Listing now reads names, never
// archives: leafd's peak resident set stays within 64 MiB of what it was
// before the readers came.
func TestListingABombStaysSmall(t *testing.T) {
	testenv.RequireKernel(t)
	t.Parallel()
	kfaas := t.TempDir()
	size := writeBomb(t, kfaas, "bomb", "1.0.0")
	cfg := cliFile(t, "leafd.yaml", []byte(fmt.Sprintf(`apiVersion: leaf.dev/v1alpha1
kind: DaemonConfig
repositories:
  - {name: hostile, type: kfaas, path: %s, platform: linux, trust: {allowUnsigned: true}}
`, kfaas)))
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--config", cfg}})
	hc := apiHTTP(d.Socket)
	before := vmHWM(t, d.PID())
	const readers, rounds = 6, 3
	var wg sync.WaitGroup
	codes := make(chan int, readers*rounds)
	for range readers {
		wg.Go(func() {
			for range rounds {
				codes <- apiRequest(t, hc, "GET", "/v1/packages", nil).Code
			}
		})
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("a listing answered %d", c)
		}
	}
	after := vmHWM(t, d.PID())
	// The package is listed by its name and version, unread.
	if a := apiRequest(t, hc, "GET", "/v1/packages", nil); a.Code != 200 || !strings.Contains(string(a.Body), `"name": "bomb",`+"\n"+`    "version": "1.0.0"`) {
		t.Errorf("list: %d %s", a.Code, a.Body)
	}
	t.Logf("bomb: %d bytes of gzip, 240 MiB unpacked; leafd VmHWM %d MiB before, %d MiB after %d listings", size, before>>20, after>>20, readers*rounds)
	if after-before > 64<<20 {
		t.Errorf("leafd's peak resident set grew by %d MiB while readers listed, want at most 64 MiB", (after-before)>>20)
	}
}
