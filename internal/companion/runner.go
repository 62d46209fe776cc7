package companion

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
)

// A companion that ran this long before dying is restarted after the
// shortest pause again.
const healthyRun = 10 * time.Second

// stopGrace is how long a companion has to exit after SIGTERM.
const stopGrace = 3 * time.Second

// runner keeps one companion running until stopped.
type runner struct {
	m    *Manager
	spec Spec
	log  *slog.Logger
	quit chan struct{}
	once sync.Once

	mu     sync.Mutex
	status v1.CompanionStatus
}

// setStatus updates what leaf status shows of the companion.
func (r *runner) setStatus(f func(*v1.CompanionStatus)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.status)
}

func (r *runner) stop() { r.once.Do(func() { close(r.quit) }) }

func (r *runner) event(kind, msg string, pid int) {
	r.m.cfg.Event(v1.Event{Type: v1.EventCompanion, Kind: kind, Attachment: r.spec.Attachment, PID: pid, Message: msg})
}

// run starts the companion and starts it again, with a pause that doubles
// up to MaxBackoff, each time it dies, until stopped.
func (r *runner) run() {
	// Companions are forked from this thread, which stays locked to this
	// goroutine and ends with it, for two reasons: no_new_privs, set on it
	// here and inherited by every child, keeps a companion from gaining
	// privileges through a setuid or file-capability binary; and the
	// parent-death signal is tied to the forking thread, which must live
	// as long as the companion does. The capability bounding set is
	// narrowed on it too, to the declared capabilities.
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		r.log.Error("companion not started: cannot set no_new_privs", "error", err)
		r.event("exited", fmt.Sprintf("not started: no_new_privs: %v", err), 0)
		return
	}
	if err := dropBoundingSet(r.spec.Package.Manifest.Companion.CapabilityValues()); err != nil {
		r.log.Error("companion not started: cannot drop the capability bounding set", "error", err)
		r.event("exited", fmt.Sprintf("not started: capability bounding set: %v", err), 0)
		return
	}
	backoff := r.m.cfg.MinBackoff
	for {
		started := time.Now()
		err := r.runOnce()
		select {
		case <-r.quit:
			return
		default:
		}
		if time.Since(started) >= healthyRun {
			backoff = r.m.cfg.MinBackoff
		}
		r.setStatus(func(s *v1.CompanionStatus) {
			s.State, s.Restarts, s.LastExit, s.Since = v1.CompanionRestarting, s.Restarts+1, fmt.Sprint(err), time.Now().UTC()
		})
		r.log.Warn("companion exited; restarting", "error", err, "backoff", backoff)
		r.event("exited", fmt.Sprintf("exited (%v); restarting in %s", err, backoff), 0)
		select {
		case <-r.quit:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, r.m.cfg.MaxBackoff)
	}
}

// runOnce runs the companion once and returns why it ended.
func (r *runner) runOnce() error {
	if r.m.cgErr != nil {
		return fmt.Errorf("no cgroup for the companion: %w", r.m.cgErr)
	}
	path, err := r.m.executable(r.spec)
	if err != nil {
		return err
	}
	c := r.spec.Package.Manifest.Companion
	cg, err := r.m.cgroups.newCgroup(r.spec.Attachment, c.Resources)
	if err != nil {
		return err
	}
	defer cg.remove()
	maps, env, err := r.mapFiles()
	if err != nil {
		return err
	}
	uid, gid := c.IDs()
	cmd := exec.Command(path, r.spec.Args...)
	cmd.Env = append(env,
		"LEAF_ATTACHMENT="+r.spec.Attachment,
		"LEAF_PIN_DIR="+r.m.cfg.Layout.Dir(r.spec.Attachment),
		"LEAF_MAPS_DIR="+r.m.cfg.Layout.MapsDir(r.spec.Attachment),
		"PATH=/usr/bin:/bin")
	cmd.Dir = "/"
	cmd.ExtraFiles = maps
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}},
		AmbientCaps: c.CapabilityValues(),
		UseCgroupFD: true,
		CgroupFD:    int(cg.fd.Fd()),
		Setpgid:     true,
		// If leafd dies without stopping it, so does the companion; a
		// leafd that starts again kills leftovers through the cgroup.
		Pdeathsig: syscall.SIGKILL,
	}
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	err = cmd.Start()
	for _, f := range maps {
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", c.Path, err)
	}
	if err := cg.join(cmd.Process.Pid); err != nil {
		r.log.Warn("companion limits", "error", err)
	}
	pid := cmd.Process.Pid
	r.setStatus(func(s *v1.CompanionStatus) { s.State, s.PID, s.Since = v1.CompanionRunning, pid, time.Now().UTC() })
	defer r.setStatus(func(s *v1.CompanionStatus) { s.PID = 0 })
	r.log.Info("companion started", "pid", pid, "uid", uid, "capabilities", strings.Join(c.Capabilities, ","), "cgroup", cg.v2)
	r.event("started", fmt.Sprintf("started %s as uid %d with capabilities [%s] in cgroup %s", c.Path, uid, strings.Join(c.Capabilities, " "), cg.v2), pid)
	var wg sync.WaitGroup
	wg.Add(2)
	go r.forward(&wg, stdout, "stdout")
	go r.forward(&wg, stderr, "stderr")
	done := make(chan error, 1)
	go func() {
		wg.Wait() // pipes first: Wait closes them
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		return err
	case <-r.quit:
		syscall.Kill(-pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(stopGrace):
			syscall.Kill(-pid, syscall.SIGKILL)
			<-done
		}
		r.log.Info("companion stopped", "pid", pid)
		r.event("stopped", "stopped: the attachment no longer asks for it", pid)
		return nil
	}
}

// forward writes each line the companion prints into leafd's log.
func (r *runner) forward(wg *sync.WaitGroup, rd io.Reader, stream string) {
	defer wg.Done()
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		r.log.Info("companion output", "stream", stream, "line", sc.Text())
	}
	io.Copy(io.Discard, rd) // a line over 64 KiB: keep the pipe drained
}

// mapFiles opens the attachment's pinned maps for the companion: it gets
// them as inherited descriptors (3, 4, … in map name order), named in
// LEAF_MAP_FDS ("counters=3,sizes=4"), so that it needs no access to
// leaf's bpffs.
func (r *runner) mapFiles() ([]*os.File, []string, error) {
	dir := r.m.cfg.Layout.MapsDir(r.spec.Attachment)
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return nil, nil, err
	}
	var names []string
	for _, e := range entries {
		if !strings.Contains(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var files []*os.File
	var fds []string
	for _, n := range names {
		m, err := ebpf.LoadPinnedMap(r.m.cfg.Layout.Map(r.spec.Attachment, n), nil)
		if err != nil {
			continue
		}
		dup, err := dupCloexec(m.FD())
		m.Close()
		if err != nil {
			continue
		}
		files = append(files, os.NewFile(uintptr(dup), n))
		fds = append(fds, fmt.Sprintf("%s=%d", n, 2+len(files)))
	}
	return files, []string{"LEAF_MAP_FDS=" + strings.Join(fds, ",")}, nil
}

func sleepBriefly() { time.Sleep(10 * time.Millisecond) }
