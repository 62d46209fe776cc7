// Package testenv builds throwaway worlds for real-kernel tests: a private
// bpffs per test, pairs of network namespaces joined by veth, UDP sockets
// inside them, and leafd processes. Everything is removed when the test
// ends.
package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/leaf-ebpf/leaf/internal/netnsutil"
)

// RequireKernel skips the test unless it runs as root on a kernel that can
// load XDP programs.
func RequireKernel(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs and create network namespaces")
	}
	if err := features.HaveProgramType(ebpf.XDP); err != nil {
		t.Skipf("kernel cannot load XDP programs: %v", err)
	}
}

// BPFFS mounts a private bpffs for the test and returns its path.
func BPFFS(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bpffs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount bpffs: %v", err)
		}
	})
	return dir
}

var seq atomic.Uint32

// Pair is two network namespaces joined by a veth pair.
type Pair struct {
	NsA, NsB     string // names under /var/run/netns
	IfA, IfB     string // interface names (veth ends)
	AddrA, AddrB net.IP
}

// NetnsPath returns the path of a namespace name.
func NetnsPath(name string) string { return filepath.Join("/var/run/netns", name) }

// NewPair creates the namespaces and the veth pair, with 10.X.0.1/24 on A
// and 10.X.0.2/24 on B.
func NewPair(t testing.TB) *Pair {
	t.Helper()
	n := seq.Add(1)
	tag := fmt.Sprintf("lt%d-%d", os.Getpid()%100000, n)
	octet := 100 + int(n)%150
	p := &Pair{
		NsA: tag + "-a", NsB: tag + "-b",
		IfA: "va" + tag[2:], IfB: "vb" + tag[2:],
		AddrA: net.IPv4(10, byte(octet), 0, 1), AddrB: net.IPv4(10, byte(octet), 0, 2),
	}
	if len(p.IfA) > 15 {
		p.IfA, p.IfB = p.IfA[:15], p.IfB[:15]
	}
	t.Cleanup(func() {
		run(t, "ip", "netns", "del", p.NsA)
		run(t, "ip", "netns", "del", p.NsB)
	})
	mustRun(t, "ip", "netns", "add", p.NsA)
	mustRun(t, "ip", "netns", "add", p.NsB)
	mustRun(t, "ip", "link", "add", p.IfA, "netns", p.NsA, "type", "veth", "peer", "name", p.IfB, "netns", p.NsB)
	mustRun(t, "ip", "-n", p.NsA, "addr", "add", p.AddrA.String()+"/24", "dev", p.IfA)
	mustRun(t, "ip", "-n", p.NsB, "addr", "add", p.AddrB.String()+"/24", "dev", p.IfB)
	for _, c := range [][]string{{p.NsA, p.IfA}, {p.NsB, p.IfB}, {p.NsA, "lo"}, {p.NsB, "lo"}} {
		mustRun(t, "ip", "-n", c[0], "link", "set", c[1], "up")
	}
	return p
}

func mustRun(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func run(t testing.TB, name string, args ...string) {
	exec.Command(name, args...).Run()
}

// Listen opens a UDP socket on B's address.
func (p *Pair) Listen(t testing.TB, port int) *net.UDPConn {
	t.Helper()
	var conn *net.UDPConn
	err := netnsutil.Do(NetnsPath(p.NsB), func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: p.AddrB, Port: port})
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", p.NsB, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Dial opens a UDP socket in A sending to B's address.
func (p *Pair) Dial(t testing.TB, port int) *net.UDPConn {
	t.Helper()
	var conn *net.UDPConn
	err := netnsutil.Do(NetnsPath(p.NsA), func() error {
		var err error
		conn, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: p.AddrB, Port: port})
		return err
	})
	if err != nil {
		t.Fatalf("dial in %s: %v", p.NsA, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Delivered sends n datagrams from A to B on port and returns how many
// arrived, waiting up to wait for stragglers.
func (p *Pair) Delivered(t testing.TB, port, n int, wait time.Duration) int {
	t.Helper()
	rx := p.Listen(t, port)
	tx := p.Dial(t, port)
	defer rx.Close()
	defer tx.Close()
	for i := 0; i < n; i++ {
		if _, err := fmt.Fprintf(tx, "%d", i); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	return count(rx, n, wait)
}

func count(rx *net.UDPConn, max int, wait time.Duration) int {
	buf := make([]byte, 2048)
	got := 0
	for got < max {
		rx.SetReadDeadline(time.Now().Add(wait))
		if _, err := rx.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return got
			}
			return got
		}
		got++
	}
	return got
}

// CosignVersion is the cosign the interoperability tests build.
const CosignVersion = "v2.6.5"

var (
	cosignOnce sync.Once
	cosignPath string
	cosignErr  error
)

// Cosign returns the path of a cosign binary, built from the Go module
// proxy into the user cache directory on first use (a few minutes) and
// reused after. The test is skipped, with the reason, when it cannot be
// built (no module proxy, no compiler).
func Cosign(t testing.TB) string {
	t.Helper()
	cosignOnce.Do(func() {
		if p, err := exec.LookPath("cosign"); err == nil && cosignIsVersion(p) {
			cosignPath = p
			return
		}
		cache, err := os.UserCacheDir()
		if err != nil {
			cosignErr = err
			return
		}
		bin := filepath.Join(cache, "leaf", "cosign-"+CosignVersion)
		cosignPath = filepath.Join(bin, "cosign")
		if _, err := os.Stat(cosignPath); err == nil {
			return
		}
		cmd := exec.Command("go", "install", "github.com/sigstore/cosign/v2/cmd/cosign@"+CosignVersion)
		cmd.Dir = os.TempDir() // outside any module: install exactly that version
		cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			cosignErr = fmt.Errorf("go install cosign@%s: %v: %s", CosignVersion, err, out)
		}
	})
	if cosignErr != nil {
		t.Skipf("cosign unavailable: %v", cosignErr)
	}
	return cosignPath
}

func cosignIsVersion(path string) bool {
	out, err := exec.Command(path, "version").CombinedOutput()
	return err == nil && strings.Contains(string(out), strings.TrimPrefix(CosignVersion, "v"))
}

// XDPProgID asks the kernel (netlink) which XDP program the interface in
// the named namespace runs; 0 for none.
func XDPProgID(t testing.TB, netns, ifname string) uint32 {
	t.Helper()
	h, err := netnsutil.Handle(NetnsPath(netns))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return x.ProgId
	}
	return 0
}
