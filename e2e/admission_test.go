package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/client"
	"github.com/leaf-ebpf/leaf/internal/testenv"
	"github.com/leaf-ebpf/leaf/internal/testenv/registry"
)

// stallingProxy forwards TCP connections to a server (an OCI registry:
// TLS passes through untouched) and, while stalled, holds every byte a
// client sends, on new and kept-alive connections alike, until the stall
// ends: a registry that hangs.
type stallingProxy struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	until   time.Time     // holding until then
	entered chan struct{} // gets one value per held write (when not full)
}

func newStallingProxy(t *testing.T, target string) *stallingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &stallingProxy{ln: ln, target: target, entered: make(chan struct{}, 100)}
	go s.serve()
	t.Cleanup(func() { ln.Close() })
	return s
}

// Host is the address to reach the server through the proxy.
func (s *stallingProxy) Host() string { return s.ln.Addr().String() }

func (s *stallingProxy) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.forward(c)
	}
}

func (s *stallingProxy) forward(c net.Conn) {
	defer c.Close()
	u, err := net.Dial("tcp", s.target)
	if err != nil {
		return
	}
	defer u.Close()
	go func() { io.Copy(c, u); c.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			s.hold()
			if _, werr := u.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// hold waits out a stall.
func (s *stallingProxy) hold() {
	s.mu.Lock()
	until := s.until
	s.mu.Unlock()
	if time.Now().After(until) {
		return
	}
	select {
	case s.entered <- struct{}{}:
	default:
	}
	time.Sleep(time.Until(until))
}

// stall holds what clients send for d from now.
func (s *stallingProxy) stall(d time.Duration) {
	s.mu.Lock()
	s.until = time.Now().Add(d)
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

// registryStall is how long the registry hangs in
// TestAdmissionOutsideTheLock (the figure).
const registryStall = 30 * time.Second

// TestAdmissionOutsideTheLock applies from an OCI registry (distribution
// 2.8) that hangs for 30 s: while the apply waits on it, `GET
// /v1/status`, `/metrics` and `leaf status` answer at once (checked while
// the apply is still blocked; the bound asserted is loose, the figures
// are logged). Then the apply completes, or fails as unavailable (503)
// with nothing changed. (Repair with the registry stopped altogether is
// TestRepositoryDown.)
func TestAdmissionOutsideTheLock(t *testing.T) {
	testenv.RequireKernel(t)
	reg := registry.StartDistribution2(t)
	pushToRegistry(t, reg, map[string]string{"portfilter@2.0.0": pkgDir(t, "2.0.0"), "portfilter@2.1.0": pkgDir(t, "2.1.0")})
	proxy := newStallingProxy(t, reg.Host)
	metricsAddr := freeAddress(t)
	d := testenv.StartDaemon(t, testenv.DaemonOptions{Args: []string{"--config", registryConfig(t, reg, proxy.Host()), "--metrics-address", metricsAddr}})
	p := testenv.NewPair(t)
	filter := func(version string) []byte {
		return doc(fmt.Sprintf("name: f\npackage: portfilter@%s\nrepository: registry\nhook: {type: xdp, interface: %s, netns: %s}\nparams: {ports: [7201]}", version, p.IfB, p.NsB))
	}
	apply(t, d, filter("2.0.0"))
	before := status(t, d)["f"]

	proxy.stall(registryStall)
	stallEnds := time.Now().Add(registryStall)
	applied := make(chan error, 1)
	go func() {
		_, err := d.Client.Apply(ctx(t), filter("2.1.0"), false)
		applied <- err
	}()
	select {
	case <-proxy.entered:
	case <-time.After(time.Minute):
		t.Fatal("the apply never asked the registry")
	}
	var statusTimes, metricsTimes []time.Duration
	for i := 0; i < 10; i++ {
		start := time.Now()
		st := status(t, d)
		statusTimes = append(statusTimes, time.Since(start))
		if st["f"].Package != "portfilter@2.0.0" || st["f"].State != v1.StateAttached {
			t.Errorf("status during the apply: %+v", st["f"])
		}
		start = time.Now()
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			t.Fatalf("metrics while an apply waits on the registry: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metricsTimes = append(metricsTimes, time.Since(start))
		if resp.StatusCode != 200 || !strings.Contains(string(body), "leaf_") {
			t.Errorf("metrics during the apply: %d", resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
	start := time.Now()
	out := mustCLI(t, d.Socket, "status")
	cliTime := time.Since(start)
	if !strings.Contains(out, "portfilter@2.0.0") {
		t.Errorf("leaf status during the apply:\n%s", out)
	}
	select {
	case err := <-applied:
		t.Fatalf("the apply returned (%v) while the registry still hung", err)
	default:
	}
	if time.Now().After(stallEnds) {
		t.Fatalf("the measurements outlasted the stall (machine too slow to tell)")
	}
	slices.Sort(statusTimes)
	slices.Sort(metricsTimes)
	slowest := func(ds []time.Duration) time.Duration { return ds[len(ds)-1] }
	t.Logf("while an apply waited on a hung registry: GET /v1/status median %v slowest %v; GET /metrics median %v slowest %v; leaf status (a process) %v",
		statusTimes[len(statusTimes)/2], slowest(statusTimes), metricsTimes[len(metricsTimes)/2], slowest(metricsTimes), cliTime)
	if s, m := slowest(statusTimes), slowest(metricsTimes); s > time.Second || m > time.Second {
		t.Errorf("status (%v) or metrics (%v) waited on the apply", s, m)
	}

	err := <-applied
	took := time.Since(stallEnds.Add(-registryStall))
	var apiErr *client.APIError
	switch {
	case err == nil:
		if got := status(t, d)["f"].Package; got != "portfilter@2.1.0" {
			t.Fatalf("the apply succeeded, status says %s", got)
		}
		t.Logf("the apply completed %v after the registry hung", took)
	case errors.As(err, &apiErr) && apiErr.StatusCode == 503 && apiErr.Kind() == "unavailable":
		if now := status(t, d)["f"]; now.Package != before.Package || now.ProgramID != before.ProgramID {
			t.Fatalf("a failed apply changed f: %+v, before %+v", now, before)
		}
		t.Logf("the apply failed as unavailable %v after the registry hung: %v", took, err)
	default:
		t.Fatalf("apply through a hung registry: %v; want success, or 503 of kind unavailable", err)
	}
	// For comparison: leaf status with nothing waiting. A process is
	// mostly its own start and exit: a -race build sleeps 1 s at exit
	// (GORACE atexit_sleep_ms), so only the API calls above are timed
	// against a bound.
	start = time.Now()
	mustCLI(t, d.Socket, "status")
	t.Logf("leaf status with no apply waiting: %v (during the hang: %v)", time.Since(start), cliTime)
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
