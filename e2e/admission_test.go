package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/leaf-ebpf/leaf/internal/testenv"
)

// stallingServer serves a directory and, while stalled, holds every
// request until released: a repository that hangs.
type stallingServer struct {
	*httptest.Server
	mu      sync.Mutex
	stalled chan struct{} // closed to release; nil when not stalled
	entered chan struct{} // gets one value per held request
}

func newStallingServer(t *testing.T, dir string) *stallingServer {
	s := &stallingServer{entered: make(chan struct{}, 100)}
	files := http.FileServer(http.Dir(dir))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		hold := s.stalled
		s.mu.Unlock()
		if hold != nil {
			s.entered <- struct{}{}
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *stallingServer) stall() {
	s.mu.Lock()
	s.stalled = make(chan struct{})
	s.mu.Unlock()
}

func (s *stallingServer) release() {
	s.mu.Lock()
	close(s.stalled)
	s.stalled = nil
	s.mu.Unlock()
}

func freeAddress(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestAdmissionOutsideTheLock applies from a repository that hangs: while
// the apply waits on it, status and /metrics answer (checked while the
// apply is still blocked, not against a time limit). Then, with the
// repository gone altogether, a detached link is still restored: repair
// works from the admitted packages alone.
func TestAdmissionOutsideTheLock(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	work := t.TempDir()
	layoutDir := filepath.Join(work, "layout")
	for _, v := range []string{"2.0.0", "2.1.0"} {
		leafPkg(t, "build", "--no-compile", "--layout", layoutDir, pkgDir(t, v))
	}
	web := filepath.Join(work, "web")
	leafPkg(t, "index", "--layout", layoutDir, "-o", web)
	srv := newStallingServer(t, web)
	metricsAddr := freeAddress(t)
	cfg := cliFile(t, "leafd.yaml", []byte(fmt.Sprintf(`apiVersion: leaf.dev/v1alpha1
kind: DaemonConfig
repositories:
  - {name: web, type: http, url: %s, trust: {allowUnsigned: true}}
`, srv.URL)))
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--config", cfg, "--metrics-address", metricsAddr}})
	filter := func(version string) []byte {
		return doc(fmt.Sprintf("name: f\npackage: portfilter@%s\nrepository: web\nhook: {type: xdp, interface: %s, netns: %s}\nparams: {ports: [7201]}", version, p.IfB, p.NsB))
	}
	apply(t, d, filter("2.0.0"))

	srv.stall()
	applied := make(chan error, 1)
	go func() {
		_, err := d.Client.Apply(ctx(t), filter("2.1.0"), false)
		applied <- err
	}()
	select {
	case <-srv.entered:
	case <-time.After(time.Minute):
		t.Fatal("the apply never asked the repository")
	}
	st := status(t, d)
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics while an apply waits on a repository: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	select {
	case err := <-applied:
		t.Fatalf("the apply returned (%v) before the repository answered", err)
	default:
	}
	if st["f"].Package != "portfilter@2.0.0" || st["f"].State != "attached" {
		t.Errorf("status during the apply: %+v", st["f"])
	}
	if resp.StatusCode != 200 || !strings.Contains(string(body), "leaf_") {
		t.Errorf("metrics during the apply: %d", resp.StatusCode)
	}
	srv.release()
	if err := <-applied; err != nil {
		t.Fatalf("apply after the repository answered: %v", err)
	}
	if got := status(t, d)["f"].Package; got != "portfilter@2.1.0" {
		t.Fatalf("after the apply: %s", got)
	}

	// The repository goes away; drift is still repaired.
	srv.Close()
	os.RemoveAll(web)
	before := status(t, d)["f"]
	pins, _ := filepath.Glob(filepath.Join(d.BPFFS, "hooks", "*", "link"))
	if len(pins) != 1 {
		t.Fatalf("hook link pins: %v", pins)
	}
	lk, err := link.LoadPinnedLink(pins[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := lk.Detach(); err != nil {
		t.Fatal(err)
	}
	lk.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := status(t, d)["f"]
		if s.State == "attached" && s.LinkID != before.LinkID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with the repository gone, the detached link was not restored: %+v\n%s", s, d.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := p.Delivered(t, 7201, 5, 300*time.Millisecond); got != 0 {
		t.Errorf("after the repair, %d of 5 datagrams to the blocked port were delivered", got)
	}
}

// TestPlainDirectoryTamperLoadsVerifiedBytes changes a package's object
// file in a plain-directory repository after leafd read (and digested)
// it: the apply loads the bytes the digest covers, not the file on disk.
func TestPlainDirectoryTamperLoadsVerifiedBytes(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	repo := versionedRepo(t, "3.0.0")
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--repository-allow-unsigned", repo}})
	obj := filepath.Join(repo, "portfilter-3.0.0", "portfilter.bpf.o")
	if err := os.WriteFile(obj, []byte("\x7fELF tampered after leafd read the repository"), 0o644); err != nil {
		t.Fatal(err)
	}
	apply(t, d, doc(portFilter(p, "tampered", "3.0.0", 7301)))
	if s := status(t, d)["tampered"]; s.State != "attached" {
		t.Fatalf("status %+v", s)
	}
	if got := p.Delivered(t, 7301, 5, 300*time.Millisecond); got != 0 {
		t.Errorf("%d of 5 datagrams to the blocked port delivered: the verified program is not the one running", got)
	}
}

// TestStatsSurviveRestart turns BPF statistics on through the API and
// restarts leafd: they are on again, and the chain (whose members count
// their runs only while statistics are on) is adopted, not rebuilt: the
// same program IDs. Then the same with statistics off.
func TestStatsSurviveRestart(t *testing.T) {
	testenv.RequireKernel(t)
	p := testenv.NewPair(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: fixtureRepos(t)})
	apply(t, d, chainDoc(p, member{name: "m1", priority: 1}, member{name: "m2", priority: 2}))
	ids := func() map[string]uint32 {
		out := map[string]uint32{}
		for n, s := range status(t, d) {
			out[n] = s.ProgramID
		}
		return out
	}
	for _, on := range []bool{true, false} {
		if _, err := d.Client.SetStats(ctx(t), on); err != nil {
			t.Fatal(err)
		}
		before := ids()
		d.Stop()
		d.Restart()
		st, err := d.Client.Stats(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		// Off is only checked through the IDs: another process may hold
		// the kernel's statistics on, and leafd reports what the kernel does.
		if on && !st.Enabled {
			t.Fatalf("statistics set to %v before the restart are %v after it", on, st.Enabled)
		}
		if after := ids(); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("statistics %v: a restart with nothing changed reloaded programs: %v → %v", on, before, after)
		}
	}
}
